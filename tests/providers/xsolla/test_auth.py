"""Webhook authentication (auth.py): Xsolla's `Signature sha1(raw body + secret)` header, the body's
shape, the dedupe key; and POST /webhooks/xsolla answering in Xsolla's dialect (204 with no body, 400 in
its error shape, 5xx so that it retries), user validation included."""

import hashlib
import hmac
import json
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from accounts.models import Subscriber
from billing.models import StatusChange, Subscription, Transaction
from billing.providers.base import Rejected, Undecodable
from billing.providers.xsolla.auth import XsollaDialect, webhook_authenticate
from billing.statuses import Status
from tests.factories import SubscriberFactory
from tests.helpers import closed_port, deliver
from webhooks.models import WebhookEvent

from .conftest import (
    DOC_FILES,
    SDK_FILES,
    WEBHOOK_SECRET,
    body_of,
    fixture_bytes,
    fixture_json,
    send,
    signed_headers,
)


def authenticate(body: bytes, headers: dict | None = None):
    return webhook_authenticate(signed_headers(body) if headers is None else headers, body, {})


def assert_xsolla_error(response, status: int, code: str):
    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    error = json.loads(response.content)["error"]
    assert error["code"] == code and error["message"]


# --- The signature and the body -----------------------------------------------------------------

@pytest.mark.parametrize("name", [f"docs/{n}" for n in DOC_FILES] + [f"sdk/{n}" for n in SDK_FILES])
def test_every_fixture_signed_over_its_exact_bytes_is_accepted(xsolla, name):
    body = fixture_bytes(name)
    event = authenticate(body)
    assert event.event_type == fixture_json(name)["notification_type"]
    assert event.payload == json.loads(body)


def test_the_signature_is_plain_sha1_of_body_and_secret_not_an_hmac(xsolla):
    body = fixture_bytes("docs/create_subscription")
    plain = hashlib.sha1(body + WEBHOOK_SECRET.encode()).hexdigest()
    assert authenticate(body, {"Authorization": f"Signature {plain}"}).event_type == "create_subscription"

    as_hmac = hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha1).hexdigest()
    with pytest.raises(Rejected) as exc:
        authenticate(body, {"Authorization": f"Signature {as_hmac}"})
    assert exc.value.status == 400 and exc.value.code == "INVALID_SIGNATURE"


def test_the_header_is_found_whatever_its_case(xsolla):
    body = fixture_bytes("sdk/payment")
    assert authenticate(body, {"authorization": signed_headers(body)["Authorization"]}).event_type == "payment"


@pytest.mark.parametrize("header", [
    None, "", "Signature", "Signature 13342703ccaca5064ad33ba451d800c5e823db8f",  # the docs' placeholder
    "Bearer abc", "signature-without-scheme",
])
def test_missing_or_wrong_signature_is_invalid_signature(xsolla, header):
    body = fixture_bytes("sdk/payment")
    with pytest.raises(Rejected) as exc:
        authenticate(body, {} if header is None else {"Authorization": header})
    assert (exc.value.status, exc.value.code) == (400, "INVALID_SIGNATURE")


def test_a_reserialised_body_does_not_match_the_signature_of_the_original(xsolla):
    original = fixture_bytes("sdk/payment")
    reserialised = json.dumps(json.loads(original)).encode()
    with pytest.raises(Rejected) as exc:
        authenticate(reserialised, signed_headers(original))
    assert exc.value.code == "INVALID_SIGNATURE"


def test_a_signature_made_with_another_secret_is_refused(xsolla):
    body = fixture_bytes("sdk/payment")
    with pytest.raises(Rejected) as exc:
        authenticate(body, signed_headers(body, secret="another-project"))
    assert exc.value.code == "INVALID_SIGNATURE"


@pytest.mark.parametrize("body", [b"not json", b"\xff\xfe broken"])
def test_signed_bodies_that_cannot_be_decoded_are_undecodable(xsolla, body):
    with pytest.raises(Undecodable):
        authenticate(body)


@pytest.mark.parametrize("body", [
    b"[1, 2]", b'"payment"', b"{}", b'{"notification_type": ""}', b'{"notification_type": 5}',
    b'{"notification_type": "payment", "user": {"id": "1"}}',  # no transaction.id
    b'{"notification_type": "update_subscription", "subscription": {"plan_id": "x"}}',  # no subscription_id
    b'{"notification_type": "user_validation", "user": {}}',
])
def test_malformed_signed_bodies_are_invalid_parameter(xsolla, body):
    with pytest.raises(Rejected) as exc:
        authenticate(body)
    assert (exc.value.status, exc.value.code) == (400, "INVALID_PARAMETER")


def test_verified_event_carries_ids_environment_and_payment_time(xsolla):
    event = authenticate(fixture_bytes("sdk/payment"))
    assert event.dedupe_key == "payment:1"
    assert set(event.store_ids) == {"10", "1", "1234567"}  # subscription, transaction, user
    assert event.environment == "sandbox"  # dry_run: 1
    assert event.occurred_at.isoformat() == "2014-09-24T20:38:16+04:00"
    # The SDK sample's quirky "promotions[0]" key is kept as it came (nothing reads it).
    assert "promotions[0]" in event.payload["purchase"]


