"""manage.py export_transactions: one row per ledger row, amounts in the currency's decimals and minor
units, UTC times, filters, and a past export reproduced byte for byte after late rows arrived."""

import csv
import io
import json
import re
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from billing.apply import apply_snapshot
from billing.snapshots import Cause, CauseKind, Environment, OfferKind, Provider, TransactionKind, TransactionRecord
from finance.transactions import HEADER
from tests.factories import SubscriberFactory, SubscriptionFactory, snapshot

from .ledger import at, ledger_row

pytestmark = pytest.mark.django_db

NOVEMBER = ["--from", "2026-11-01", "--to", "2026-11-30"]


def export(*args, tmp_path, name="out") -> tuple[bytes, str]:
    """The command's output file and what it said on standard error."""
    target = tmp_path / name
    stderr = io.StringIO()
    call_command("export_transactions", *args, "--output", str(target), stderr=stderr)
    return target.read_bytes(), stderr.getvalue()


def rows_of(data: bytes) -> list[dict]:
    return list(csv.DictReader(io.StringIO(data.decode())))


@pytest.fixture
def november():
    """A month of money movements across the stores, each kind once, in EUR, JPY and KWD."""
    apple = SubscriptionFactory(provider=Provider.APPLE, provider_subscription_id="2000000000000001",
                                subscriber=SubscriberFactory(external_id="42"))
    stripe = SubscriptionFactory(provider_subscription_id="sub_S1", subscriber=SubscriberFactory(external_id="43"))
    google = SubscriptionFactory(provider=Provider.GOOGLE, provider_subscription_id="token-g1",
                                 subscriber=SubscriberFactory(external_id="44"))
    ledger_row(subscription=apple, provider_transaction_id="2000000000000001", amount_minor=980, currency="JPY",
               order_id="2000000000000001", line_item_id="2000000000000101", country="JPN",
               offer_kind=OfferKind.FREE_TRIAL, store_product_id="com.example.monthly",
               occurred_at=at("2026-11-01T00:00:00"), period_start=at("2026-11-01T00:00:00"),
               period_end=at("2026-12-01T00:00:00"))
    ledger_row(subscription=apple, provider_transaction_id="2000000000000002", kind=TransactionKind.RENEWAL,
               amount_minor=980, currency="JPY", line_item_id="2000000000000102",
               occurred_at=at("2026-11-30T23:59:59.999999"))
    ledger_row(subscription=stripe, provider_transaction_id="in_1", amount_minor=999, currency="EUR",
               order_id="in_1", charge_id="ch_1", fee_minor=59, net_minor=940, settlement_currency="EUR",
               occurred_at=at("2026-11-10T09:00:00"))
    ledger_row(subscription=stripe, provider_transaction_id="re_1", kind=TransactionKind.REFUND, amount_minor=999,
               currency="EUR", refers_to="in_1", charge_id="ch_1", occurred_at=at("2026-11-12T09:00:00"))
    ledger_row(subscription=stripe, provider_transaction_id="dp_1", kind=TransactionKind.CHARGEBACK,
               amount_minor=999, currency="EUR", refers_to="ch_1", occurred_at=at("2026-11-14T09:00:00"))
    ledger_row(subscription=stripe, provider_transaction_id="dp_1:won", kind=TransactionKind.REFUND_REVERSED,
               amount_minor=999, currency="EUR", refers_to="ch_1", occurred_at=at("2026-11-20T09:00:00"))
    ledger_row(subscription=google, provider_transaction_id="GPA.1234-5678", amount_minor=1250, currency="KWD",
               order_id="GPA.1234-5678", country="KW", occurred_at=at("2026-11-15T12:00:00"))
    # Outside the period (a day either side) and in the sandbox: never in a production November export.
    ledger_row(subscription=stripe, provider_transaction_id="in_0", occurred_at=at("2026-10-31T23:59:59.999999"))
    ledger_row(subscription=stripe, provider_transaction_id="in_2", occurred_at=at("2026-12-01T00:00:00"))
    sandbox = SubscriptionFactory(provider=Provider.APPLE, environment=Environment.SANDBOX,
                                  provider_subscription_id="2000000000000009")
    ledger_row(subscription=sandbox, provider_transaction_id="2000000000000009", amount_minor=100, currency="USD",
               occurred_at=at("2026-11-05T00:00:00"))


