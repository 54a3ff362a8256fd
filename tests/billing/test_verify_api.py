"""POST /api/subscriptions/verify, generic over adapters: a test adapter stands in for the store."""

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.authentication import clear_api_key_cache
from accounts.models import Subscriber
from billing import providers
from billing.models import StatusChange, Subscription, Transaction
from billing.providers.base import (
    InvalidPurchase,
    NotConfigured,
    ParseResult,
    ProviderAdapter,
    StoreUnavailable,
)
from billing.snapshots import Snapshot, TransactionKind, TransactionRecord
from billing.statuses import Status
from tests.api_support import api_key, bearer, configure_jwt, with_key
from tests.factories import SubscriberFactory, SubscriptionFactory

pytestmark = pytest.mark.django_db


class FakeStore(ProviderAdapter):
    """Answers like a store would, by the transaction id the app sends."""

    name = "apple"

    def __init__(self):
        self.acknowledged = []

    def verify(self, purchase, *, user_id):
        tx = purchase.get("transaction_id", "")
        if tx == "forged":
            raise InvalidPurchase("The store does not know this transaction.", code="unknown_transaction")
        if tx == "store-down":
            raise StoreUnavailable("App Store Server API timed out")
        if tx == "unconfigured":
            raise NotConfigured("apple", ["APPLE_KEY_ID", "APPLE_ISSUER_ID"])
        now = timezone.now()
        # "bought-by-N": the store's own hint says user N made the purchase
        hint = tx.removeprefix("bought-by-") if tx.startswith("bought-by-") else None
        snapshot = Snapshot(provider="apple", provider_subscription_id=f"orig-{tx}", status=Status.ACTIVE,
                            observed_at=now, store_product_id="com.example.premium.monthly",
                            expires_at=now + timedelta(days=30), environment="sandbox", user_id=hint,
                            transactions=(TransactionRecord(tx, TransactionKind.PURCHASE, now, 999, "USD"),))
        return ParseResult(snapshots=[snapshot], after_apply=[self.acknowledged.append])


@pytest.fixture(autouse=True)
def store(settings):
    configure_jwt(settings)
    clear_api_key_cache()
    adapter = FakeStore()
    providers.register("apple", adapter)
    yield adapter
    providers.unregister("apple")


def verify(client, body, **auth):
    return client.post("/api/subscriptions/verify", body, content_type="application/json", **auth)


def test_verified_purchase_is_applied_and_returned(client, store):
    response = verify(client, {"provider": "apple", "user_id": "41", "transaction_id": "2000001"},
                      **with_key(api_key("verify")))
    assert response.status_code == 200, response.json()
    item = response.json()
    sub = Subscription.objects.get(provider="apple", provider_subscription_id="orig-2000001")
    assert item["id"] == str(sub.pk) and item["user_id"] == "41" and item["status"] == "ACTIVE"
    assert item["plan_id"] == "com.example.premium.monthly" and item["environment"] == "sandbox"
    assert sub.subscriber.external_id == "41" and sub.last_verified_at is not None
    assert StatusChange.objects.get(subscription=sub).cause == "verification"
    assert Transaction.objects.filter(subscription=sub).count() == 1
    assert [r.subscription_id for r in store.acknowledged[0]] == [sub.pk]  # after_apply ran
    assert client.get("/api/subscriptions/check/41").json()["is_subscribed"] is True


def test_repeat_verification_is_idempotent(client):
    key = with_key(api_key("verify"))
    for _ in range(2):
        assert verify(client, {"provider": "apple", "user_id": "42", "transaction_id": "7"}, **key).status_code == 200
    assert Subscription.objects.count() == 1 and Transaction.objects.count() == 1


def test_end_user_verifies_for_themselves(client):
    response = verify(client, {"provider": "apple", "transaction_id": "8"}, **bearer("43"))
    assert response.status_code == 200 and response.json()["user_id"] == "43"
    mismatch = verify(client, {"provider": "apple", "user_id": "44", "transaction_id": "9"}, **bearer("43"))
    assert mismatch.status_code == 403 and mismatch.json()["error"]["code"] == "user_mismatch"


