"""GET /api/users/<user_id>/subscriptions and GET /api/me/subscriptions."""

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.authentication import clear_api_key_cache
from billing.models import Transaction
from billing.snapshots import Provider, TransactionKind
from billing.statuses import Status
from tests.api_support import UNTRUSTED, bearer, configure_jwt
from tests.factories import ProductFactory, SubscriberFactory, SubscriptionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _auth(settings):
    configure_jwt(settings)
    clear_api_key_cache()


@pytest.fixture
def reader(service_auth):
    return service_auth("read")


def _subscriptions(external_id, count):
    user = SubscriberFactory(external_id=external_id)
    return [SubscriptionFactory(subscriber=user, provider_subscription_id=f"sub_{external_id}_{i}")
            for i in range(count)]


def test_items_carry_what_the_store_lists_show(client, reader):
    now = timezone.now()
    product = ProductFactory(store_product_id="price_pro_m", label="Pro monthly", entitlements=["premium", "no_ads"])
    sub = SubscriptionFactory(subscriber=SubscriberFactory(external_id="31"), product=product,
                              store_product_id="price_pro_m", amount_minor=999, upcoming_amount_minor=1299,
                              currency="EUR", current_period_end=now + timedelta(days=20),
                              expires_at=now + timedelta(days=20), last_verified_at=now)
    Transaction.objects.create(provider=Provider.STRIPE, provider_transaction_id="in_1", subscription=sub,
                               kind=TransactionKind.PURCHASE, amount_minor=999, currency="EUR",
                               occurred_at=now - timedelta(days=40))
    Transaction.objects.create(provider=Provider.STRIPE, provider_transaction_id="in_2", subscription=sub,
                               kind=TransactionKind.RENEWAL, amount_minor=999, currency="EUR",
                               occurred_at=now - timedelta(days=10))
    Transaction.objects.create(provider=Provider.STRIPE, provider_transaction_id="re_1", subscription=sub,
                               kind=TransactionKind.REFUND, amount_minor=999, currency="EUR",
                               occurred_at=now - timedelta(days=1))
    response = client.get("/api/users/31/subscriptions", **reader)
    assert response.status_code == 200
    body = response.json()
    assert body["has_more"] is False and body["limit"] == 15 and body["offset"] == 0
    [item] = body["items"]
    assert item["id"] == str(sub.pk) and item["user_id"] == "31"
    assert item["provider"] == "stripe" and item["provider_subscription_id"] == sub.provider_subscription_id
    assert item["status"] == "ACTIVE" and item["is_entitled"] is True
    assert item["entitlements"] == ["no_ads", "premium"]
    assert item["product"] == {"id": "price_pro_m", "name": "Pro monthly"}
    assert item["plan_id"] == "price_pro_m" and item["plan_name"] == "Pro monthly"
    assert item["charge"] == {"amount": 1299, "currency": "EUR"}  # the upcoming charge
    assert item["period"] == {"value": 1, "unit": "month"}
    assert item["next_charge_date"] == sub.current_period_end.isoformat().replace("+00:00", "Z")
    assert item["last_charge_date"] == (now - timedelta(days=10)).isoformat().replace("+00:00", "Z")
    assert item["auto_renew"] is True and item["canceled_at"] is None
    assert item["created"] and item["started_at"] and item["expires_at"]
    assert item["environment"] == "production" and item["last_confirmed_at"]


def test_no_next_charge_when_not_renewing(client, reader):
    SubscriptionFactory(subscriber=SubscriberFactory(external_id="32"), status=Status.CANCELED, auto_renew=False,
                        canceled_at=timezone.now())
    [item] = client.get("/api/users/32/subscriptions", **reader).json()["items"]
    assert item["next_charge_date"] is None and item["canceled_at"] is not None and item["is_entitled"] is True


def test_paging_newest_first(client, reader):
    subs = _subscriptions("33", 5)
    first = client.get("/api/users/33/subscriptions?limit=2", **reader).json()
    assert [i["id"] for i in first["items"]] == [str(subs[4].pk), str(subs[3].pk)] and first["has_more"] is True
    last = client.get("/api/users/33/subscriptions?limit=2&offset=4", **reader).json()
    assert [i["id"] for i in last["items"]] == [str(subs[0].pk)] and last["has_more"] is False
    assert last["limit"] == 2 and last["offset"] == 4


@pytest.mark.parametrize("query", ["limit=0", "limit=101", "limit=ten", "offset=-1"])
def test_bad_paging_is_400(client, reader, query):
    response = client.get(f"/api/users/33/subscriptions?{query}", **reader)
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid"


def test_unknown_user_has_no_subscriptions(client, reader):
    assert client.get("/api/users/nobody/subscriptions", **reader).json() == {
        "items": [], "has_more": False, "limit": 15, "offset": 0}


def test_read_scope_is_required(client, service_auth):
    response = client.get("/api/users/33/subscriptions", **service_auth("check"))
    assert response.status_code == 403 and "read" in response.json()["error"]["message"]
    assert client.get("/api/users/33/subscriptions", REMOTE_ADDR="127.0.0.1").status_code == 401


def test_end_users_see_only_their_own(client):
    _subscriptions("34", 2)
    mine = client.get("/api/me/subscriptions", **bearer("34"))
    assert mine.status_code == 200 and len(mine.json()["items"]) == 2
    assert client.get("/api/users/34/subscriptions", **bearer("34")).status_code == 200
    assert client.get("/api/users/34/subscriptions", **bearer("35")).status_code == 403


def test_me_needs_an_end_user(client, reader):
    assert client.get("/api/me/subscriptions", **reader).status_code == 403
    assert client.get("/api/me/subscriptions", REMOTE_ADDR=UNTRUSTED).status_code == 401


def test_a_store_that_does_not_send_the_period_shows_the_catalogues(client, reader):
    # Apple and Google say no period in what they send: staff set it on the product when mapping it.
    from billing.apply import apply_snapshot
    from billing.snapshots import Cause, CauseKind, Snapshot

    ProductFactory(provider=Provider.GOOGLE, store_product_id="pro_yearly", period_unit="year", period_value=1)
    now = timezone.now()
    for token, product in (("tok_mapped", "pro_yearly"), ("tok_unmapped", "pro_unknown")):
        apply_snapshot(Snapshot(provider=Provider.GOOGLE, provider_subscription_id=token, status=Status.ACTIVE,
                                observed_at=now, user_id="32", store_product_id=product,
                                expires_at=now + timedelta(days=300)), Cause(CauseKind.VERIFICATION))

    body = client.get("/api/users/32/subscriptions", **reader).json()
    items = {i["provider_subscription_id"]: i for i in body["items"]}
    assert items["tok_mapped"]["period"] == {"value": 1, "unit": "year"}
    assert items["tok_unmapped"]["period"] == {"value": None, "unit": None}  # nobody said it yet
