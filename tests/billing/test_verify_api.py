"""POST /api/subscriptions/verify, what every store shares (applying, idempotency, who verifies, owner
conflicts, orphans, error mapping, request checks, scope), through the real Apple adapter and the
library's client talking to the local fake App Store Server API (tests/fakes/apple.py).

Store-specific cases live with the stores: tests/providers/apple/test_api.py and test_client.py (invalid
purchases, store failures, the store's own user hint), tests/providers/google/test_api.py (Google's
verify, acknowledgement after apply)."""

import pytest

from accounts.authentication import clear_api_key_cache
from billing.models import StatusChange, Subscription, Transaction
from billing.providers.apple.mapping import app_account_token_for_user
from billing.statuses import Status
from tests.api_support import bearer, configure_jwt
from tests.factories import SubscriberFactory, SubscriptionFactory
from tests.fakes.apple import renewal_claims, transaction_claims

pytestmark = pytest.mark.django_db

OTID = "2000000000000200"


@pytest.fixture(autouse=True)
def _deployment(apple_settings):
    """The App Store configured against its fake; end users sign in with our test JWTs."""
    configure_jwt(apple_settings)
    clear_api_key_cache()


@pytest.fixture
def sell(apple_chain, fake_appstore):
    """Put a subscription (one purchase) on the fake App Store; `bought_by` sets Apple's integer-form
    appAccountToken, the store's own hint of the user who bought it."""
    def sell(original_transaction_id=OTID, *, bought_by=None):
        token = app_account_token_for_user(bought_by) if bought_by is not None else None
        txn = transaction_claims(original_transaction_id=original_transaction_id, app_account_token=token)
        fake_appstore.add_subscription(apple_chain, txn, renewal_claims(txn))
        return txn
    return sell


def verify(client, body, **auth):
    return client.post("/api/subscriptions/verify", body, content_type="application/json", **auth)


def test_verified_purchase_is_applied_and_returned(client, sell, fake_appstore, service_auth):
    sell(bought_by=41)  # the store names the caller (a bare transaction id needs that)
    response = verify(client, {"provider": "apple", "user_id": "41", "transaction_id": OTID},
                      **service_auth("verify"))
    assert response.status_code == 200, response.json()
    item = response.json()
    sub = Subscription.objects.get(provider="apple", provider_subscription_id=OTID)
    assert item["id"] == str(sub.pk) and item["user_id"] == "41" and item["status"] == "ACTIVE"
    assert item["plan_id"] == "com.example.premium.monthly" and item["environment"] == "sandbox"
    assert sub.subscriber.external_id == "41" and sub.last_verified_at is not None
    assert StatusChange.objects.get(subscription=sub).cause == "verification"
    assert Transaction.objects.filter(subscription=sub).count() == 1
    assert [r["path"] for r in fake_appstore.requests] == [f"/inApps/v1/subscriptions/{OTID}"]  # confirmed
    assert client.get("/api/subscriptions/check/41").json()["is_subscribed"] is True


def test_repeat_verification_is_idempotent(client, sell, service_auth):
    sell(bought_by=42)  # the store names the caller (a bare transaction id needs that)
    key = service_auth("verify")
    for _ in range(2):
        response = verify(client, {"provider": "apple", "user_id": "42", "transaction_id": OTID}, **key)
        assert response.status_code == 200, response.json()
    assert Subscription.objects.count() == 1 and Transaction.objects.count() == 1
    assert StatusChange.objects.count() == 1


def test_end_user_verifies_for_themselves(client, sell, fake_appstore):
    sell(bought_by=43)  # the store names the caller (a bare transaction id needs that)
    response = verify(client, {"provider": "apple", "transaction_id": OTID}, **bearer("43"))
    assert response.status_code == 200, response.json()
    assert response.json()["user_id"] == "43"
    asked = len(fake_appstore.requests)
    mismatch = verify(client, {"provider": "apple", "user_id": "44", "transaction_id": OTID}, **bearer("43"))
    assert mismatch.status_code == 403 and mismatch.json()["error"]["code"] == "user_mismatch"
    assert len(fake_appstore.requests) == asked  # refused before the store is asked


