"""finance/streaming.py: PostgreSQL's COPY path and the Python iterator path (SQLite's) give the same
bytes for the same rows, in CSV and JSON lines, whatever the values hold."""

import csv
import io
import json

import pytest

from billing.models import Transaction
from billing.snapshots import Environment, OfferKind, Provider, TransactionKind
from finance.streaming import chunks, queryset_chunks, uses_copy
from finance.transactions import COLUMNS, HEADER
from tests.factories import SubscriberFactory, SubscriptionFactory

from .ledger import at, ledger_row

pytestmark = pytest.mark.django_db


def _export(fmt: str, *, use_copy: bool) -> bytes:
    queryset = Transaction.objects.order_by("occurred_at", "id")
    return b"".join(queryset_chunks(fmt, COLUMNS, queryset, use_copy=use_copy))


@pytest.fixture
def awkward_rows():
    """Values that trip CSV and JSON writers: separators, quotes, line breaks, non-ASCII, control
    characters, empty and absent values, whole and fractional seconds, 0/2/3-decimal currencies."""
    orphan = SubscriptionFactory(provider=Provider.APPLE, subscriber=None, provider_subscription_id='2000,"x"')
    named = SubscriptionFactory(subscriber=SubscriberFactory(external_id="ユーザー\n42\t\x01"))
    ledger_row(subscription=orphan, provider_transaction_id="2000000001", amount_minor=980, currency="JPY",
               country="JPN", offer_kind=OfferKind.FREE_TRIAL, order_id='MZ"1"', line_item_id="",
               occurred_at=at("2026-11-01T00:00:00"), period_start=at("2026-11-01T00:00:00.123000"))
    ledger_row(subscription=named, provider_transaction_id="in_1", amount_minor=1250, currency="KWD",
               fee_minor=37, net_minor=1213, settlement_currency="KWD", charge_id="ch_1\r\n",
               occurred_at=at("2026-11-02T12:30:45.000001"), store_product_id="price, monthly")
    ledger_row(subscription=named, provider_transaction_id="re_1", kind=TransactionKind.REFUND, amount_minor=None,
               currency="", refers_to="in_1", occurred_at=at("2026-11-03T08:00:00"),
               environment=Environment.SANDBOX, store_product_id="\\.")
    ledger_row(subscription=named, provider_transaction_id="dp_1", kind=TransactionKind.CHARGEBACK, amount_minor=0,
               currency="eur", occurred_at=at("2026-11-03T08:00:00"))


def test_database_under_test_takes_the_copy_path():
    assert uses_copy(Transaction.objects.all())


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_copy_and_iterator_paths_give_identical_bytes(awkward_rows, fmt):
    via_copy = _export(fmt, use_copy=True)
    via_iterator = _export(fmt, use_copy=False)
    assert via_copy == via_iterator
    assert via_copy.count(b"\n") >= 4


def test_csv_reads_back_to_the_stored_values(awkward_rows):
    rows = list(csv.DictReader(io.StringIO(_export("csv", use_copy=True).decode())))
    assert tuple(rows[0]) == HEADER
    jpy, kwd, refund, chargeback = rows
    assert (jpy["amount"], jpy["amount_minor"], jpy["currency"]) == ("980", "980", "JPY")
    assert jpy["store_subscription_id"] == '2000,"x"' and jpy["user_id"] == "" and jpy["order_id"] == 'MZ"1"'
    assert jpy["period_start"] == "2026-11-01T00:00:00.123000Z" and jpy["occurred_at"] == "2026-11-01T00:00:00Z"
    assert (kwd["amount"], kwd["fee"], kwd["net"], kwd["net_minor"]) == ("1.250", "0.037", "1.213", "1213")
    assert kwd["user_id"] == "ユーザー\n42\t\x01" and kwd["charge_id"] == "ch_1\r\n"
    assert kwd["occurred_at"] == "2026-11-02T12:30:45.000001Z"
    assert (refund["amount"], refund["amount_minor"], refund["refers_to"]) == ("", "", "in_1")
    assert refund["store_product_id"] == "\\."
    assert (chargeback["amount"], chargeback["currency"]) == ("0.00", "eur")


def test_jsonl_reads_back_with_integers_and_nulls(awkward_rows):
    lines = _export("jsonl", use_copy=True).decode().splitlines()
    jpy, kwd, refund, _ = (json.loads(line) for line in lines)
    assert list(jpy) == list(HEADER)
    assert jpy["amount_minor"] == 980 and jpy["amount"] == "980" and jpy["user_id"] is None
    assert jpy["line_item_id"] is None and jpy["fee_minor"] is None
    assert kwd["fee"] == "0.037" and kwd["id"] == jpy["id"] + 1
    assert refund["amount"] is None and refund["environment"] == "sandbox"


def test_no_rows_is_a_header_alone_in_csv_and_nothing_in_jsonl():
    assert _export("csv", use_copy=True) == _export("csv", use_copy=False) == (",".join(HEADER) + "\n").encode()
    assert _export("jsonl", use_copy=True) == _export("jsonl", use_copy=False) == b""


def test_chunks_still_renders_rows_given_in_python():
    assert b"".join(chunks("csv", ["a", "b"], [["x,y", None]])) == b'a,b\n"x,y",\n'
    assert b"".join(chunks("jsonl", ["a", "b"], [["x", 1]])) == b'{"a":"x","b":1}\n'
    with pytest.raises(ValueError):
        chunks("xml", ["a"], [])



def test_a_client_hanging_up_mid_export_leaves_the_connection_usable():
    subscription = SubscriptionFactory()
    Transaction.objects.bulk_create(
        Transaction(provider="stripe", provider_transaction_id=f"in_{i}", subscription=subscription, kind="renewal",
                    amount_minor=999, currency="EUR", occurred_at=at("2026-11-01T00:00:00"), order_id="x" * 200)
        for i in range(2000))
    stream = queryset_chunks("csv", COLUMNS, Transaction.objects.order_by("id"), use_copy=True)
    first = next(stream)
    assert first.startswith(b"id,provider")
    stream.close()  # what the server does when the client disconnects
    assert Transaction.objects.filter(kind="renewal").count() == 2000