def test_each_ledger_row_of_the_period_once_with_its_amounts_and_ids(november, tmp_path):
    data, said = export(*NOVEMBER, tmp_path=tmp_path)
    assert data.decode().splitlines()[0] == ",".join(HEADER)
    rows = rows_of(data)
    ids = [r["store_transaction_id"] for r in rows]
    # Ordered by occurred_at; the first and the last instant of the period are in, the days around it out.
    assert ids == ["2000000000000001", "in_1", "re_1", "dp_1", "GPA.1234-5678", "dp_1:won", "2000000000000002"]
    by_id = {r["store_transaction_id"]: r for r in rows}
    purchase = by_id["2000000000000001"]
    assert purchase == purchase | {
        "provider": "apple", "environment": "production", "kind": "purchase", "amount": "980", "amount_minor": "980",
        "currency": "JPY", "order_id": "2000000000000001", "line_item_id": "2000000000000101", "country": "JPN",
        "offer_kind": "free_trial", "store_product_id": "com.example.monthly", "occurred_at": "2026-11-01T00:00:00Z",
        "period_start": "2026-11-01T00:00:00Z", "period_end": "2026-12-01T00:00:00Z",
        "store_subscription_id": "2000000000000001", "user_id": "42", "fee": "", "charge_id": ""}
    assert by_id["2000000000000002"]["kind"] == "renewal"
    assert by_id["2000000000000002"]["occurred_at"] == "2026-11-30T23:59:59.999999Z"
    invoice = by_id["in_1"]
    assert (invoice["amount"], invoice["amount_minor"], invoice["fee"], invoice["fee_minor"], invoice["net"],
            invoice["net_minor"], invoice["settlement_currency"]) == ("9.99", "999", "0.59", "59", "9.40", "940", "EUR")
    assert (invoice["charge_id"], invoice["user_id"], invoice["store_subscription_id"]) == ("ch_1", "43", "sub_S1")
    assert [by_id[i]["kind"] for i in ("re_1", "dp_1", "dp_1:won")] == ["refund", "chargeback", "refund_reversed"]
    assert by_id["re_1"]["refers_to"] == "in_1" and by_id["re_1"]["amount"] == "9.99"
    google = by_id["GPA.1234-5678"]
    assert (google["amount"], google["amount_minor"], google["currency"]) == ("1.250", "1250", "KWD")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z", purchase["recorded_at"])
    assert said.startswith("7 rows recorded before ")


def test_a_payment_delivered_twice_is_one_row(tmp_path):
    SubscriberFactory(external_id="77")
    renewal = TransactionRecord(provider_transaction_id="2000000000000777", kind=TransactionKind.RENEWAL,
                                occurred_at=at("2026-11-03T10:00:00"), amount_minor=980, currency="jpy")
    for minutes, ref in ((0, "evt_1"), (1, "evt_1_again")):
        apply_snapshot(snapshot(provider=Provider.APPLE, sub_id="2000000000000700", user_id="77", minutes=minutes,
                                expires_at=timezone.now() + timedelta(days=20), transactions=(renewal,)),
                       Cause(CauseKind.WEBHOOK, ref=ref))
    rows = rows_of(export(*NOVEMBER, tmp_path=tmp_path)[0])
    assert [(r["store_transaction_id"], r["kind"], r["amount"], r["currency"], r["user_id"]) for r in rows] == [
        ("2000000000000777", "renewal", "980", "JPY", "77")]


def test_recorded_before_reproduces_a_past_export_byte_for_byte(november, tmp_path):
    first, said = export(*NOVEMBER, tmp_path=tmp_path, name="first")
    cutoff = re.search(r"--recorded-before (\S+) to reproduce", said).group(1)
    # A refund of a November payment arrives in December: a fresh export shows it, recorded late.
    late = ledger_row(subscription=SubscriptionFactory(provider_subscription_id="sub_late"),
                      provider_transaction_id="re_late", kind=TransactionKind.REFUND, refers_to="in_1",
                      occurred_at=at("2026-11-28T10:00:00"))
    fresh = rows_of(export(*NOVEMBER, tmp_path=tmp_path, name="fresh")[0])
    assert "re_late" in [r["store_transaction_id"] for r in fresh]
    assert late.recorded_at > at("2026-12-01T00:00:00")

    again, _ = export(*NOVEMBER, "--recorded-before", cutoff, tmp_path=tmp_path, name="again")
    assert again == first
    jsonl_then, _ = export(*NOVEMBER, "--format", "jsonl", "--recorded-before", cutoff, tmp_path=tmp_path, name="j")
    assert "re_late" not in jsonl_then.decode()


