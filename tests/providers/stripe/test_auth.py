"""POST /webhooks/stripe: the Stripe-Signature check on the raw bytes, the secret rotation, and the
answers to what is not an authentic Stripe event (400, nothing stored)."""

import json
import time

import pytest

from billing.models import Subscription
from tests.fakes.stripe import sign
from tests.helpers import deliver
from webhooks.models import WebhookEvent

from .conftest import WEBHOOK_SECRET, event_body, fixture_event, signed_headers

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("case", ["bad_signature", "too_old", "altered", "missing", "wrong_secret", "not_json",
                                  "not_utf8"])
def test_unauthentic_requests_are_400_and_nothing_is_stored(fake_stripe, case):
    body = fixture_event("customer.subscription.created")
    headers = signed_headers(body)
    if case == "bad_signature":
        headers["Stripe-Signature"] = headers["Stripe-Signature"][:-4] + "0000"
    elif case == "too_old":
        headers = signed_headers(body, timestamp=int(time.time()) - 301)  # tolerance: 300 s
    elif case == "altered":
        body = body.replace(b'"status": "active"', b'"status": "trialing"')
        assert body != fixture_event("customer.subscription.created")
    elif case == "missing":
        headers = {}
    elif case == "wrong_secret":
        headers = signed_headers(body, secret="whsec_someone_else")
    elif case == "not_json":  # unsigned
        body = b"{not json"
        headers = signed_headers(body, secret="whsec_someone_else")
    elif case == "not_utf8":  # checked over the raw bytes: the forgery is refused, not stored as undecodable
        body = b"\xff\xfe{}"
        headers = signed_headers(body, secret="whsec_someone_else")
    delivered = deliver("stripe", body, headers)
    assert delivered.response.status_code == 400
    assert delivered.response.json()["error"]["code"] in ("bad_signature", "missing_signature", "malformed")
    assert not WebhookEvent.objects.exists() and not Subscription.objects.exists()


@pytest.mark.parametrize(("body", "message"), [
    (event_body({"object": "event", "id": "evt_1", "type": "customer.created"}), "not a Stripe event"),
    (event_body({"object": "customer", "id": "cus_1"}), "not a Stripe event"),
], ids=["no_data_object", "not_an_event"])
def test_signed_bodies_that_are_not_stripe_events_are_400_malformed(fake_stripe, body, message):
    delivered = deliver("stripe", body, signed_headers(body))
    assert delivered.response.status_code == 400
    error = delivered.response.json()["error"]
    assert error["code"] == "malformed" and message in error["message"]
    assert not WebhookEvent.objects.exists()


@pytest.mark.parametrize(("body", "reason"), [(b"\xff\xfe{}", "not UTF-8"), (b"{not json", "not JSON")])
def test_signed_bodies_that_cannot_be_decoded_are_stored_as_failed_and_answered_200(fake_stripe, body, reason):
    """Authentic: Stripe would retry a 4xx for days into the same wall; stored, it waits for a replay."""
    delivered = deliver("stripe", body, signed_headers(body))
    assert delivered.response.status_code == 200
    assert bytes(delivered.event.body) == body and delivered.event.status == WebhookEvent.Status.FAILED
    assert reason in delivered.event.error


def test_the_signature_header_is_read_whatever_its_case(fake_stripe):
    body = fixture_event("customer.created")
    delivered = deliver("stripe", body, {"stripe-signature": sign(body, WEBHOOK_SECRET)}, process=False)
    assert delivered.response.status_code == 200 and delivered.event.event_type == "customer.created"


def test_a_rotated_secret_keeps_working_during_the_overlap(fake_stripe, settings):
    settings.STRIPE_WEBHOOK_SECRET = f"whsec_new_secret,{WEBHOOK_SECRET}"
    body = fixture_event("customer.created")
    delivered = deliver("stripe", body, {"Stripe-Signature": sign(body, "whsec_new_secret")})
    assert delivered.response.status_code == 200
    assert delivered.event.status == WebhookEvent.Status.IGNORED


def test_the_stored_event_keeps_the_ids_support_searches_by(fake_stripe):
    body = fixture_event("invoice.paid")
    invoice = json.loads(body)["data"]["object"]
    delivered = deliver("stripe", body, signed_headers(body), process=False)
    assert delivered.response.json() == {"status": "received"}
    event = delivered.event
    assert (event.dedupe_key, event.event_type) == (json.loads(body)["id"], "invoice.paid")
    assert event.store_ids[0] == invoice["id"]
    assert {invoice["customer"], invoice["charge"]} <= set(event.store_ids)


def test_without_a_webhook_secret_the_endpoint_is_not_configured(fake_stripe, settings):
    settings.STRIPE_WEBHOOK_SECRET = ""
    body = fixture_event("customer.created")
    delivered = deliver("stripe", body, signed_headers(body))
    assert delivered.response.status_code == 503
    assert not WebhookEvent.objects.exists()


@pytest.mark.parametrize("ahead", [600, 86400, 10 * 365 * 86400], ids=["10_minutes", "1_day", "10_years"])
def test_a_signature_dated_in_the_future_is_refused_like_an_old_one(fake_stripe, ahead):
    body = fixture_event("customer.subscription.created")
    delivered = deliver("stripe", body, signed_headers(body, timestamp=int(time.time()) + ahead))
    assert delivered.response.status_code == 400
    error = delivered.response.json()["error"]
    assert error["code"] == "bad_signature" and "future" in error["message"]
    assert not WebhookEvent.objects.exists() and not Subscription.objects.exists()


def test_a_clock_a_little_ahead_is_tolerated(fake_stripe):
    body = fixture_event("customer.created")
    delivered = deliver("stripe", body, signed_headers(body, timestamp=int(time.time()) + 60), process=False)
    assert delivered.response.status_code == 200



@pytest.mark.parametrize(("offset", "words"), [(0, "no v1 signature matches"), (-3600, "more than 300 s old")])
def test_a_refused_signature_is_explained_in_our_words_not_the_librarys(fake_stripe, offset, words):
    body = fixture_event("customer.created")
    headers = signed_headers(body, timestamp=int(time.time()) + offset, secret="whsec_someone_else")
    message = deliver("stripe", body, headers).response.json()["error"]["message"]
    assert words in message
    assert "No signatures found" not in message and "tolerance zone" not in message