# --- The dedupe key -----------------------------------------------------------------------------

def test_dedupe_key_repeated_delivery_is_identical_and_renewals_are_distinct(xsolla):
    update = fixture_json("docs/update_subscription")
    key = authenticate(body_of(update)).dedupe_key
    # a repeat, even re-serialised differently and with the id as a number, is the same delivery
    repeat = {**update, "subscription": {**update["subscription"], "subscription_id": 10}}
    assert authenticate(json.dumps(repeat).encode()).dedupe_key == key
    # the next renewal moves date_next_charge: a different notification
    renewal = {**update, "subscription": {**update["subscription"], "date_next_charge": "2015-02-22T19:25:25+04:00"}}
    renewal_key = authenticate(body_of(renewal)).dedupe_key
    assert renewal_key != key and renewal_key.startswith("update_subscription:10:")
    # a plan change too
    plan = {**update, "subscription": {**update["subscription"], "plan_id": "other-plan"}}
    assert authenticate(body_of(plan)).dedupe_key not in (key, renewal_key)


def test_refund_and_payment_of_one_transaction_have_different_keys(xsolla):
    keys = {authenticate(fixture_bytes(n)).dedupe_key for n in ("sdk/payment", "sdk/refund", "sdk/partial_refund")}
    assert len(keys) == 3


def test_two_partial_refunds_of_one_payment_have_different_keys(xsolla):
    first = fixture_json("sdk/partial_refund")
    second = {**first, "payment_details": {**first["payment_details"], "payout": {"currency": "USD", "amount": 1}}}
    keys = {authenticate(body_of(data)).dedupe_key for data in (first, second)}
    assert len(keys) == 2 and all(k.startswith("partial_refund:1:") for k in keys)


# --- Xsolla's dialect ---------------------------------------------------------------------------

@pytest.mark.parametrize(("status", "code", "answer"), [
    (400, "INVALID_SIGNATURE", (400, "INVALID_SIGNATURE")),
    (413, "too_large", (400, "INVALID_PARAMETER")),  # not one of Xsolla's codes
    (404, "unknown_provider", (400, "INVALID_PARAMETER")),
    (503, "unavailable", (503, "UNAVAILABLE")),  # Xsolla retries on any 5xx: the status is kept
    (500, "", (500, "SERVER_ERROR")),
])
def test_the_dialect_answers_400_with_xsolla_codes_or_5xx(status, code, answer):
    rendered = XsollaDialect().error(status=status, code=code, message="why")
    assert (rendered.status, rendered.body["error"]["code"]) == answer
    assert rendered.body["error"]["message"] == "why"
    assert XsollaDialect().success(duplicate=True).body is None


# --- The endpoint -------------------------------------------------------------------------------

@pytest.mark.django_db
def test_a_notification_is_answered_204_with_no_body_and_processed(xsolla):
    data = fixture_json("docs/create_subscription")
    data["subscription"]["date_next_charge"] = (timezone.now() + timedelta(days=30)).replace(microsecond=0).isoformat()
    done = send(body_of(data))

    assert done.response.status_code == 204 and done.response.content == b""
    event = done.event
    assert event.status == WebhookEvent.Status.PROCESSED and event.event_type == "create_subscription"
    assert event.dedupe_key.startswith("create_subscription:10:")
    assert "10" in event.store_ids and "1234567" in event.store_ids
    assert "Authorization" not in event.headers  # the signature is not kept
    sub = done.subscription
    assert sub.status == Status.TRIAL and sub.is_entitled(timezone.now())
    assert sub.subscriber.external_id == "1234567"


@pytest.mark.django_db
def test_a_repeated_delivery_gets_the_same_answer_and_has_no_second_effect(xsolla):
    body = fixture_bytes("sdk/payment")
    answers = [send(body).response for _ in range(3)]

    assert [(r.status_code, r.content) for r in answers] == [(204, b"")] * 3
    assert WebhookEvent.objects.count() == 1
    assert Transaction.objects.count() == 1

    renewal = fixture_bytes("docs/update_subscription")
    assert [send(renewal).response.status_code for _ in range(2)] == [204, 204]
    assert StatusChange.objects.filter(subscription__provider_subscription_id="10").count() == 1


@pytest.mark.django_db
def test_bad_signature_is_400_invalid_signature_and_nothing_is_stored(xsolla):
    body = fixture_bytes("sdk/payment")
    assert_xsolla_error(deliver("xsolla", body, {"Authorization": "Signature " + "0" * 40}).response,
                        400, "INVALID_SIGNATURE")
    assert_xsolla_error(deliver("xsolla", body, {"Authorization": ""}).response, 400, "INVALID_SIGNATURE")
    assert not WebhookEvent.objects.exists() and not Transaction.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("body", [b'{"user": {"id": "1"}}', b'{"notification_type": "payment", "transaction": {}}'])
