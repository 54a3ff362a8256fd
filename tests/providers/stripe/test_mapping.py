"""mapping.py: Stripe objects (plain dicts) → Snapshots and transactions, as pure functions, on both
shapes: the current API and the pre-2025-03-31 one (real bodies in tests/fixtures/stripe)."""

import json
from datetime import UTC, datetime

import pytest

from billing.providers.stripe import mapping
from billing.snapshots import Environment, TransactionKind
from billing.statuses import Status

from .conftest import fixture_event

NOW = datetime(2026, 11, 1, tzinfo=UTC)
T0 = 1_790_000_000  # a period start, in Unix seconds
DAY = 86400


def at(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def subscription(status="active", *, end=T0 + 30 * DAY, **fields) -> dict:
    """A current-API subscription: the period on its item, the price expanded with its product."""
    price = {"id": "price_m", "object": "price", "unit_amount": 999, "currency": "usd",
             "recurring": {"interval": "month", "interval_count": 1},
             "product": {"id": "prod_1", "object": "product", "name": "Premium"}}
    sub = {"id": "sub_1", "object": "subscription", "status": status, "customer": "cus_1", "livemode": False,
           "start_date": T0, "created": T0, "cancel_at_period_end": False, "cancel_at": None, "trial_end": None,
           "ended_at": None, "canceled_at": None, "metadata": {"user_id": "42"},
           "items": {"object": "list", "data": [{"id": "si_1", "price": price, "quantity": 1,
                                                 "current_period_start": T0, "current_period_end": end}]}}
    sub.update(fields)
    return sub


@pytest.mark.parametrize(("status", "fields", "expected"), [
    ("trialing", {}, Status.TRIAL),
    ("active", {}, Status.ACTIVE),
    ("active", {"cancel_at_period_end": True}, Status.CANCELED),
    ("trialing", {"cancel_at": T0 + 5 * DAY}, Status.CANCELED),
    ("past_due", {}, Status.ON_GRACE),
    ("unpaid", {}, Status.ON_HOLD),
    ("paused", {}, Status.PAUSED),
    ("canceled", {}, Status.EXPIRED),
    ("incomplete_expired", {}, Status.EXPIRED),
    ("incomplete", {}, Status.INACTIVE),
    ("something_new", {}, Status.INACTIVE),
])
def test_unified_status(status, fields, expected):
    assert mapping.unified_status(subscription(status, **fields)) == expected


def test_subscription_snapshot_of_the_current_shape():
    snapshot = mapping.subscription_snapshot(subscription(), observed_at=NOW)
    assert (snapshot.provider, snapshot.provider_subscription_id, snapshot.status) == ("stripe", "sub_1", Status.ACTIVE)
    assert (snapshot.store_product_id, snapshot.amount_minor, snapshot.currency) == ("price_m", 999, "USD")
    assert (snapshot.period_unit, snapshot.period_value) == ("month", 1)
    assert (snapshot.current_period_start, snapshot.expires_at) == (at(T0), at(T0 + 30 * DAY))
    assert (snapshot.user_id, snapshot.identity_field, snapshot.identity_value) == ("42", "stripe_customer_id",
                                                                                   "cus_1")
    assert snapshot.auto_renew is True and snapshot.environment == Environment.SANDBOX
    assert snapshot.raw == {"subscription": subscription()}


def test_the_latest_item_period_end_is_when_access_must_last():
    sub = subscription()
    sub["items"]["data"].append({**sub["items"]["data"][0], "id": "si_2", "current_period_end": T0 + 365 * DAY})
    assert mapping.subscription_period(sub) == (at(T0), at(T0 + 365 * DAY))


def test_the_old_shape_keeps_the_period_at_the_top_level():
    sub = json.loads(fixture_event("customer.subscription.created"))["data"]["object"]
    snapshot = mapping.subscription_snapshot(sub, observed_at=NOW)
    assert snapshot.expires_at == at(sub["current_period_end"]) and snapshot.status == Status.ACTIVE
    assert snapshot.store_product_id == sub["items"]["data"][0]["price"]["id"]


@pytest.mark.parametrize(("status", "fields", "expires"), [
    ("trialing", {"trial_end": T0 + 7 * DAY}, T0 + 7 * DAY),
    ("active", {"cancel_at": T0 + 10 * DAY}, T0 + 10 * DAY),  # earlier than the period end
    ("canceled", {"ended_at": T0 + 3 * DAY}, T0 + 3 * DAY),
    ("incomplete", {}, None),
])
def test_access_lasts_until(status, fields, expires):
    snapshot = mapping.subscription_snapshot(subscription(status, **fields), observed_at=NOW)
    assert snapshot.expires_at == (at(expires) if expires else None)


def test_the_user_falls_back_to_the_given_one_and_the_email_to_the_expanded_customer():
    sub = subscription(metadata={}, customer={"id": "cus_9", "email": "x@example.com"})
    snapshot = mapping.subscription_snapshot(sub, observed_at=NOW, user_id="55")
    assert (snapshot.user_id, snapshot.identity_value, snapshot.email) == ("55", "cus_9", "x@example.com")


def test_a_price_label_and_a_legacy_plan():
    price = mapping.parse_price({"id": "price_q", "unit_amount": 2500, "currency": "eur",
                                 "recurring": {"interval": "month", "interval_count": 3},
                                 "product": {"id": "prod_1", "name": "Premium"}})
    assert (price.label, price.period_unit, price.currency) == ("Premium / 3 months", "month", "EUR")
    plan = mapping.parse_price({"id": "plan_y", "object": "plan", "amount": 9900, "currency": "usd",
                                "interval": "year", "interval_count": 1, "product": "prod_1", "nickname": "Yearly"})
    assert (plan.label, plan.unit_amount, plan.period_unit) == ("Yearly / year", 9900, "year")


def test_invoice_transactions():
    invoice = {"id": "in_1", "amount_paid": 999, "currency": "usd", "billing_reason": "subscription_create",
               "status_transitions": {"paid_at": T0 + 60}, "created": T0,
               "parent": {"subscription_details": {"subscription": "sub_1"}}}
    first = mapping.invoice_transaction(invoice)
    assert (first.kind, first.amount_minor, first.currency, first.occurred_at) == (
        TransactionKind.PURCHASE, 999, "USD", at(T0 + 60))
    renewal = mapping.invoice_transaction({**invoice, "billing_reason": "subscription_cycle"})
    assert renewal.kind == TransactionKind.RENEWAL
    assert mapping.invoice_transaction({**invoice, "amount_paid": 0}) is None  # a trial start moves no money
    assert mapping.invoice_subscription_id(invoice) == "sub_1"
    assert mapping.invoice_subscription_id({"id": "in_2", "subscription": "sub_old"}) == "sub_old"  # old shape
    assert mapping.invoice_subscription_id({"id": "in_3"}) is None


def test_refunds_disputes_and_full_refunds():
    charge = {"id": "ch_1", "amount": 999, "amount_refunded": 999, "currency": "usd", "refunded": True}
    refunds = [{"id": "re_1", "amount": 500, "created": T0, "status": "succeeded"},
               {"id": "re_2", "amount": 499, "created": T0, "status": "failed"}]
    [refund] = mapping.refund_transactions(charge, refunds)
    assert (refund.provider_transaction_id, refund.kind, refund.amount_minor, refund.currency) == (
        "re_1", TransactionKind.REFUND, 500, "USD")
    assert mapping.charge_fully_refunded(charge)
    assert not mapping.charge_fully_refunded({**charge, "refunded": False, "amount_refunded": 300})
    dispute = mapping.dispute_transaction({"id": "dp_1", "amount": 999, "currency": "usd", "created": T0,
                                           "charge": {"id": "ch_1"}, "reason": "fraudulent"})
    assert (dispute.kind, dispute.amount_minor, dispute.raw["charge"]) == (TransactionKind.CHARGEBACK, 999, "ch_1")
