"""Stripe events → unified state, at the adapter level (authenticate → parse → apply_snapshot)."""

from datetime import UTC, datetime

import pytest

from billing.models import Product, StatusChange, Subscription, Transaction
from billing.selectors import check_answer
from billing.snapshots import TransactionKind
from billing.statuses import Status
from tests.factories import ProductFactory, SubscriberFactory

from .conftest import process, process_all

pytestmark = pytest.mark.django_db


@pytest.fixture
def monthly(fake_stripe):
    product = fake_stripe.add_product("Premium")
    return fake_stripe.add_price(product, unit_amount=999, currency="usd", interval="month")


@pytest.fixture
def yearly(fake_stripe, monthly):
    return fake_stripe.add_price(fake_stripe.objects[monthly["product"]], unit_amount=9900, interval="year")


def _customer(fake, user_id="42"):
    return fake.customer_create({"email": f"u{user_id}@example.com", "metadata": {"user_id": user_id}})


def test_subscription_created_and_paid_subscribes_the_user(fake_stripe, stripe_adapter, monthly):
    ProductFactory(provider="stripe", store_product_id=monthly["id"], entitlements=["premium"])
    customer = _customer(fake_stripe)
    sub = fake_stripe.start_subscription(customer, monthly, payment_method="pm_card_visa", metadata={"user_id": "42"})
    process_all(stripe_adapter, fake_stripe.take_events())

    row = Subscription.objects.get(provider="stripe", provider_subscription_id=sub["id"])
    assert row.status == Status.ACTIVE
    assert row.subscriber.external_id == "42"
    assert row.subscriber.stripe_customer_id == customer["id"]
    assert row.amount_minor == 999 and row.currency == "USD"
    assert row.period_unit == "month" and row.period_value == 1
    assert row.expires_at == datetime.fromtimestamp(sub["items"]["data"][0]["current_period_end"], tz=UTC)
    [purchase] = Transaction.objects.filter(subscription=row)
    assert purchase.kind == TransactionKind.PURCHASE and purchase.amount_minor == 999
    assert purchase.provider_transaction_id == sub["latest_invoice"]
    answer = check_answer("42")
    assert answer["is_subscribed"] is True and answer["entitlements"] == ["premium"]
    product = Product.objects.get(provider="stripe", store_product_id=monthly["id"])
    assert product.label == "Premium / month" and product.price_minor == 999
