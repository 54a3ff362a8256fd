"""Through the real endpoints: POST /webhooks/google (store → authenticate → queue → process, Celery
eager) and POST /api/subscriptions/verify, with the Play API and Google's certs faked at the network edge."""

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.models import Subscriber
from billing.models import Subscription
from tests.api_support import api_key, with_key
from tests.factories import SubscriberFactory
from tests.fakes.google import SigningKey, pubsub_body
from webhooks.models import WebhookEvent
from webhooks.processing import event_process

from .helpers import (
    AUDIENCE,
    FIXTURES,
    PACKAGE,
    PUSH_EMAIL,
    load_sequence,
    subscription_notification,
    token_of,
)

pytestmark = pytest.mark.django_db


def post(client, body: bytes, *, token: str | None, query: str = ""):
    extra = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    return client.post(f"/webhooks/google{query}", body, content_type="application/json", **extra)


def valid(fake, **kw) -> str:
    return fake.push_token(**{"audience": AUDIENCE, "email": PUSH_EMAIL, **kw})


def test_captured_plan_change_lifecycle_through_the_webhook(client, google, django_capture_on_commit_callbacks):
    steps = load_sequence("07_plan_change_1m_to_3m_then_renew.json", user_id="42")
    for i, (step, expected) in enumerate(zip(steps, ["ACTIVE", "ACTIVE", "EXPIRED", "ACTIVE"], strict=True)):
        google.set_purchase(token_of(step), step["subscriptionPurchaseV2"])
        with django_capture_on_commit_callbacks(execute=True):
            response = post(client, pubsub_body(step["developerNotification"], message_id=f"m-{i}"),
                            token=valid(google))
        assert response.status_code == 200, response.content
        assert Subscription.objects.get(provider_subscription_id=token_of(step)).status == expected
        event = WebhookEvent.objects.get(provider="google", dedupe_key=f"m-{i}")
        assert event.status == "processed", event.error
        assert token_of(step) in event.store_ids and "authorization" not in {h.lower() for h in event.headers}
    old, new = (Subscription.objects.get(provider_subscription_id=token_of(s)) for s in steps[:2])
    assert old.replaced_by_id == new.pk and new.acknowledged_at is not None
    assert client.get("/api/subscriptions/check/42").status_code == 200


def test_duplicate_push_has_no_second_effect(client, google, django_capture_on_commit_callbacks):
    step = load_sequence("06_purchase_grace_hold_recover.json")[0]
    google.set_purchase(token_of(step), step["subscriptionPurchaseV2"])
    body = pubsub_body(step["developerNotification"], message_id="dup-1")
    for _ in range(2):
        with django_capture_on_commit_callbacks(execute=True):
            assert post(client, body, token=valid(google)).status_code == 200
    assert WebhookEvent.objects.filter(provider="google").count() == 1
    assert len(google.calls_of("get")) == 1


@pytest.mark.parametrize(("kind", "status"), [
    ("missing", 401), ("forged", 401), ("audience", 401), ("email", 403), ("expired", 401), ("shared", 403)])
def test_unauthenticated_pushes_are_refused_and_nothing_stored(client, google, settings, kind, status):
    token = {
        "missing": None,
        "forged": SigningKey(google.push_key.kid).token({"iss": "https://accounts.google.com", "aud": AUDIENCE,
                                                         "email": PUSH_EMAIL, "email_verified": True, "iat": 1,
                                                         "exp": 4102444800}) if kind == "forged" else None,
        "audience": valid(google, audience="https://other.example.com/push"),
        "email": valid(google, email="someone@else.iam.gserviceaccount.com"),
        "expired": valid(google, expires_in=-300),
        "shared": None,
    }[kind]
    query = ""
    if kind == "shared":
        settings.GOOGLE_PUBSUB_AUDIENCE = ""
        settings.GOOGLE_PUBSUB_VERIFICATION_TOKEN = "right-token"
        query = "?token=wrong-token"
    response = post(client, pubsub_body(subscription_notification("tok-1", 4)), token=token, query=query)
    assert response.status_code == status
    assert "error" in response.json()
    assert not WebhookEvent.objects.exists() and google.calls == []


