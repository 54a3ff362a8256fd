"""The REST API for Google Play purchases: POST /api/subscriptions/verify (and billing.verification
behind it: applied, linked, acknowledged; a purchase Google says another user made is refused) and
POST /api/subscriptions/<id>/cancel (stop renewal at Google, access until expiry)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import Subscriber
from billing.models import Subscription
from billing.providers.base import InvalidPurchase, StoreUnavailable
from billing.store_actions import subscription_cancel
from billing.verification import PurchaseOwnedByAnotherUser, purchase_verify
from tests.factories import SubscriberFactory, SubscriptionFactory

from .conftest import PACKAGE, load_sequence, push, token_of

pytestmark = pytest.mark.django_db

STEP = load_sequence("06_purchase_grace_hold_recover.json", user_id="42")[0]
TOKEN = token_of(STEP)
VERIFY = "/api/subscriptions/verify"


def _fresh_purchase(account_id: str) -> dict:
    purchase = load_sequence("06_purchase_grace_hold_recover.json", user_id=account_id)[0]["subscriptionPurchaseV2"]
    purchase["startTime"] = timezone.now().isoformat()  # a purchase made just now, for a month
    purchase["lineItems"][0]["expiryTime"] = (timezone.now() + timedelta(days=30)).isoformat()
    return purchase


# --- verify over HTTP ----------------------------------------------------------------------------

def test_verify_endpoint(client, google, service_auth):
    google.set_purchase("tok-700", _fresh_purchase("700"))
    key = service_auth("verify")
    body = {"provider": "google", "user_id": "700", "purchase_token": "tok-700", "product_id": "session_pro"}
    response = client.post(VERIFY, body, content_type="application/json", **key)
    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "ACTIVE" and response.json()["user_id"] == "700"
    assert Subscription.objects.get(provider_subscription_id="tok-700").acknowledged_at is not None
    other = client.post(VERIFY, body | {"user_id": "701"}, content_type="application/json", **key)
    assert other.status_code == 409
    google.fail_next("get", 410)
    gone = client.post(VERIFY, body, content_type="application/json", **key)
    assert gone.status_code == 400
    google.fail_next("get", 503)
    down = client.post(VERIFY, body, content_type="application/json", **key)
    assert down.status_code == 502


def test_verify_of_a_purchase_google_says_another_user_made_is_409(client, google, service_auth):
    """A restore on a device shared by two accounts: user 701 sends user 800's purchase."""
    google.set_purchase("tok-of-800", _fresh_purchase("800"))
    body = {"provider": "google", "user_id": "701", "purchase_token": "tok-of-800", "product_id": "session_pro"}
    response = client.post(VERIFY, body, content_type="application/json", **service_auth("verify"))
    assert response.status_code == 409, response.content
    error = response.json()["error"]
    assert error["code"] == "purchase_owned_by_another_user" and "tok-of-800" in error["message"]
    assert "800" not in error["message"].replace("tok-of-800", "")  # the other user's id is not disclosed
    assert not Subscription.objects.exists()
    assert not Subscriber.objects.exists()  # neither 701 nor 800's identity: all rolled back
    assert google.calls_of("acknowledge") == []  # the buyer's own app (or the RTDN) settles it


def test_verify_of_a_purchase_whose_account_id_another_subscriber_holds_is_409(client, google, service_auth):
    owner = SubscriberFactory(external_id="900", google_obfuscated_account_id="a1b2c3-hashed")
    google.set_purchase("tok-hashed", _fresh_purchase("a1b2c3-hashed"))
    key = service_auth("verify")
    body = {"provider": "google", "user_id": "901", "purchase_token": "tok-hashed", "product_id": "session_pro"}
    refused = client.post(VERIFY, body, content_type="application/json", **key)
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "purchase_owned_by_another_user"
    assert not Subscription.objects.exists()
    accepted = client.post(VERIFY, body | {"user_id": "900"}, content_type="application/json", **key)
    assert accepted.status_code == 200, accepted.content
    assert Subscription.objects.get(provider_subscription_id="tok-hashed").subscriber == owner


# --- verify behind the endpoint ------------------------------------------------------------------

def test_verify_applies_links_and_acknowledges(google):
    google.set_purchase(TOKEN, STEP["subscriptionPurchaseV2"])
    (result,) = purchase_verify(provider="google", user_id="42",
                                purchase={"provider": "google", "purchase_token": TOKEN, "product_id": "session_pro"})
    sub = Subscription.objects.get(pk=result.subscription_id)
    assert sub.status == "ACTIVE" and sub.subscriber.external_id == "42"
    assert sub.subscriber.google_obfuscated_account_id == "42"
    assert sub.acknowledged_at is not None and len(google.calls_of("acknowledge")) == 1
    with pytest.raises(PurchaseOwnedByAnotherUser) as caught:
        purchase_verify(provider="google", user_id="502", purchase={"purchase_token": TOKEN})
    assert caught.value.subscription == sub and not caught.value.claimed_by_store


