"""POST /webhooks/xsolla end to end: Xsolla's answers (204 with no body, 400 in its error shape, 500
so that it retries), the repeat of a delivery, user validation, and a subscription's whole life."""

import json
import socket
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from accounts.models import Subscriber
from billing.models import StatusChange, Subscription, Transaction
from billing.statuses import Status
from tests.factories import SubscriberFactory
from webhooks.models import WebhookEvent

from .conftest import body_of, fixture_bytes, fixture_json, signed_headers

pytestmark = pytest.mark.django_db


def future(days: int) -> str:
    return (timezone.now() + timedelta(days=days)).replace(microsecond=0).isoformat()


@pytest.fixture
def send(client, django_capture_on_commit_callbacks, xsolla):
    """POST a body signed as Xsolla signs it; commit hooks run (Celery is eager in tests)."""
    def send(body: bytes, *, authorization: str | None = None):
        headers = signed_headers(body)
        auth = headers["Authorization"] if authorization is None else authorization
        with django_capture_on_commit_callbacks(execute=True):
            return client.post("/webhooks/xsolla", data=body, content_type="application/json",
                               HTTP_AUTHORIZATION=auth)
    return send


def assert_xsolla_error(response, status: int, code: str):
    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    error = json.loads(response.content)["error"]
    assert error["code"] == code and error["message"]


def test_a_notification_is_answered_204_with_no_body_and_processed(send):
    data = fixture_json("docs/create_subscription")
    data["subscription"]["date_next_charge"] = future(30)
    response = send(body_of(data))

    assert response.status_code == 204 and response.content == b""
    event = WebhookEvent.objects.get()
    assert event.status == WebhookEvent.Status.PROCESSED and event.event_type == "create_subscription"
    assert event.dedupe_key.startswith("create_subscription:10:")
    assert "10" in event.store_ids and "1234567" in event.store_ids
    assert "Authorization" not in event.headers  # the signature is not kept
    sub = Subscription.objects.get()
    assert sub.status == Status.TRIAL and sub.is_entitled(timezone.now())
    assert sub.subscriber.external_id == "1234567"


def test_a_repeated_delivery_gets_the_same_answer_and_has_no_second_effect(send):
    body = fixture_bytes("sdk/payment")
    answers = [send(body) for _ in range(3)]

    assert [(r.status_code, r.content) for r in answers] == [(204, b"")] * 3
    assert WebhookEvent.objects.count() == 1
    assert Transaction.objects.count() == 1

    renewal = fixture_bytes("docs/update_subscription")
    assert [send(renewal).status_code for _ in range(2)] == [204, 204]
    assert StatusChange.objects.filter(subscription__provider_subscription_id="10").count() == 1


def test_bad_signature_is_400_invalid_signature_and_nothing_is_stored(send):
    body = fixture_bytes("sdk/payment")
    assert_xsolla_error(send(body, authorization="Signature " + "0" * 40), 400, "INVALID_SIGNATURE")
    assert_xsolla_error(send(body, authorization=""), 400, "INVALID_SIGNATURE")
    assert not WebhookEvent.objects.exists() and not Transaction.objects.exists()


@pytest.mark.parametrize("body", [b"{not json", b'{"user": {"id": "1"}}',
                                  b'{"notification_type": "payment", "transaction": {}}'])
def test_malformed_body_is_400_invalid_parameter(send, body):
    assert_xsolla_error(send(body), 400, "INVALID_PARAMETER")
    assert not WebhookEvent.objects.exists()


def test_user_validation_of_a_known_user_is_204(send):
    SubscriberFactory(external_id="1234567")
    response = send(fixture_bytes("docs/user_validation"))
    assert response.status_code == 204 and response.content == b""
    event = WebhookEvent.objects.get()  # kept for the audit, not processed
    assert event.status == WebhookEvent.Status.IGNORED and "204" in event.outcome


def test_user_validation_finds_the_user_by_their_xsolla_identity(send):
    SubscriberFactory(external_id="42", xsolla_user_id="1234567")
    assert send(fixture_bytes("docs/user_validation")).status_code == 204


def test_user_validation_of_an_unknown_user_is_400_invalid_user_and_creates_nobody(send):
    response = send(fixture_bytes("docs/user_validation"))
    assert_xsolla_error(response, 400, "INVALID_USER")
    assert not Subscriber.objects.exists() and not Subscription.objects.exists()
    # asked again later, once the user exists, the answer follows the user
    SubscriberFactory(external_id="1234567")
    assert send(fixture_bytes("docs/user_validation")).status_code == 204


def test_webhooks_off_is_a_500_so_xsolla_keeps_retrying(send, settings):
    settings.XSOLLA_WEBHOOK_SECRET = ""
    body = fixture_bytes("sdk/payment")
    assert_xsolla_error(send(body, authorization="Signature " + "0" * 40), 500, "NOT_CONFIGURED")