def test_malformed_body_is_400_invalid_parameter(xsolla, body):
    assert_xsolla_error(send(body).response, 400, "INVALID_PARAMETER")
    assert not WebhookEvent.objects.exists()


@pytest.mark.django_db
def test_a_signed_body_that_is_not_json_is_400_invalid_parameter_and_stored_as_failed(xsolla):
    done = send(b"{not json")
    assert_xsolla_error(done.response, 400, "INVALID_PARAMETER")
    assert bytes(done.event.body) == b"{not json" and done.event.status == WebhookEvent.Status.FAILED


@pytest.mark.django_db
def test_user_validation_of_a_known_user_is_204(xsolla):
    SubscriberFactory(external_id="1234567")
    done = send(fixture_bytes("docs/user_validation"))
    assert done.response.status_code == 204 and done.response.content == b""
    # kept for the audit, not processed
    assert done.event.status == WebhookEvent.Status.IGNORED and "204" in done.event.outcome


@pytest.mark.django_db
def test_user_validation_finds_the_user_by_their_xsolla_identity(xsolla):
    SubscriberFactory(external_id="42", xsolla_user_id="1234567")
    assert send(fixture_bytes("docs/user_validation")).response.status_code == 204


@pytest.mark.django_db
def test_user_validation_of_an_unknown_user_is_400_invalid_user_and_creates_nobody(xsolla):
    assert_xsolla_error(send(fixture_bytes("docs/user_validation")).response, 400, "INVALID_USER")
    assert not Subscriber.objects.exists() and not Subscription.objects.exists()
    # asked again later, once the user exists, the answer follows the user
    SubscriberFactory(external_id="1234567")
    assert send(fixture_bytes("docs/user_validation")).response.status_code == 204


@pytest.mark.django_db
def test_webhooks_off_is_a_503_naming_the_setting_so_xsolla_keeps_retrying(xsolla, settings):
    settings.XSOLLA_WEBHOOK_SECRET = ""
    response = deliver("xsolla", fixture_bytes("sdk/payment"), {"Authorization": "Signature " + "0" * 40}).response
    assert_xsolla_error(response, 503, "NOT_CONFIGURED")
    assert "XSOLLA_WEBHOOK_SECRET" in json.loads(response.content)["error"]["message"]


@pytest.mark.django_db
def test_an_oversized_body_is_400_invalid_parameter_so_xsolla_does_not_retry(xsolla, settings):
    settings.WEBHOOK_MAX_BODY_BYTES = 1024
    data = fixture_json("sdk/payment")
    data["custom_parameters"]["padding"] = "x" * 2000
    response = send(body_of(data)).response
    assert_xsolla_error(response, 400, "INVALID_PARAMETER")
    assert "1024 bytes" in json.loads(response.content)["error"]["message"]
    assert not WebhookEvent.objects.exists() and not Transaction.objects.exists()


@pytest.mark.django_db
def test_a_content_length_that_is_not_a_number_is_400_invalid_parameter(client, xsolla):
    body = fixture_bytes("sdk/payment")
    response = client.post("/webhooks/xsolla", data=body, content_type="application/json",
                           HTTP_AUTHORIZATION=signed_headers(body)["Authorization"], CONTENT_LENGTH="12x")
    assert_xsolla_error(response, 400, "INVALID_PARAMETER")
    assert not WebhookEvent.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["get", "put"])
def test_a_method_other_than_post_is_400_invalid_parameter(client, xsolla, method):
    response = getattr(client, method)("/webhooks/xsolla")
    assert_xsolla_error(response, 400, "INVALID_PARAMETER")
    assert response["Allow"] == "POST"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("name", ["sdk/payment", "docs/user_validation"])
def test_database_down_is_503_so_xsolla_retries(client, xsolla, name):
    SubscriberFactory(external_id="1234567")  # the user both notifications name
    body = fixture_bytes(name)
    connection.close()
    port = connection.settings_dict["PORT"]
    connection.settings_dict["PORT"] = closed_port()
    try:
        response = client.post("/webhooks/xsolla", data=body, content_type="application/json",
                               HTTP_AUTHORIZATION=signed_headers(body)["Authorization"])
    finally:
        connection.close()
        connection.settings_dict["PORT"] = port
    assert_xsolla_error(response, 503, "UNAVAILABLE")
    # the retry, once the database is back, is processed
    done = send(body)
    assert (done.response.status_code, done.response.content) == (204, b"")
    assert WebhookEvent.objects.count() == 1


@pytest.mark.django_db
def test_with_the_api_down_the_webhook_is_still_204_and_processing_retries(fake_xsolla):
    fake_xsolla.fail_next(503)
    done = send(fixture_bytes("docs/update_subscription"))
    assert done.response.status_code == 204  # the answer never waits for Xsolla's API
    assert done.event.status == WebhookEvent.Status.RECEIVED and done.event.attempts == 1
    assert "StoreUnavailable" in done.event.error
    assert not Subscription.objects.exists()