@pytest.mark.parametrize("body", [
    pubsub_body({"version": "1.0", "packageName": PACKAGE, "eventTimeMillis": "1", "testNotification": {}}),
    pubsub_body({**subscription_notification("tok-1", 4), "packageName": "com.someone.else"}),
    (FIXTURES / "pubsub_envelope_rtdn_reference_doc.json").read_bytes(),
])
def test_ignorable_pushes_get_a_2xx_and_are_recorded(client, google, django_capture_on_commit_callbacks, body):
    with django_capture_on_commit_callbacks(execute=True):
        assert post(client, body, token=valid(google)).status_code == 200
    event = WebhookEvent.objects.get(provider="google")
    assert event.status == "ignored" and event.outcome.startswith("ignored:")
    assert google.calls == []


def test_api_outage_is_retried_then_processed(client, google, django_capture_on_commit_callbacks):
    step = load_sequence("06_purchase_grace_hold_recover.json")[0]
    google.set_purchase(token_of(step), step["subscriptionPurchaseV2"])
    google.fail_next("get", 503)
    with django_capture_on_commit_callbacks(execute=True):
        assert post(client, pubsub_body(step["developerNotification"]), token=valid(google)).status_code == 200
    event = WebhookEvent.objects.get(provider="google")
    assert event.status == "received" and "503" in event.error and event.next_attempt_at is not None
    WebhookEvent.objects.filter(pk=event.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    with django_capture_on_commit_callbacks(execute=True):
        assert event_process(event.pk) == "processed"
    assert Subscription.objects.get(provider_subscription_id=token_of(step)).status == "ACTIVE"


@pytest.mark.parametrize("status", [404, 410])
def test_token_google_does_not_know_fails_the_event_with_the_reason(client, google, status,
                                                                    django_capture_on_commit_callbacks):
    step = load_sequence("06_purchase_grace_hold_recover.json")[0]
    if status == 404:
        google.set_purchase(token_of(step), step["subscriptionPurchaseV2"])
        google.fail_next("get", 404)
    # else: the fake holds no such purchase and answers 410, as Google does for a token gone for good
    with django_capture_on_commit_callbacks(execute=True):
        response = post(client, pubsub_body(step["developerNotification"]), token=valid(google))
    assert response.status_code == 200  # Pub/Sub must not redeliver: a retry cannot fix it
    event = WebhookEvent.objects.get(provider="google")
    assert event.status == "failed" and event.next_attempt_at is None
    assert "subscriptionsv2.get" in event.error and f"Google answered {status}" in event.error
    assert not Subscription.objects.exists()
    assert len(google.calls_of("get")) == 1


def test_slow_google_is_retried_not_failed(client, google, settings, django_capture_on_commit_callbacks):
    settings.GOOGLE_PLAY_API_TIMEOUT_SECONDS = 1.0
    step = load_sequence("06_purchase_grace_hold_recover.json")[0]
    google.set_purchase(token_of(step), step["subscriptionPurchaseV2"])
    google.delay_next("get", 3.0)
    with django_capture_on_commit_callbacks(execute=True):
        assert post(client, pubsub_body(step["developerNotification"]), token=valid(google)).status_code == 200
    event = WebhookEvent.objects.get(provider="google")
    assert event.status == "received" and event.next_attempt_at is not None, event.error
    assert "unreachable" in event.error and "timed out" in event.error
    assert not Subscription.objects.exists()
    WebhookEvent.objects.filter(pk=event.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    with django_capture_on_commit_callbacks(execute=True):
        assert event_process(event.pk) == "processed"  # Google answers in time now
    assert Subscription.objects.get(provider_subscription_id=token_of(step)).status == "ACTIVE"


def test_cancel_endpoint_stops_renewal_at_google(client, google, django_capture_on_commit_callbacks):
    step = load_sequence("06_purchase_grace_hold_recover.json", user_id="42")[0]
    token = token_of(step)
    purchase = step["subscriptionPurchaseV2"]
    purchase["lineItems"][0]["expiryTime"] = (timezone.now() + timedelta(days=20)).isoformat()
    google.set_purchase(token, purchase)
    with django_capture_on_commit_callbacks(execute=True):
        post(client, pubsub_body(step["developerNotification"]), token=valid(google))
    sub = Subscription.objects.get(provider_subscription_id=token)
    assert sub.status == "ACTIVE" and sub.auto_renew is True

    response = client.post(f"/api/subscriptions/{sub.pk}/cancel", content_type="application/json",
                           **with_key(api_key("manage")))
    assert response.status_code == 200, response.content
    item = response.json()
    assert (item["id"], item["provider"], item["status"]) == (str(sub.pk), "google", "CANCELED")
    assert item["user_id"] == "42"
    (call,) = google.calls_of("cancel")
    assert call["token"] == token and call["package"] == PACKAGE
    assert call["body"] == {"cancellationContext": {"cancellationType": "USER_REQUESTED_STOP_RENEWALS"}}
    sub.refresh_from_db()
    assert sub.auto_renew is False and sub.is_entitled(timezone.now())  # access until expiry
    assert client.get("/api/subscriptions/check/42").json()["is_subscribed"] is True


def test_verify_endpoint(client, google):
    step = load_sequence("06_purchase_grace_hold_recover.json", user_id="700")[0]
    token = token_of(step)
    purchase = step["subscriptionPurchaseV2"]
    purchase["startTime"] = timezone.now().isoformat()  # a purchase made just now, for a month
    purchase["lineItems"][0]["expiryTime"] = (timezone.now() + timedelta(days=30)).isoformat()
    google.set_purchase(token, purchase)
    key = with_key(api_key("verify"))
    body = {"provider": "google", "user_id": "700", "purchase_token": token, "product_id": "session_pro"}
    response = client.post("/api/subscriptions/verify", body, content_type="application/json", **key)
    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "ACTIVE" and response.json()["user_id"] == "700"
    assert Subscription.objects.get(provider_subscription_id=token).acknowledged_at is not None
    other = client.post("/api/subscriptions/verify", body | {"user_id": "701"}, content_type="application/json",
                        **key)
    assert other.status_code == 409
    google.fail_next("get", 410)
    gone = client.post("/api/subscriptions/verify", body, content_type="application/json", **key)
    assert gone.status_code == 400
    google.fail_next("get", 503)
    down = client.post("/api/subscriptions/verify", body, content_type="application/json", **key)
    assert down.status_code == 502


def _fresh_purchase(account_id: str) -> dict:
    purchase = load_sequence("06_purchase_grace_hold_recover.json", user_id=account_id)[0]["subscriptionPurchaseV2"]
    purchase["startTime"] = timezone.now().isoformat()
    purchase["lineItems"][0]["expiryTime"] = (timezone.now() + timedelta(days=30)).isoformat()
    return purchase


def test_verify_of_a_purchase_google_says_another_user_made_is_409(client, google):
    """A restore on a device shared by two accounts: user 701 sends user 800's purchase."""
    google.set_purchase("tok-of-800", _fresh_purchase("800"))
    body = {"provider": "google", "user_id": "701", "purchase_token": "tok-of-800", "product_id": "session_pro"}
    response = client.post("/api/subscriptions/verify", body, content_type="application/json",
                           **with_key(api_key("verify")))
    assert response.status_code == 409, response.content
    error = response.json()["error"]
    assert error["code"] == "purchase_owned_by_another_user" and "tok-of-800" in error["message"]
    assert "800" not in error["message"].replace("tok-of-800", "")  # the other user's id is not disclosed
    assert not Subscription.objects.exists()
    assert not Subscriber.objects.exists()  # neither 701 nor 800's identity: all rolled back
    assert google.calls_of("acknowledge") == []  # the buyer's own app (or the RTDN) settles it


def test_verify_of_a_purchase_whose_account_id_another_subscriber_holds_is_409(client, google):
    owner = SubscriberFactory(external_id="900", google_obfuscated_account_id="a1b2c3-hashed")
    google.set_purchase("tok-hashed", _fresh_purchase("a1b2c3-hashed"))
    key = with_key(api_key("verify"))
    body = {"provider": "google", "user_id": "901", "purchase_token": "tok-hashed", "product_id": "session_pro"}
    refused = client.post("/api/subscriptions/verify", body, content_type="application/json", **key)
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "purchase_owned_by_another_user"
    assert not Subscription.objects.exists()
    accepted = client.post("/api/subscriptions/verify", body | {"user_id": "900"}, content_type="application/json",
                           **key)
    assert accepted.status_code == 200, accepted.content
    assert Subscription.objects.get(provider_subscription_id="tok-hashed").subscriber == owner