def test_purchase_of_another_user_is_409_and_nothing_applied(client):
    owner = SubscriberFactory(external_id="45")
    sub = SubscriptionFactory(subscriber=owner, provider="apple", provider_subscription_id="orig-10",
                              status=Status.EXPIRED)
    response = verify(client, {"provider": "apple", "user_id": "46", "transaction_id": "10"},
                      **with_key(api_key("verify")))
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "purchase_owned_by_another_user" and "orig-10" in error["message"]
    assert error["details"]["subscription_id"] == str(sub.pk)
    sub.refresh_from_db()
    assert sub.status == Status.EXPIRED and sub.subscriber == owner
    assert not Transaction.objects.exists() and not StatusChange.objects.exists()


def test_purchase_the_store_says_another_user_made_is_409_and_nothing_applied(client, store):
    key = with_key(api_key("verify"))
    response = verify(client, {"provider": "apple", "user_id": "46", "transaction_id": "bought-by-45"}, **key)
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "purchase_owned_by_another_user" and "orig-bought-by-45" in error["message"]
    assert not Subscription.objects.exists() and not Transaction.objects.exists()
    assert not Subscriber.objects.exists()  # neither the caller nor the hinted user
    assert store.acknowledged == []  # the store's follow-up (e.g. acknowledging) did not run

    mine = verify(client, {"provider": "apple", "user_id": "45", "transaction_id": "bought-by-45"}, **key)
    assert mine.status_code == 200 and mine.json()["user_id"] == "45"


def test_an_orphan_the_store_says_another_user_made_stays_an_orphan(client):
    orphan = SubscriptionFactory(subscriber=None, provider="apple", provider_subscription_id="orig-bought-by-45")
    response = verify(client, {"provider": "apple", "user_id": "46", "transaction_id": "bought-by-45"},
                      **with_key(api_key("verify")))
    assert response.status_code == 409
    assert response.json()["error"]["details"]["subscription_id"] == str(orphan.pk)
    orphan.refresh_from_db()
    assert orphan.subscriber is None


def test_an_orphan_purchase_is_linked_to_the_verifying_user(client):
    orphan = SubscriptionFactory(subscriber=None, provider="apple", provider_subscription_id="orig-11")
    assert verify(client, {"provider": "apple", "user_id": "47", "transaction_id": "11"},
                  **with_key(api_key("verify"))).status_code == 200
    orphan.refresh_from_db()
    assert orphan.subscriber.external_id == "47"


@pytest.mark.parametrize(("tx", "status", "code"), [
    ("forged", 400, "unknown_transaction"),
    ("store-down", 502, "store_unavailable"),
    ("unconfigured", 503, "provider_not_configured"),
])
def test_store_errors(client, tx, status, code):
    response = verify(client, {"provider": "apple", "user_id": "48", "transaction_id": tx},
                      **with_key(api_key("verify")))
    assert response.status_code == status and response.json()["error"]["code"] == code
    if code == "provider_not_configured":
        assert "APPLE_KEY_ID" in response.json()["error"]["message"]
    assert not Subscription.objects.exists()


def test_not_supported_is_400(client):
    providers.register("google", ProviderAdapter())  # the base adapter: verification not supported
    try:
        response = verify(client, {"provider": "google", "user_id": "49", "purchase_token": "t", "product_id": "p"},
                          **with_key(api_key("verify")))
    finally:
        providers.unregister("google")
    assert response.status_code == 400 and response.json()["error"]["code"] == "not_supported"


@pytest.mark.parametrize("body", [{"provider": "stripe", "user_id": "1"}, {"user_id": "1"},
                                  {"provider": "apple"}])
def test_bad_requests_are_400(client, body):
    response = verify(client, body, **with_key(api_key("verify")))
    assert response.status_code == 400 and response.json()["error"]["message"]


def test_verify_scope_is_required(client):
    response = verify(client, {"provider": "apple", "user_id": "1", "transaction_id": "1"},
                      **with_key(api_key("check", "read")))
    assert response.status_code == 403
