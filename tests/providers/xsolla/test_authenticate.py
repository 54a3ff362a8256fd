"""authenticate(): Xsolla's `Signature sha1(raw body + secret)` header, the body's shape, the dedupe key."""

import hashlib
import hmac
import json

import pytest

from billing.providers.base import Rejected

from .conftest import DOC_FILES, SDK_FILES, WEBHOOK_SECRET, body_of, fixture_bytes, fixture_json, signed_headers


@pytest.mark.parametrize("name", [f"docs/{n}" for n in DOC_FILES] + [f"sdk/{n}" for n in SDK_FILES])
def test_every_fixture_signed_over_its_exact_bytes_is_accepted(xsolla, name):
    body = fixture_bytes(name)
    event = xsolla.authenticate(signed_headers(body), body, {})
    assert event.event_type == fixture_json(name)["notification_type"]
    assert event.payload == json.loads(body)


def test_the_signature_is_plain_sha1_of_body_and_secret_not_an_hmac(xsolla):
    body = fixture_bytes("docs/create_subscription")
    plain = hashlib.sha1(body + WEBHOOK_SECRET.encode()).hexdigest()
    assert xsolla.authenticate({"Authorization": f"Signature {plain}"}, body, {}).event_type == "create_subscription"

    as_hmac = hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha1).hexdigest()
    with pytest.raises(Rejected) as exc:
        xsolla.authenticate({"Authorization": f"Signature {as_hmac}"}, body, {})
    assert exc.value.status == 400 and exc.value.code == "INVALID_SIGNATURE"


@pytest.mark.parametrize("header", [
    None, "", "Signature", "Signature 13342703ccaca5064ad33ba451d800c5e823db8f",  # the docs' placeholder
    "Bearer abc", "signature-without-scheme",
])
def test_missing_or_wrong_signature_is_invalid_signature(xsolla, header):
    body = fixture_bytes("sdk/payment")
    headers = {} if header is None else {"Authorization": header}
    with pytest.raises(Rejected) as exc:
        xsolla.authenticate(headers, body, {})
    assert (exc.value.status, exc.value.code) == (400, "INVALID_SIGNATURE")


def test_a_reserialised_body_does_not_match_the_signature_of_the_original(xsolla):
    original = fixture_bytes("sdk/payment")
    reserialised = json.dumps(json.loads(original)).encode()
    with pytest.raises(Rejected) as exc:
        xsolla.authenticate(signed_headers(original), reserialised, {})
    assert exc.value.code == "INVALID_SIGNATURE"


def test_a_signature_made_with_another_secret_is_refused(xsolla):
    body = fixture_bytes("sdk/payment")
    with pytest.raises(Rejected) as exc:
        xsolla.authenticate(signed_headers(body, secret="another-project"), body, {})
    assert exc.value.code == "INVALID_SIGNATURE"


@pytest.mark.parametrize("body", [
    b"not json", b"[1, 2]", b'"payment"', b"{}", b'{"notification_type": ""}', b'{"notification_type": 5}',
    b'{"notification_type": "payment", "user": {"id": "1"}}',  # no transaction.id
    b'{"notification_type": "update_subscription", "subscription": {"plan_id": "x"}}',  # no subscription_id
    b'{"notification_type": "user_validation", "user": {}}',
    b"\xff\xfe broken",
])
def test_malformed_signed_bodies_are_invalid_parameter(xsolla, body):
    with pytest.raises(Rejected) as exc:
        xsolla.authenticate(signed_headers(body), body, {})
    assert (exc.value.status, exc.value.code) == (400, "INVALID_PARAMETER")


def test_verified_event_carries_ids_environment_and_payment_time(xsolla):
    body = fixture_bytes("sdk/payment")
    event = xsolla.authenticate(signed_headers(body), body, {})
    assert event.dedupe_key == "payment:1"
    assert set(event.store_ids) == {"10", "1", "1234567"}  # subscription, transaction, user
    assert event.environment == "sandbox"  # dry_run: 1
    assert event.occurred_at.isoformat() == "2014-09-24T20:38:16+04:00"
    # The SDK sample's quirky "promotions[0]" key is kept as it came (nothing reads it).
    assert "promotions[0]" in event.payload["purchase"]


def test_dedupe_key_repeated_delivery_is_identical_and_renewals_are_distinct(xsolla):
    update = fixture_json("docs/update_subscription")
    key = xsolla.authenticate(signed_headers(body_of(update)), body_of(update), {}).dedupe_key
    # a repeat, even re-serialised differently and with the id as a number, is the same delivery
    repeat = {**update, "subscription": {**update["subscription"], "subscription_id": 10}}
    repeat_body = json.dumps(repeat).encode()
    assert xsolla.authenticate(signed_headers(repeat_body), repeat_body, {}).dedupe_key == key
    # the next renewal moves date_next_charge: a different notification
    renewal = {**update, "subscription": {**update["subscription"], "date_next_charge": "2015-02-22T19:25:25+04:00"}}
    renewal_key = xsolla.authenticate(signed_headers(body_of(renewal)), body_of(renewal), {}).dedupe_key
    assert renewal_key != key and renewal_key.startswith("update_subscription:10:")
    # a plan change too
    plan = {**update, "subscription": {**update["subscription"], "plan_id": "other-plan"}}
    assert xsolla.authenticate(signed_headers(body_of(plan)), body_of(plan), {}).dedupe_key not in (key, renewal_key)


def test_refund_and_payment_of_one_transaction_have_different_keys(xsolla):
    keys = {xsolla.authenticate(signed_headers(fixture_bytes(n)), fixture_bytes(n), {}).dedupe_key
            for n in ("sdk/payment", "sdk/refund", "sdk/partial_refund")}
    assert len(keys) == 3
