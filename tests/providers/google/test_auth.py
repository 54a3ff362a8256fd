"""Authenticating Pub/Sub pushes (auth.webhook_authenticate): the OIDC token (signature by a key
Google's cert endpoint serves, audience, issuer, expiry, email) or the shared token (its header; the
URL only when enabled), and the envelope. Anything unauthenticated is 401/403 and nothing is stored;
what is authentic but not for us is answered 2xx and kept with its reason."""

import json
import logging

import pytest

from billing.providers.base import Rejected, TransientError, Undecodable
from billing.providers.google import auth
from tests.fakes.google import SigningKey, pubsub_body, shared_key
from webhooks.models import WebhookEvent

from .conftest import (
    AUDIENCE,
    FIXTURES,
    PACKAGE,
    PUSH_EMAIL,
    push,
    push_request,
    push_token,
    subscription_notification,
)

CLAIMS = {"iss": "https://accounts.google.com", "aud": AUDIENCE, "email": PUSH_EMAIL, "email_verified": True,
          "iat": 1, "exp": 4102444800}


def _auth(fake, **token_claims):
    headers, body, query = push_request(fake, subscription_notification("tok-1", 4),
                                        token=push_token(fake, **token_claims))
    return auth.webhook_authenticate(headers, body, query)


def _rejected(headers, body, query) -> Rejected:
    with pytest.raises(Rejected) as caught:
        auth.webhook_authenticate(headers, body, query)
    return caught.value


def test_valid_push_is_verified_and_described(google):
    notification = subscription_notification("tok-1", 4, millis=1760064664489)
    headers, body, query = push_request(google, notification, message_id="136969346945")
    event = auth.webhook_authenticate(headers, body, query)
    assert event.dedupe_key == "136969346945"
    assert event.event_type == "SUBSCRIPTION_PURCHASED"
    assert event.occurred_at.isoformat() == "2025-10-10T02:51:04.489000+00:00"  # from the string millis
    assert event.store_ids == ("tok-1", "session_pro")
    assert event.payload["notification"] == notification


def test_snake_case_message_id_is_accepted(google):
    body = pubsub_body(subscription_notification("tok-1", 2), message_id="m-77", snake_case=True)
    headers, _, query = push_request(google, body=body)
    assert auth.webhook_authenticate(headers, body, query).dedupe_key == "m-77"


def test_missing_token_is_401(google):
    headers, body, query = push_request(google, subscription_notification("tok-1", 4), token="")
    assert _rejected(headers, body, query).status == 401


def test_not_a_jwt_is_401(google):
    headers, body, query = push_request(google, subscription_notification("tok-1", 4), token="abc.def")
    assert _rejected(headers, body, query).status == 401


@pytest.mark.parametrize("same_kid", [True, False])
def test_forged_with_our_own_key_is_401(google, same_kid):
    forger = SigningKey(google.push_key.kid if same_kid else "forger-kid")
    headers, body, query = push_request(google, subscription_notification("tok-1", 4), token=forger.token(CLAIMS))
    assert _rejected(headers, body, query).status == 401


@pytest.mark.parametrize(("claims", "status"), [
    ({"audience": "https://someone-else.example.com/push"}, 401),
    ({"email": "attacker@evil-project.iam.gserviceaccount.com"}, 403),
    ({"email_verified": False}, 403),
    ({"expires_in": -120}, 401),  # expired beyond the 10 s clock skew
    ({"issuer": "https://evil.example.com"}, 401),
])
def test_wrong_claims_are_rejected(google, claims, status):
    with pytest.raises(Rejected) as caught:
        _auth(google, **claims)
    assert caught.value.status == status


def test_certificates_are_cached_not_fetched_per_request(google):
    for _ in range(5):
        _auth(google)
    assert google.certs_fetches == 1


def test_unknown_key_id_refetches_at_most_once_a_minute(google):
    forger = shared_key("forger")
    _auth(google)
    for _ in range(3):
        headers, body, query = push_request(google, subscription_notification("t", 4), token=forger.token(
            {**CLAIMS, "iss": "accounts.google.com"}))
        assert _rejected(headers, body, query).status == 401
    assert google.certs_fetches == 1  # the fetch a minute ago is recent enough


def test_certificate_endpoint_down_is_transient(google, settings):
    settings.GOOGLE_PUBSUB_CERTS_URL = "http://127.0.0.1:9/certs"  # nothing listens
    with pytest.raises(TransientError):
        _auth(google)


SHARED = {"X-Pubsub-Verification-Token": "s3cret-push-token"}