def test_purchase_of_another_user_is_409_and_nothing_applied(client, sell, service_auth):
    sell()  # the store says ACTIVE; we hold it, expired, for user 45
    owner = SubscriberFactory(external_id="45")
    sub = SubscriptionFactory(subscriber=owner, provider="apple", provider_subscription_id=OTID,
                              status=Status.EXPIRED, environment="sandbox")
    response = verify(client, {"provider": "apple", "user_id": "46", "transaction_id": OTID},
                      **service_auth("verify"))
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "purchase_owned_by_another_user" and OTID in error["message"]
    # What the caller sent and that it is not theirs; never our id of the other user's subscription.
    assert error["details"] == {"provider": "apple", "provider_subscription_id": OTID, "claimed_by_store": False}
    sub.refresh_from_db()
    assert sub.status == Status.EXPIRED and sub.subscriber == owner
    assert not Transaction.objects.exists() and not StatusChange.objects.exists()


def test_an_orphan_the_store_says_another_user_made_stays_an_orphan(client, sell, service_auth):
    sell(bought_by=45)
    orphan = SubscriptionFactory(subscriber=None, provider="apple", provider_subscription_id=OTID,
                                 environment="sandbox")
    response = verify(client, {"provider": "apple", "user_id": "46", "transaction_id": OTID},
                      **service_auth("verify"))
    assert response.status_code == 409, response.json()
    error = response.json()["error"]
    assert error["code"] == "purchase_owned_by_another_user"
    assert error["details"] == {"provider": "apple", "provider_subscription_id": OTID, "claimed_by_store": True}
    orphan.refresh_from_db()
    assert orphan.subscriber is None
    assert not Transaction.objects.exists() and not StatusChange.objects.exists()


def test_an_orphan_purchase_is_linked_to_the_verifying_user(client, sell, service_auth):
    sell(bought_by=47)  # the store names the caller (a bare transaction id needs that)
    orphan = SubscriptionFactory(subscriber=None, provider="apple", provider_subscription_id=OTID,
                                 environment="sandbox")
    response = verify(client, {"provider": "apple", "user_id": "47", "transaction_id": OTID},
                      **service_auth("verify"))
    assert response.status_code == 200, response.json()
    assert response.json()["id"] == str(orphan.pk)
    orphan.refresh_from_db()
    assert orphan.subscriber.external_id == "47"


def test_store_not_configured_is_503_naming_the_settings(client, apple_settings, sell, fake_appstore, service_auth):
    sell()
    apple_settings.APPLE_KEY_ID = ""
    apple_settings.APPLE_ISSUER_ID = ""
    response = verify(client, {"provider": "apple", "user_id": "48", "transaction_id": OTID},
                      **service_auth("verify"))
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "provider_not_configured"
    assert "APPLE_KEY_ID" in error["message"] and "APPLE_KEY_ID" in error["details"]["missing_settings"]
    assert fake_appstore.requests == [] and not Subscription.objects.exists()


@pytest.mark.parametrize("body", [
    {"provider": "stripe", "user_id": "1"},  # not verified through this API
    {"provider": "xsolla", "user_id": "1"},
    {"user_id": "1"},
    {"provider": "apple"},  # a service must say which user
])
def test_bad_requests_are_400(client, sell, fake_appstore, body, service_auth):
    sell()
    response = verify(client, body | {"transaction_id": OTID}, **service_auth("verify"))
    assert response.status_code == 400 and response.json()["error"]["message"]
    assert fake_appstore.requests == [] and not Subscription.objects.exists()


def test_verify_scope_is_required(client, sell, fake_appstore, service_auth):
    sell()
    response = verify(client, {"provider": "apple", "user_id": "1", "transaction_id": OTID},
                      **service_auth("check", "read"))
    assert response.status_code == 403
    assert fake_appstore.requests == [] and not Subscription.objects.exists()
