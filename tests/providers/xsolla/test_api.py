"""The REST API for Xsolla subscriptions.

- POST /api/subscriptions/<id>/cancel: non_renewing at Xsolla (through the fake subscriptions API),
  access kept until the next charge date; Xsolla down → 502, not configured → 503, nothing changed.
- GET /api/users/<id>/subscriptions: for Xsolla subscriptions made by webhooks and for other stores'
  alike, what Xsolla's own subscription list shows: plan id and name, status, created, next charge
  date, last charge date, charge amount and currency, period value and unit (and Xsolla's paging shape)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from billing.models import Product, Subscription, Transaction
from billing.snapshots import Provider, TransactionKind
from billing.statuses import Status
from tests.factories import ProductFactory, SubscriberFactory, SubscriptionFactory

from .conftest import PROJECT_ID, body_of, fixture_bytes, fixture_json, send, sub_10

pytestmark = pytest.mark.django_db

XSOLLA_LIST_FIELDS = {"plan_id", "plan_name", "status", "created", "next_charge_date", "last_charge_date",
                      "charge", "period"}


def iso(dt) -> str:
    return dt.replace(microsecond=0).isoformat()


def z(dt) -> str:
    return dt.isoformat().replace("+00:00", "Z")


@pytest.fixture
def active_subscription(fake_xsolla):
    next_charge = (timezone.now() + timedelta(days=9)).replace(microsecond=0)
    fake_xsolla.put_subscription(fake_xsolla.subscription("10", user_id="1234567",
                                                          date_next_charge=next_charge.isoformat()))
    send(fixture_bytes("docs/update_subscription"))
    sub = sub_10()
    assert sub.status == Status.ACTIVE
    return sub, next_charge


# --- Cancel -------------------------------------------------------------------------------------

def test_cancel_is_at_period_end_through_xsolla(client, service_auth, fake_xsolla, active_subscription):
    sub, next_charge = active_subscription

    response = client.post(f"/api/subscriptions/{sub.pk}/cancel", **service_auth("manage"))

    assert response.status_code == 200, response.content
    item = response.json()
    assert item["status"] == "CANCELED" and item["is_entitled"] is True and item["auto_renew"] is False
    assert item["expires_at"] == next_charge.isoformat().replace("+00:00", "Z")
    put = fake_xsolla.requests[-1]
    assert (put["method"], put["path"], put["body"]) == (
        "PUT", f"/projects/{PROJECT_ID}/users/1234567/subscriptions/10", {"status": "non_renewing"})
    assert sub.status_changes.order_by("-id").first().cause == "api"


def test_cancel_keeps_access_until_the_next_charge_at_xsolla_and_here(client, service_auth, fake_xsolla,
                                                                      active_subscription):
    sub, next_charge = active_subscription

    assert client.post(f"/api/subscriptions/{sub.pk}/cancel", **service_auth("manage")).status_code == 200

    assert fake_xsolla.subscriptions["10"]["status"] == "non_renewing"
    sub.refresh_from_db()
    assert sub.status == Status.CANCELED and sub.auto_renew is False
    assert sub.expires_at == next_charge and sub.is_entitled(timezone.now())


def test_cancel_addresses_the_user_by_their_xsolla_identity(client, service_auth, fake_xsolla):
    fake_xsolla.put_subscription(fake_xsolla.subscription("10", user_id="xs-user-9"))
    sub = SubscriptionFactory(provider="xsolla", provider_subscription_id="10", product=None,
                              store_product_id="b5dac9c8", subscriber=SubscriberFactory(external_id="42",
                                                                                      xsolla_user_id="xs-user-9"))

    assert client.post(f"/api/subscriptions/{sub.pk}/cancel", **service_auth("manage")).status_code == 200
    assert fake_xsolla.requests[-1]["path"].endswith("/users/xs-user-9/subscriptions/10")


def test_xsolla_down_is_502_and_nothing_changes(client, service_auth, fake_xsolla, active_subscription):
    sub, _ = active_subscription
    fake_xsolla.fail_next(503)

    response = client.post(f"/api/subscriptions/{sub.pk}/cancel", **service_auth("manage"))

    assert response.status_code == 502 and response.json()["error"]["code"] == "store_unavailable"
    sub.refresh_from_db()
    assert sub.status == Status.ACTIVE and fake_xsolla.subscriptions["10"]["status"] == "active"


def test_without_api_credentials_cancel_is_503_naming_what_is_missing(client, service_auth, xsolla):
    sub = SubscriptionFactory(provider="xsolla", provider_subscription_id="10", status=Status.ACTIVE,
                              subscriber=SubscriberFactory(external_id="1234567"))

    response = client.post(f"/api/subscriptions/{sub.pk}/cancel", **service_auth("manage"))

    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "provider_not_configured" and "XSOLLA_MERCHANT_ID" in error["message"]
    assert Subscription.objects.get().status == Status.ACTIVE


# --- The list -----------------------------------------------------------------------------------

def test_xsolla_and_stripe_items_carry_xsolla_list_fields(client, service_auth, fake_xsolla):
    now = timezone.now()
    next_charge = (now + timedelta(days=25)).replace(microsecond=0)
    fake_xsolla.put_subscription(fake_xsolla.subscription(
        "10", user_id="1234567", plan="b5dac9c8", amount=4.99, currency="EUR", period=(3, "month"),
        date_create=iso(now - timedelta(days=5)), date_last_charge=iso(now - timedelta(days=5)),
        date_next_charge=iso(next_charge)))
    create = fixture_json("docs/create_subscription")
    del create["subscription"]["trial"]
    send(body_of(create))
    payment = fixture_json("sdk/payment")
    payment["transaction"]["payment_date"] = iso(now - timedelta(days=5))
    send(body_of(payment))
    # staff name the plan in the catalogue (the plan name Xsolla lists)
    Product.objects.filter(provider="xsolla", store_product_id="b5dac9c8").update(label="Premium quarterly")

    # another store's subscription of the same user
    stripe_product = ProductFactory(store_product_id="price_pro_m", label="Pro monthly")
    stripe_sub = SubscriptionFactory(subscriber=sub_10().subscriber, product=stripe_product,
                                     store_product_id="price_pro_m", current_period_end=now + timedelta(days=20),
                                     expires_at=now + timedelta(days=20))
    Transaction.objects.create(provider=Provider.STRIPE, provider_transaction_id="in_1", subscription=stripe_sub,
                               kind=TransactionKind.PURCHASE, amount_minor=999, currency="USD",
                               occurred_at=now - timedelta(days=10))

    response = client.get("/api/users/1234567/subscriptions?limit=15&offset=0", **service_auth("read"))

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


def test_an_unlabelled_xsolla_plan_has_no_name_yet(client, service_auth, xsolla):
    send(fixture_bytes("docs/update_subscription"))
    [item] = client.get("/api/users/1234567/subscriptions", **service_auth("read")).json()["items"]
    assert item["plan_id"] == "b5dac9c8" and item["plan_name"] is None