def test_an_oversized_body_is_400_invalid_parameter_so_xsolla_does_not_retry(client, xsolla, settings):
    settings.WEBHOOK_MAX_BODY_BYTES = 1024
    data = fixture_json("sdk/payment")
    data["custom_parameters"]["padding"] = "x" * 2000
    body = body_of(data)
    response = client.post("/webhooks/xsolla", data=body, content_type="application/json",
                           HTTP_AUTHORIZATION=signed_headers(body)["Authorization"])
    assert_xsolla_error(response, 400, "INVALID_PARAMETER")
    assert "1024 bytes" in json.loads(response.content)["error"]["message"]
    assert not WebhookEvent.objects.exists() and not Transaction.objects.exists()


def test_a_content_length_that_is_not_a_number_is_400_invalid_parameter(client, xsolla):
    body = fixture_bytes("sdk/payment")
    response = client.post("/webhooks/xsolla", data=body, content_type="application/json",
                           HTTP_AUTHORIZATION=signed_headers(body)["Authorization"], CONTENT_LENGTH="12x")
    assert_xsolla_error(response, 400, "INVALID_PARAMETER")
    assert not WebhookEvent.objects.exists()


@pytest.mark.parametrize("method", ["get", "put"])
def test_a_method_other_than_post_is_400_invalid_parameter(client, xsolla, method):
    response = getattr(client, method)("/webhooks/xsolla")
    assert_xsolla_error(response, 400, "INVALID_PARAMETER")
    assert response["Allow"] == "POST"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("name", ["sdk/payment", "docs/user_validation"])
def test_database_down_is_500_so_xsolla_retries(client, xsolla, name):
    SubscriberFactory(external_id="1234567")  # the user both notifications name
    body = fixture_bytes(name)
    connection.close()
    port = connection.settings_dict["PORT"]
    connection.settings_dict["PORT"] = _closed_port()
    try:
        response = client.post("/webhooks/xsolla", data=body, content_type="application/json",
                               HTTP_AUTHORIZATION=signed_headers(body)["Authorization"])
    finally:
        connection.close()
        connection.settings_dict["PORT"] = port
    assert_xsolla_error(response, 500, "UNAVAILABLE")
    # the retry, once the database is back, is processed
    response = client.post("/webhooks/xsolla", data=body, content_type="application/json",
                           HTTP_AUTHORIZATION=signed_headers(body)["Authorization"])
    assert (response.status_code, response.content) == (204, b"")
    assert WebhookEvent.objects.count() == 1


def test_a_subscription_lifecycle_through_the_endpoint(send, redis_client):
    first_charge, second_charge = future(30), future(60)

    create = fixture_json("docs/create_subscription")
    create["subscription"].update(date_next_charge=first_charge, is_gift=False)
    del create["subscription"]["trial"]
    renewal = fixture_json("docs/update_subscription")
    renewal["subscription"]["date_next_charge"] = second_charge
    non_renewal = fixture_json("docs/non_renewal_subscription")
    non_renewal["subscription"].update(date_next_charge=second_charge, subscription_id=10)  # a number this time
    cancel = fixture_json("sdk/cancel_subscription")
    cancel["subscription"]["date_end"] = timezone.now().replace(microsecond=0).isoformat()

    for data in (create, fixture_json("sdk/payment"), renewal, non_renewal):
        assert send(body_of(data)).status_code == 204
    sub = Subscription.objects.get()
    assert sub.status == Status.CANCELED and sub.is_entitled(timezone.now())
    assert sub.expires_at.isoformat() == timezone.datetime.fromisoformat(second_charge).isoformat()

    assert send(body_of(cancel)).status_code == 204
    sub.refresh_from_db()
    assert sub.status == Status.EXPIRED and not sub.is_entitled(timezone.now())
    history = list(sub.status_changes.order_by("id").values_list("new_status", flat=True))
    assert history == ["ACTIVE", "CANCELED", "EXPIRED"]
    assert WebhookEvent.objects.filter(status=WebhookEvent.Status.PROCESSED).count() == 5
    published = [json.loads(f["event"])["newStatus"] for _, f in redis_client.xrange("billing:events")]
    assert published == ["ACTIVE", "CANCELED", "EXPIRED"]


def test_with_the_api_down_the_webhook_is_still_204_and_processing_retries(send, fake_xsolla):
    fake_xsolla.fail_next(503)
    response = send(fixture_bytes("docs/update_subscription"))
    assert response.status_code == 204  # the answer never waits for Xsolla's API
    event = WebhookEvent.objects.get()
    assert event.status == WebhookEvent.Status.RECEIVED and event.attempts == 1
    assert "StoreUnavailable" in event.error
    assert not Subscription.objects.exists()