def test_shared_token_from_the_header(google, settings):
    settings.GOOGLE_PUBSUB_AUDIENCE = ""
    settings.GOOGLE_PUBSUB_VERIFICATION_TOKEN = "s3cret-push-token"
    headers, body, _ = push_request(google, subscription_notification("tok-1", 4), token="", headers=SHARED)
    assert auth.webhook_authenticate(headers, body, {}).event_type == "SUBSCRIPTION_PURCHASED"
    wrong = {**headers, "X-Pubsub-Verification-Token": "wrong"}
    assert _rejected(wrong, body, {}).status == 403
    bare = {k: v for k, v in headers.items() if k not in SHARED}
    assert (_rejected(bare, body, {}).status, _rejected(bare, body, {}).code) == (401, "unauthenticated")


def test_shared_token_in_the_url_is_refused_unless_enabled(google, settings):
    """`?token=` lands in every proxy's access log: refused by default, with a message saying what to do."""
    settings.GOOGLE_PUBSUB_AUDIENCE = ""
    settings.GOOGLE_PUBSUB_VERIFICATION_TOKEN = "s3cret-push-token"
    headers, body, _ = push_request(google, subscription_notification("tok-1", 4), token="")
    refused = _rejected(headers, body, {"token": "s3cret-push-token"})
    assert (refused.status, refused.code) == (401, "token_in_url")
    assert "X-Pubsub-Verification-Token" in refused.reason and "s3cret" not in refused.reason
    settings.GOOGLE_PUBSUB_TOKEN_IN_URL = True
    assert auth.webhook_authenticate(headers, body, {"token": "s3cret-push-token"}).dedupe_key
    assert _rejected(headers, body, {"token": "wrong"}).status == 403


def test_both_configured_requires_both(google, settings):
    settings.GOOGLE_PUBSUB_VERIFICATION_TOKEN = "s3cret-push-token"
    headers, body, _ = push_request(google, subscription_notification("tok-1", 4))
    assert _rejected(headers, body, {}).status == 401
    assert auth.webhook_authenticate({**headers, **SHARED}, body, {}).dedupe_key


def test_token_in_url_outside_development_is_a_system_check_warning(settings):
    settings.GOOGLE_PUBSUB_VERIFICATION_TOKEN = "s3cret-push-token"
    settings.DEBUG = False
    assert auth.system_checks() == []
    settings.GOOGLE_PUBSUB_TOKEN_IN_URL = True
    assert [m.id for m in auth.system_checks()] == ["billing.W_GOOGLE_TOKEN_IN_URL"]


@pytest.mark.django_db
def test_the_shared_token_is_never_logged_nor_stored(google, settings, caplog):
    settings.GOOGLE_PUBSUB_AUDIENCE = ""
    settings.GOOGLE_PUBSUB_VERIFICATION_TOKEN = "s3cret-push-token"
    google.set_purchase("tok-1", {"subscriptionState": "SUBSCRIPTION_STATE_PENDING", "lineItems": []})
    caplog.set_level(logging.DEBUG)
    accepted = push(google, subscription_notification("tok-1", 4), token="", headers=SHARED)
    assert accepted.response.status_code == 200
    for query in ({"token": "s3cret-push-token"}, {"token": "s3cret-push-token-wrong"}):  # refused: in the URL
        assert push(google, subscription_notification("tok-2", 4), token="", query=query).response.status_code == 401
    wrong = push(google, subscription_notification("tok-3", 4), token="",
                 headers={"X-Pubsub-Verification-Token": "s3cret-push-token-wrong"})
    assert wrong.response.status_code == 403 and "s3cret" not in wrong.response.content.decode()
    assert caplog.records and not [r for r in caplog.records if "s3cret" in r.getMessage()]
    stored = WebhookEvent.objects.get()
    assert "s3cret" not in json.dumps(stored.headers) and "s3cret" not in json.dumps(stored.payload)


def test_not_a_pubsub_body_is_400(google):
    headers, _, query = push_request(google, body=b"{}")
    assert _rejected(headers, b'{"nomessage": 1}', query).status == 400


def test_an_authenticated_body_that_is_not_json_is_undecodable(google):
    headers, _, query = push_request(google, body=b"not json")
    with pytest.raises(Undecodable):
        auth.webhook_authenticate(headers, b"not json", query)


@pytest.mark.django_db
def test_undecodable_data_is_accepted_and_ignored(google):
    """Google's own RTDN doc envelope: authentic but its data is not JSON. Redelivery cannot fix it."""
    delivered = push(google, body=(FIXTURES / "pubsub_envelope_rtdn_reference_doc.json").read_bytes())
    assert delivered.response.status_code == 200
    event = delivered.event
    assert event.dedupe_key == "136969346945" and event.event_type == "UNDECODABLE"
    assert event.status == "ignored" and "not a base64 JSON" in event.outcome
    assert delivered.subscriptions == [] and google.calls == []


