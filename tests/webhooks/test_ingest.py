"""Ingest (POST /webhooks/<provider>): what the store sees, and what is stored."""

import json

import pytest

from billing.models import StatusChange, Subscription
from billing.statuses import Status
from tests.helpers import stream_events
from webhooks import selectors
from webhooks.models import WebhookEvent

from .adapter import HookTestAdapter, event_body, sign
from .helpers import post

pytestmark = pytest.mark.django_db


@pytest.fixture
def send(client, django_capture_on_commit_callbacks):
    """POST a signed event; commit hooks run as after a real commit (the queue runs in-process in tests)."""
    def send(body, **kw):
        with django_capture_on_commit_callbacks(execute=True):
            return post(client, body, **kw)
    return send


def test_new_event_is_stored_processed_and_published(send):
    response = send(event_body("evt_1", subscription_id="sub_A", user_id="42", status="ACTIVE"))

    assert response.status_code == 200
    assert response.json() == {"status": "received"}
    event = WebhookEvent.objects.get()
    assert (event.provider, event.dedupe_key, event.event_type) == ("hooktest", "evt_1", "status")
    assert event.status == WebhookEvent.Status.PROCESSED
    assert event.attempts == 1 and event.processed_at is not None
    assert "manual:sub_A created: ACTIVE" in event.outcome
    assert bytes(event.body) == event_body("evt_1", subscription_id="sub_A", user_id="42", status="ACTIVE")
    assert event.headers["X-Hooktest-Signature"]
    assert "sub_A" in event.store_ids_text and "evt_1" in event.store_ids_text
    sub = Subscription.objects.get()
    assert sub.status == Status.ACTIVE and sub.subscriber.external_id == "42"
    assert list(event.subscriptions.all()) == [sub]
    assert StatusChange.objects.get().cause_ref == str(event.pk)
    [published] = stream_events()
    assert (published["userId"], published["newStatus"], published["subscriptionId"]) == ("42", "ACTIVE", "sub_A")


def test_repeat_delivery_gets_the_same_answer_and_does_nothing(send, client):
    body = event_body("evt_dup", status="ACTIVE")
    first = send(body)
    second = send(body)
    third = client.post("/webhooks/hooktest/", data=body, content_type="application/json",
                        HTTP_X_HOOKTEST_SIGNATURE=sign(body))  # the trailing slash is accepted too

    assert [r.status_code for r in (first, second, third)] == [200, 200, 200]
    assert second.json() == {"status": "duplicate"} and third.json() == {"status": "duplicate"}
    assert WebhookEvent.objects.count() == 1
    assert WebhookEvent.objects.get().attempts == 1
    assert StatusChange.objects.count() == 1
    assert len(stream_events()) == 1


def test_authentic_event_of_a_type_we_do_not_act_on_is_ignored_with_the_reason(send):
    response = send(event_body("evt_test", type="test"))

    assert response.status_code == 200
    event = WebhookEvent.objects.get()
    assert event.status == WebhookEvent.Status.IGNORED
    assert event.outcome == "ignored: test notification"
    assert not Subscription.objects.exists()


def test_synchronous_answer_is_returned_and_kept_for_the_audit(send):
    response = send(event_body("evt_ping", type="ping"))

    assert response.status_code == 204
    event = WebhookEvent.objects.get()
    assert event.status == WebhookEvent.Status.IGNORED
    assert event.outcome == "answered synchronously (HTTP 204)"
    assert not Subscription.objects.exists()


@pytest.mark.parametrize(("signature", "body", "status", "code"), [
    ("", event_body("evt_x"), 401, "unsigned"),
    ("0" * 64, event_body("evt_x"), 400, "bad_signature"),
    (None, b"{not json", 400, "malformed"),
    (None, json.dumps({"id": "evt_x"}).encode(), 400, "malformed"),
])
def test_unauthenticated_or_malformed_is_rejected_clearly_and_nothing_is_stored(
        send, signature, body, status, code):
    response = send(body, signature=signature)

    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["message"]
    assert not WebhookEvent.objects.exists()
    assert not Subscription.objects.exists()
    counts = {row["provider"]: row for row in selectors.event_counts_last_day()}
    assert counts["hooktest"]["rejected"] == 1


def test_oversized_body_is_refused_with_413(send, settings):
    settings.WEBHOOK_MAX_BODY_BYTES = 200
    body = event_body("evt_big", padding="x" * 300)

    response = send(body)

    assert response.status_code == 413
    assert "200 bytes" in response.json()["error"]["message"]
    assert not WebhookEvent.objects.exists()
    # the endpoint still works for a normal event
    assert send(event_body("evt_small")).status_code == 200


def test_unknown_provider_is_404_with_the_known_ones(client):
    response = client.post("/webhooks/paypal", data=b"{}", content_type="application/json")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_provider"
    assert "paypal" in response.json()["error"]["message"] and "hooktest" in response.json()["error"]["message"]
    # the staff-only provider has no webhooks
    assert client.post("/webhooks/manual", data=b"{}", content_type="application/json").status_code == 404


class Unconfigured(HookTestAdapter):
    name = "hookoff"
    required_settings = ("HOOKOFF_WEBHOOK_SECRET",)


def test_provider_not_configured_is_503_naming_the_settings(send, settings):
    settings.BILLING_PROVIDERS = {**settings.BILLING_PROVIDERS,
                                  "hookoff": "tests.webhooks.test_ingest.Unconfigured"}
    response = send(event_body("evt_off"), provider="hookoff")

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "not_configured"
    assert "HOOKOFF_WEBHOOK_SECRET" in response.json()["error"]["message"]
    assert not WebhookEvent.objects.exists()


def test_get_is_405(client):
    response = client.get("/webhooks/hooktest")
    assert response.status_code == 405
    assert response["Allow"] == "POST"
