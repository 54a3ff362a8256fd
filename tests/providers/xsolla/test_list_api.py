"""The list API carries, for Xsolla subscriptions made by webhooks and for other stores' alike, what
Xsolla's own subscription list shows: plan id and name, status, created, next charge date, last
charge date, charge amount and currency, period value and unit (and Xsolla's paging shape)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.authentication import clear_api_key_cache
from billing.models import Product, Transaction
from billing.snapshots import Provider, TransactionKind
from tests.api_support import api_key, with_key
from tests.factories import ProductFactory, SubscriptionFactory

from .conftest import body_of, fixture_json, process

pytestmark = pytest.mark.django_db

XSOLLA_LIST_FIELDS = {"plan_id", "plan_name", "status", "created", "next_charge_date", "last_charge_date",
                      "charge", "period"}


def iso(dt) -> str:
    return dt.replace(microsecond=0).isoformat()


def z(dt) -> str:
    return dt.isoformat().replace("+00:00", "Z")


@pytest.fixture
def reader():
    clear_api_key_cache()
    return with_key(api_key("read"))


def test_xsolla_and_stripe_items_carry_xsolla_list_fields(client, reader, fake_xsolla, xsolla):
    now = timezone.now()
    next_charge = (now + timedelta(days=25)).replace(microsecond=0)
    fake_xsolla.put_subscription(fake_xsolla.subscription(
        "10", user_id="1234567", plan="b5dac9c8", amount=4.99, currency="EUR", period=(3, "month"),
        date_create=iso(now - timedelta(days=5)), date_last_charge=iso(now - timedelta(days=5)),
        date_next_charge=iso(next_charge)))
    create = fixture_json("docs/create_subscription")
    del create["subscription"]["trial"]
    process(xsolla, body_of(create))
    payment = fixture_json("sdk/payment")
    payment["transaction"]["payment_date"] = iso(now - timedelta(days=5))
    process(xsolla, body_of(payment))
    # staff name the plan in the catalogue (the plan name Xsolla lists)
    Product.objects.filter(provider="xsolla", store_product_id="b5dac9c8").update(label="Premium quarterly")

    # another store's subscription of the same user
    stripe_product = ProductFactory(store_product_id="price_pro_m", label="Pro monthly")
    stripe_sub = SubscriptionFactory(subscriber=SubscriptionFactory._meta.model.objects.get().subscriber,
                                     product=stripe_product, store_product_id="price_pro_m",
                                     current_period_end=now + timedelta(days=20), expires_at=now + timedelta(days=20))
    Transaction.objects.create(provider=Provider.STRIPE, provider_transaction_id="in_1", subscription=stripe_sub,
                               kind=TransactionKind.PURCHASE, amount_minor=999, currency="USD",
                               occurred_at=now - timedelta(days=10))

    response = client.get("/api/users/1234567/subscriptions?limit=15&offset=0", **reader)

    assert response.status_code == 200
    page = response.json()
    assert {"items", "has_more", "limit", "offset"} <= set(page) and page["has_more"] is False
    items = {item["provider"]: item for item in page["items"]}
    assert set(items) == {"xsolla", "stripe"}
    for item in items.values():
        assert set(item) >= XSOLLA_LIST_FIELDS, XSOLLA_LIST_FIELDS - set(item)

    x = items["xsolla"]
    assert x["provider_subscription_id"] == "10"
    assert (x["plan_id"], x["plan_name"], x["status"]) == ("b5dac9c8", "Premium quarterly", "ACTIVE")
    assert x["created"]
    assert x["next_charge_date"] == z(next_charge)
    assert x["last_charge_date"] == z((now - timedelta(days=5)).replace(microsecond=0))  # the payment's date
    assert x["charge"] == {"amount": 499, "currency": "EUR"}
    assert x["period"] == {"value": 3, "unit": "month"}
    assert x["environment"] == "sandbox"

    s = items["stripe"]
    assert (s["plan_id"], s["plan_name"], s["status"]) == ("price_pro_m", "Pro monthly", "ACTIVE")
    assert s["next_charge_date"] == z(stripe_sub.current_period_end)
    assert s["last_charge_date"] == z(now - timedelta(days=10))
    assert s["charge"] == {"amount": 999, "currency": "USD"} and s["period"] == {"value": 1, "unit": "month"}


def test_an_unlabelled_xsolla_plan_has_no_name_yet(client, reader, xsolla):
    process(xsolla, body_of(fixture_json("docs/update_subscription")))
    [item] = client.get("/api/users/1234567/subscriptions", **reader).json()["items"]
    assert item["plan_id"] == "b5dac9c8" and item["plan_name"] is None