def test_minimal_doc_envelope_is_decoded():
    decoded = auth.envelope_decode((FIXTURES / "pubsub_push_envelope_minimal_doc.json").read_bytes())
    assert decoded["message_id"] == "2070443601311540" and "undecodable" in decoded


# --- what the endpoint answers ------------------------------------------------------------------

@pytest.mark.django_db
@pytest.mark.parametrize(("kind", "status"), [
    ("missing", 401), ("forged", 401), ("audience", 401), ("email", 403), ("expired", 401), ("shared", 403)])
def test_unauthenticated_pushes_are_refused_and_nothing_stored(google, settings, kind, status):
    token = {
        "missing": "",
        "forged": SigningKey(google.push_key.kid).token(CLAIMS) if kind == "forged" else None,
        "audience": push_token(google, audience="https://other.example.com/push"),
        "email": push_token(google, email="someone@else.iam.gserviceaccount.com"),
        "expired": push_token(google, expires_in=-300),
        "shared": "",
    }[kind]
    headers = None
    if kind == "shared":
        settings.GOOGLE_PUBSUB_AUDIENCE = ""
        settings.GOOGLE_PUBSUB_VERIFICATION_TOKEN = "right-token"
        headers = {"X-Pubsub-Verification-Token": "wrong-token"}
    delivered = push(google, subscription_notification("tok-1", 4), token=token, headers=headers)
    assert delivered.response.status_code == status
    assert "error" in delivered.response.json()
    assert not WebhookEvent.objects.exists() and google.calls == []


@pytest.mark.django_db
@pytest.mark.parametrize("body", [
    pubsub_body({"version": "1.0", "packageName": PACKAGE, "eventTimeMillis": "1", "testNotification": {}}),
    pubsub_body({**subscription_notification("tok-1", 4), "packageName": "com.someone.else"}),
    (FIXTURES / "pubsub_envelope_rtdn_reference_doc.json").read_bytes(),
])
def test_ignorable_pushes_get_a_2xx_and_are_recorded(google, body):
    delivered = push(google, body=body)
    assert delivered.response.status_code == 200
    event = WebhookEvent.objects.get(provider="google")
    assert event.status == "ignored" and event.outcome.startswith("ignored:")
    assert google.calls == []


# --- GOOGLE_PUBSUB_CERTS_URL pointing at a JWK Set (oauth2/v3/certs) -----------------------------

@pytest.fixture
def jwks(google, settings):
    settings.GOOGLE_PUBSUB_CERTS_URL = f"{google.base_url}/jwks"
    return google


def test_jwk_set_url_verifies_a_valid_push(jwks):
    assert _auth(jwks).event_type == "SUBSCRIPTION_PURCHASED"


@pytest.mark.parametrize("kind", ["unknown key id", "forged with the same key id", "wrong audience", "expired",
                                  "wrong issuer", "other service account"])
def test_jwk_set_url_refuses_bad_tokens_with_a_reason_not_a_500(jwks, kind):
    token = {
        "unknown key id": lambda: shared_key("forger").token(CLAIMS),
        "forged with the same key id": lambda: SigningKey(jwks.push_key.kid).token(CLAIMS),
        "wrong audience": lambda: push_token(jwks, audience="https://other.example.com/push"),
        "expired": lambda: push_token(jwks, expires_in=-300),
        "wrong issuer": lambda: push_token(jwks, issuer="https://evil.example"),
        "other service account": lambda: push_token(jwks, email="x@evil.iam.gserviceaccount.com"),
    }[kind]()
    headers, body, query = push_request(jwks, subscription_notification("tok-1", 4), token=token)
    rejected = _rejected(headers, body, query)
    assert rejected.status == (403 if kind == "other service account" else 401)
    assert rejected.reason


@pytest.mark.django_db
def test_jwk_set_url_bad_token_is_401_through_the_endpoint(jwks):
    delivered = push(jwks, subscription_notification("tok-1", 4), token=shared_key("forger").token(CLAIMS))
    assert delivered.response.status_code == 401
    assert "not valid" in delivered.response.json()["error"]["message"]
    assert delivered.event is None and jwks.calls == []


@pytest.mark.parametrize("served", [b'{"keys": []}', b'{"keys": [{"kty": "nonsense"}]}', b"<html>oops</html>",
                                    b'["not", "an", "object"]'])
def test_unusable_certificates_are_transient_not_the_senders_fault(jwks, served):
    jwks.certs_override = served
    with pytest.raises(TransientError):
        _auth(jwks)


@pytest.mark.django_db
def test_unusable_certificates_are_503_through_the_endpoint(jwks):
    jwks.certs_override = b'{"keys": []}'
    delivered = push(jwks, subscription_notification("tok-1", 4))
    assert delivered.response.status_code == 503
    assert "certificates" in delivered.response.json()["error"]["message"]
    assert not WebhookEvent.objects.exists()
