"""The Play Developer API client (client.py) through the real google-auth and google-api-python-client
against the fake: errors translated to ours (transient: retried; a token Google does not know: the
event fails with the reason), timeouts, the token endpoint, and the shared per-minute quota."""

import pytest

from billing.models import Subscription
from billing.providers.base import StoreUnavailable
from billing.providers.common import SubscriptionNotFound
from billing.providers.google import client
from billing.sweeps import subscription_resync

from .conftest import load_sequence, push, retry, subscription_notification, token_of

pytestmark = pytest.mark.django_db

STEP = load_sequence("06_purchase_grace_hold_recover.json", user_id="42")[0]
TOKEN = token_of(STEP)


@pytest.mark.parametrize("status", [500, 503, 429])
def test_api_failure_is_retried_then_processed(google, status):
    google.set_purchase(TOKEN, STEP["subscriptionPurchaseV2"])
    google.fail_next("get", status)
    delivered = push(google, STEP["developerNotification"])
    assert delivered.response.status_code == 200  # stored: the failure is ours to retry, not Pub/Sub's
    event = delivered.event
    assert event.status == "received" and f"Google answered {status}" in event.error
    assert event.next_attempt_at is not None
    assert not Subscription.objects.filter(provider_subscription_id=TOKEN).exists()
    assert retry(event).status == "processed"
    assert Subscription.objects.get(provider_subscription_id=TOKEN).status == "ACTIVE"


@pytest.mark.parametrize("status", [404, 410])
def test_unknown_token_is_subscription_not_found(google, status):
    google.set_purchase(TOKEN, STEP["subscriptionPurchaseV2"])
    google.fail_next("get", status)
    with pytest.raises(SubscriptionNotFound, match=str(status)) as caught:
        client.subscription_get(TOKEN)
    assert caught.value.status == status


@pytest.mark.parametrize("status", [404, 410])
def test_token_google_does_not_know_fails_the_event_with_the_reason(google, status):
    if status == 404:
        google.set_purchase(TOKEN, STEP["subscriptionPurchaseV2"])
        google.fail_next("get", 404)
    # else: the fake holds no such purchase and answers 410, as Google does for a token gone for good
    delivered = push(google, STEP["developerNotification"])
    assert delivered.response.status_code == 200  # Pub/Sub must not redeliver: a retry cannot fix it
    event = delivered.event
    assert event.status == "failed" and event.next_attempt_at is None
    assert "subscriptionsv2.get" in event.error and f"Google answered {status}" in event.error
    assert not Subscription.objects.exists()
    assert len(google.calls_of("get")) == 1


def test_slow_google_is_retried_not_failed(google, settings):
    settings.GOOGLE_PLAY_API_TIMEOUT_SECONDS = 1.0
    google.set_purchase(TOKEN, STEP["subscriptionPurchaseV2"])
    google.delay_next("get", 3.0)
    event = push(google, STEP["developerNotification"]).event
    assert event.status == "received" and event.next_attempt_at is not None, event.error
    assert "unreachable" in event.error and "timed out" in event.error
    assert not Subscription.objects.exists()
    assert retry(event).status == "processed"  # Google answers in time now
    assert Subscription.objects.get(provider_subscription_id=TOKEN).status == "ACTIVE"


def test_unreachable_api_and_token_endpoint_are_transient(google, settings):
    google.set_purchase(TOKEN, STEP["subscriptionPurchaseV2"])
    google.fail_next("token", 400)  # e.g. the key was revoked: an operator fixes it, then retries succeed
    event = push(google, STEP["developerNotification"]).event
    assert event.status == "received" and "StoreUnavailable" in event.error and "access token" in event.error
    assert retry(event).status == "processed"
    assert Subscription.objects.get(provider_subscription_id=TOKEN).status == "ACTIVE"
    settings.GOOGLE_PLAY_API_ENDPOINT = "http://127.0.0.1:9/"  # nothing listens
    with pytest.raises(StoreUnavailable):
        client.subscription_get(TOKEN)


def test_quota_is_shared_by_all_callers(adapter, google, settings):
    # A sliding 60 s window: the three calls below fall in one window whenever the test runs.
    settings.STORE_BUDGET_GOOGLE_PER_MINUTE = 2
    google.set_purchase("tok-q", STEP["subscriptionPurchaseV2"] | {"acknowledgementState":
                                                                    "ACKNOWLEDGEMENT_STATE_ACKNOWLEDGED"})
    push(google, subscription_notification("tok-q", 2))  # webhook: 1 call
    subscription_resync(subscription=Subscription.objects.get(provider_subscription_id="tok-q"))  # re-poll: 2
    with pytest.raises(StoreUnavailable, match="calls/minute"):  # verify: over budget, Google not called
        adapter.verify({"purchase_token": "tok-q", "product_id": "session_pro"}, user_id="42")
    assert len(google.calls) == 2


def test_quota_refusals_do_not_spend_the_budget(google, settings):
    settings.STORE_BUDGET_GOOGLE_PER_MINUTE = 1
    google.set_purchase(TOKEN, STEP["subscriptionPurchaseV2"])
    client.subscription_get(TOKEN)
    for _ in range(3):
        with pytest.raises(client.QuotaExceeded):
            client.subscription_get(TOKEN)
    settings.STORE_BUDGET_GOOGLE_PER_MINUTE = 2  # one more call fits: the refused ones were not counted
    client.subscription_get(TOKEN)
    assert len(google.calls_of("get")) == 2
