"""The data migration that fills the ledger's new columns for rows recorded before them, from what
each row kept of the store's payload (billing/migrations/0005_ledger_backfill.py)."""

from datetime import UTC, datetime
from importlib import import_module

import pytest
from django.apps import apps

from billing.models import Transaction
from tests.factories import SubscriptionFactory

pytestmark = pytest.mark.django_db

backfill = import_module("billing.migrations.0005_ledger_backfill").backfill
WHEN = datetime(2026, 3, 1, tzinfo=UTC)


def old_row(subscription, provider_transaction_id, kind, raw, **fields):
    """A row as the write path recorded it before the ledger's columns existed."""
    return Transaction.objects.create(subscription=subscription, provider=subscription.provider, kind=kind,
                                      provider_transaction_id=provider_transaction_id, occurred_at=WHEN, raw=raw,
                                      amount_minor=999, currency="USD", **fields)


def refreshed(row) -> Transaction:
    return Transaction.objects.get(pk=row.pk)


def test_each_store_fills_what_its_stored_payload_says():
    apple = SubscriptionFactory(provider="apple", provider_subscription_id="2000000000000001")
    google = SubscriptionFactory(provider="google", provider_subscription_id="tok",
                                 raw_snapshot={"regionCode": "AU"})
    stripe = SubscriptionFactory(provider="stripe", provider_subscription_id="sub_1")
    xsolla = SubscriptionFactory(provider="xsolla", provider_subscription_id="10")
    rows = {
        "apple": old_row(apple, "2000000000000002", "renewal", {
            "transactionId": "2000000000000002", "productId": "premium", "storefront": "DEU", "offerType": 2}),
        "apple_refund": old_row(apple, "2000000000000002:refund", "refund", {"transactionId": "2000000000000002"}),
        "google": old_row(google, "GPA.1..0", "renewal", {"orderId": "GPA.1..0", "productId": "pro"}),
        "google_refund": old_row(google, "refund:GPA.1..0", "refund", {"orderId": "GPA.1..0", "refundType": 1}),
        "stripe": old_row(stripe, "in_1", "purchase", {"invoice": "in_1", "charge": "ch_1"}),
        "stripe_refund": old_row(stripe, "re_1", "refund", {"refund": "re_1", "charge": "ch_1"}),
        "xsolla": old_row(xsolla, "1", "purchase", {"transaction": {"id": 1}, "payment_details": {
            "payout": {"currency": "USD", "amount": 8.5}, "xsolla_fee": {"currency": "USD", "amount": 1},
            "payment_method_fee": {"currency": "USD", "amount": 0.49}}}),
    }
    backfill(apps, None)
    got = {name: refreshed(row) for name, row in rows.items()}

    a = got["apple"]
    assert (a.order_id, a.country, a.store_product_id, a.offer_kind) == ("2000000000000002", "DEU", "premium",
                                                                         "promotional")
    assert (got["apple_refund"].refers_to, got["apple_refund"].order_id) == ("2000000000000002",) * 2
    g = got["google"]
    assert (g.order_id, g.country, g.store_product_id) == ("GPA.1..0", "AU", "pro")
    assert got["google_refund"].refers_to == "GPA.1..0"
    assert (got["stripe"].order_id, got["stripe"].charge_id) == ("in_1", "ch_1")
    assert (got["stripe_refund"].refers_to, got["stripe_refund"].charge_id) == ("in_1", "ch_1")
    x = got["xsolla"]
    assert (x.order_id, x.fee_minor, x.net_minor, x.settlement_currency) == ("1", 149, 850, "USD")
    # Not in the stored payloads: left empty, not guessed.
    assert (a.period_start, a.line_item_id, got["stripe"].fee_minor) == (None, "", None)


def test_running_it_again_changes_nothing_and_keeps_rows_filled_since():
    sub = SubscriptionFactory(provider="stripe", provider_subscription_id="sub_2")
    old = old_row(sub, "in_2", "purchase", {"invoice": "in_2", "charge": "ch_2"})
    new = old_row(sub, "in_3", "renewal", {"invoice": "in_3"}, order_id="in_3", charge_id="ch_3", fee_minor=59)
    backfill(apps, None)
    first = list(Transaction.objects.order_by("id").values())
    backfill(apps, None)
    assert list(Transaction.objects.order_by("id").values()) == first
    assert (refreshed(old).order_id, refreshed(new).charge_id, refreshed(new).fee_minor) == ("in_2", "ch_3", 59)