def test_recorded_before_leaves_out_what_was_recorded_at_or_after_it(tmp_path):
    ledger_row(provider_transaction_id="early", recorded_at="2026-11-06T00:00:00")
    ledger_row(provider_transaction_id="on_the_dot", recorded_at="2026-12-01T00:00:00")
    rows = rows_of(export(*NOVEMBER, "--recorded-before", "2026-12-01T00:00:00Z", tmp_path=tmp_path)[0])
    assert [r["store_transaction_id"] for r in rows] == ["early"]
    # No offset: UTC; an offset is honoured.
    rows = rows_of(export(*NOVEMBER, "--recorded-before", "2026-12-01T01:00:00+01:00", tmp_path=tmp_path)[0])
    assert [r["store_transaction_id"] for r in rows] == ["early"]
    rows = rows_of(export(*NOVEMBER, "--recorded-before", "2026-12-01T00:00:01", tmp_path=tmp_path)[0])
    assert [r["store_transaction_id"] for r in rows] == ["early", "on_the_dot"]


def test_provider_and_environment_filters(november, tmp_path):
    apple = rows_of(export(*NOVEMBER, "--provider", "apple", tmp_path=tmp_path)[0])
    assert [r["store_transaction_id"] for r in apple] == ["2000000000000001", "2000000000000002"]
    sandbox = rows_of(export(*NOVEMBER, "--environment", "sandbox", tmp_path=tmp_path)[0])
    assert [(r["store_transaction_id"], r["environment"]) for r in sandbox] == [("2000000000000009", "sandbox")]
    everything = rows_of(export(*NOVEMBER, "--environment", "all", "--provider", "apple", tmp_path=tmp_path)[0])
    assert [r["store_transaction_id"] for r in everything] == ["2000000000000001", "2000000000000009",
                                                               "2000000000000002"]
    assert rows_of(export(*NOVEMBER, "--provider", "xsolla", tmp_path=tmp_path)[0]) == []


def test_jsonl_one_object_a_line_with_the_same_values(november, tmp_path):
    data, _ = export(*NOVEMBER, "--format", "jsonl", tmp_path=tmp_path)
    objects = [json.loads(line) for line in data.decode().splitlines()]
    assert len(objects) == 7 and list(objects[0]) == list(HEADER)
    invoice = next(o for o in objects if o["store_transaction_id"] == "in_1")
    assert invoice["amount"] == "9.99" and invoice["amount_minor"] == 999 and invoice["fee_minor"] == 59
    assert invoice["order_id"] == "in_1" and invoice["line_item_id"] is None and invoice["user_id"] == "43"


def test_standard_output_by_default(november):
    out, err = io.StringIO(), io.StringIO()
    call_command("export_transactions", *NOVEMBER, "--provider", "google", stdout=out, stderr=err)
    assert out.getvalue().splitlines()[0] == ",".join(HEADER)
    assert "GPA.1234-5678" in out.getvalue() and "1 row recorded before" in err.getvalue()


@pytest.mark.parametrize(("args", "message"), [
    (["--from", "2026-11-31", "--to", "2026-12-01"], "--from must be a date as YYYY-MM-DD"),
    (["--from", "11/01/2026", "--to", "2026-12-01"], "--from must be a date"),
    (["--from", "2026-11-01", "--to", "yesterday"], "--to must be a date"),
    (["--from", "2026-11-02", "--to", "2026-11-01"], "--to (2026-11-01) is before --from (2026-11-02)"),
    ([*NOVEMBER, "--provider", "paypal"], "--provider must be one of stripe, apple, google, xsolla, manual"),
    ([*NOVEMBER, "--environment", "live"], "--environment must be one of production, sandbox, all"),
    ([*NOVEMBER, "--format", "xlsx"], "--format must be one of csv, jsonl"),
    ([*NOVEMBER, "--recorded-before", "soon"], "--recorded-before must be an ISO 8601 date-time"),
    ([*NOVEMBER, "--recorded-before", "2999-01-01T00:00:00Z"], "is in the future"),
])
def test_bad_options_are_refused_with_a_message_and_write_nothing(args, message, tmp_path):
    target = tmp_path / "out.csv"
    with pytest.raises(CommandError, match=re.escape(message)):
        call_command("export_transactions", *args, "--output", str(target))
    assert not target.exists()