def test_verify_links_a_purchase_without_account_id_to_the_caller(google):
    purchase = {k: v for k, v in STEP["subscriptionPurchaseV2"].items() if k != "externalAccountIdentifiers"}
    google.set_purchase(TOKEN, purchase)
    (result,) = purchase_verify(provider="google", user_id="501", purchase={"purchase_token": TOKEN})
    sub = Subscription.objects.get(pk=result.subscription_id)
    assert sub.subscriber.external_id == "501" and sub.acknowledged_at is not None


def test_verify_refuses_a_purchase_google_says_another_user_made(google):
    google.set_purchase(TOKEN, STEP["subscriptionPurchaseV2"])  # obfuscatedExternalAccountId "42"
    with pytest.raises(PurchaseOwnedByAnotherUser) as caught:
        purchase_verify(provider="google", user_id="501", purchase={"purchase_token": TOKEN})
    assert caught.value.claimed_by_store and caught.value.subscription.pk is None
    assert TOKEN in str(caught.value) and "another user" in str(caught.value)
    assert not Subscription.objects.exists() and not Subscriber.objects.exists()  # nothing of 42 copied to 501
    assert google.calls_of("acknowledge") == []


def test_verify_refuses_an_orphan_google_says_another_user_made(google):
    """The RTDN came first and left an orphan (e.g. policy or timing): the hint still counts."""
    SubscriptionFactory(provider="google", provider_subscription_id=TOKEN, subscriber=None)
    google.set_purchase(TOKEN, STEP["subscriptionPurchaseV2"])
    with pytest.raises(PurchaseOwnedByAnotherUser) as caught:
        purchase_verify(provider="google", user_id="501", purchase={"purchase_token": TOKEN})
    assert caught.value.subscription.provider_subscription_id == TOKEN and caught.value.subscription.pk
    assert Subscription.objects.get(provider_subscription_id=TOKEN).subscriber is None


@pytest.mark.parametrize(("body", "fail", "error"), [
    ({"purchase_token": TOKEN, "product_id": "session_pro"}, 410, InvalidPurchase),
    ({"purchase_token": TOKEN, "product_id": "other_product"}, None, InvalidPurchase),
    ({"product_id": "session_pro"}, None, InvalidPurchase),
    ({"purchase_token": TOKEN, "product_id": "session_pro"}, 503, StoreUnavailable),
])
def test_verify_errors(adapter, google, body, fail, error):
    google.set_purchase(TOKEN, STEP["subscriptionPurchaseV2"])
    if fail:
        google.fail_next("get", fail)
    with pytest.raises(error):
        adapter.verify(body, user_id="42")


# --- cancel --------------------------------------------------------------------------------------

def test_cancel_endpoint_stops_renewal_at_google(client, google, service_auth):
    purchase = load_sequence("06_purchase_grace_hold_recover.json", user_id="42")[0]["subscriptionPurchaseV2"]
    purchase["lineItems"][0]["expiryTime"] = (timezone.now() + timedelta(days=20)).isoformat()
    google.set_purchase(TOKEN, purchase)
    sub = push(google, STEP["developerNotification"]).subscription
    assert sub.status == "ACTIVE" and sub.auto_renew is True

    response = client.post(f"/api/subscriptions/{sub.pk}/cancel", content_type="application/json",
                           **service_auth("manage"))
    assert response.status_code == 200, response.content
    item = response.json()
    assert (item["id"], item["provider"], item["status"]) == (str(sub.pk), "google", "CANCELED")
    assert item["user_id"] == "42"
    (call,) = google.calls_of("cancel")
    assert call["token"] == TOKEN and call["package"] == PACKAGE
    assert call["body"] == {"cancellationContext": {"cancellationType": "USER_REQUESTED_STOP_RENEWALS"}}
    sub.refresh_from_db()
    assert sub.auto_renew is False and sub.is_entitled(timezone.now())  # access until expiry
    assert client.get("/api/subscriptions/check/42").json()["is_subscribed"] is True


def test_cancel_stops_renewal_at_google_and_keeps_access(google):
    google.set_purchase(TOKEN, STEP["subscriptionPurchaseV2"])
    sub = push(google, STEP["developerNotification"]).subscription
    subscription_cancel(subscription=sub, actor="user 42")
    (call,) = google.calls_of("cancel")
    assert call["body"] == {"cancellationContext": {"cancellationType": "USER_REQUESTED_STOP_RENEWALS"}}
    sub.refresh_from_db()
    assert sub.status == "CANCELED" and sub.auto_renew is False and sub.expires_at is not None
