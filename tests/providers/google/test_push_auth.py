"""Authenticating Pub/Sub pushes: the OIDC token (signature by a key Google's cert endpoint serves,
audience, issuer, expiry, email) or the shared URL token. Anything else is 401/403, nothing processed."""

import base64
import json
from pathlib import Path

import pytest

from billing.providers.base import Rejected, TransientError
from billing.providers.google import notifications
from tests.fakes.google import SigningKey, pubsub_body, shared_key
from webhooks.models import WebhookEvent

from .helpers import AUDIENCE, FIXTURES, PUSH_EMAIL, inbound, push_request, subscription_notification


def _auth(adapter, fake, **token_kwargs):
    token = fake.push_token(**{"audience": AUDIENCE, "email": PUSH_EMAIL, **token_kwargs})
    headers, body, query = push_request(fake, subscription_notification("tok-1", 4), token=token)
    return adapter.authenticate(headers, body, query)


def _rejected(adapter, headers, body, query) -> Rejected:
    with pytest.raises(Rejected) as caught:
        adapter.authenticate(headers, body, query)
    return caught.value


def test_valid_push_is_verified_and_described(adapter, google):
    notification = subscription_notification("tok-1", 4, millis=1760064664489)
    headers, body, query = push_request(google, notification, message_id="136969346945")
    event = adapter.authenticate(headers, body, query)
    assert event.dedupe_key == "136969346945"
    assert event.event_type == "SUBSCRIPTION_PURCHASED"
    assert event.occurred_at.isoformat() == "2025-10-10T02:51:04.489000+00:00"  # from the string millis
    assert event.store_ids == ("tok-1", "session_pro")
    assert event.payload["notification"] == notification


def test_snake_case_message_id_is_accepted(adapter, google):
    body = pubsub_body(subscription_notification("tok-1", 2), message_id="m-77", snake_case=True)
    headers, _, query = push_request(google, body=body)
    assert adapter.authenticate(headers, body, query).dedupe_key == "m-77"


def test_missing_token_is_401(adapter, google):
    headers, body, query = push_request(google, subscription_notification("tok-1", 4), token="")
    assert _rejected(adapter, headers, body, query).status == 401


def test_not_a_jwt_is_401(adapter, google):
    headers, body, query = push_request(google, subscription_notification("tok-1", 4), token="abc.def")
    assert _rejected(adapter, headers, body, query).status == 401


@pytest.mark.parametrize("same_kid", [True, False])
def test_forged_with_our_own_key_is_401(adapter, google, same_kid):
    forger = SigningKey(google.push_key.kid if same_kid else "forger-kid")
    headers, body, query = push_request(google, subscription_notification("tok-1", 4), token=forger.token(
        {"iss": "https://accounts.google.com", "aud": AUDIENCE, "email": PUSH_EMAIL, "email_verified": True,
         "iat": 1, "exp": 4102444800}))
    assert _rejected(adapter, headers, body, query).status == 401


@pytest.mark.parametrize(("claims", "status"), [
    ({"audience": "https://someone-else.example.com/push"}, 401),
    ({"email": "attacker@evil-project.iam.gserviceaccount.com"}, 403),
    ({"email_verified": False}, 403),
    ({"expires_in": -120}, 401),  # expired beyond the 10 s clock skew
    ({"issuer": "https://evil.example.com"}, 401),
])
def test_wrong_claims_are_rejected(adapter, google, claims, status):
    with pytest.raises(Rejected) as caught:
        _auth(adapter, google, **claims)
    assert caught.value.status == status


def test_certificates_are_cached_not_fetched_per_request(adapter, google):
    for _ in range(5):
        _auth(adapter, google)
    assert google.certs_fetches == 1


def test_unknown_key_id_refetches_at_most_once_a_minute(adapter, google):
    forger = shared_key("forger")
    _auth(adapter, google)
    for _ in range(3):
        headers, body, query = push_request(google, subscription_notification("t", 4), token=forger.token(
            {"iss": "accounts.google.com", "aud": AUDIENCE, "email": PUSH_EMAIL, "email_verified": True,
             "iat": 1, "exp": 4102444800}))
        assert _rejected(adapter, headers, body, query).status == 401
    assert google.certs_fetches == 1  # the fetch a minute ago is recent enough


def test_certificate_endpoint_down_is_transient(adapter, google, settings):
    settings.GOOGLE_PUBSUB_CERTS_URL = "http://127.0.0.1:9/certs"  # nothing listens
    with pytest.raises(TransientError):
        _auth(adapter, google)


def test_shared_url_token(adapter, google, settings):
    settings.GOOGLE_PUBSUB_AUDIENCE = ""
    settings.GOOGLE_PUBSUB_VERIFICATION_TOKEN = "s3cret-push-token"
    notification = subscription_notification("tok-1", 4)
    headers, body, _ = push_request(google, notification, token="")
    assert adapter.authenticate(headers, body, {"token": "s3cret-push-token"}).event_type == "SUBSCRIPTION_PURCHASED"
    assert _rejected(adapter, headers, body, {"token": "wrong"}).status == 403
    assert _rejected(adapter, headers, body, {}).status == 401


def test_both_configured_requires_both(adapter, google, settings):
    settings.GOOGLE_PUBSUB_VERIFICATION_TOKEN = "s3cret-push-token"
    headers, body, _ = push_request(google, subscription_notification("tok-1", 4))
    assert _rejected(adapter, headers, body, {}).status == 401
    assert adapter.authenticate(headers, body, {"token": "s3cret-push-token"}).dedupe_key


def test_not_a_pubsub_body_is_400(adapter, google):
    headers, _, query = push_request(google, body=b"not json")
    assert _rejected(adapter, headers, b"not json", query).status == 400
    assert _rejected(adapter, headers, b'{"nomessage": 1}', query).status == 400


@pytest.mark.django_db
def test_undecodable_data_is_accepted_and_ignored(adapter, google):
    """Google's own RTDN doc envelope: authentic but its data is not JSON. Redelivery cannot fix it."""
    body = (FIXTURES / "pubsub_envelope_rtdn_reference_doc.json").read_bytes()
    headers, _, query = push_request(google, body=body)
    event = adapter.authenticate(headers, body, query)
    assert event.dedupe_key == "136969346945" and event.event_type == notifications.UNDECODABLE
    result = adapter.parse(inbound(event, body))
    assert not result.snapshots and "not a base64 JSON" in result.ignored_reason
    assert google.calls == []


def test_minimal_doc_envelope_is_parsed():
    parsed = notifications.parse_envelope(Path(FIXTURES / "pubsub_push_envelope_minimal_doc.json").read_bytes())
    assert parsed["message_id"] == "2070443601311540" and "undecodable" in parsed


def test_event_time_string_is_parsed():
    data = {"eventTimeMillis": "1503349566168"}
    assert notifications.event_time(data).year == 2017
    assert notifications.event_time({"eventTimeMillis": "x"}) is None
    assert json.loads(base64.b64decode(json.loads(pubsub_body(data))["message"]["data"])) == data


# --- GOOGLE_PUBSUB_CERTS_URL pointing at a JWK Set (oauth2/v3/certs) -----------------------------

@pytest.fixture
def jwks(google, settings):
    settings.GOOGLE_PUBSUB_CERTS_URL = f"{google.base_url}/jwks"
    return google


def test_jwk_set_url_verifies_a_valid_push(adapter, jwks):
    assert _auth(adapter, jwks).event_type == "SUBSCRIPTION_PURCHASED"


@pytest.mark.parametrize("kind", ["unknown key id", "forged with the same key id", "wrong audience", "expired",
                                  "wrong issuer", "other service account"])
def test_jwk_set_url_refuses_bad_tokens_with_a_reason_not_a_500(adapter, jwks, kind):
    claims = {"iss": "https://accounts.google.com", "aud": AUDIENCE, "email": PUSH_EMAIL, "email_verified": True,
              "iat": 1, "exp": 4102444800}
    token = {
        "unknown key id": lambda: shared_key("forger").token(claims),
        "forged with the same key id": lambda: SigningKey(jwks.push_key.kid).token(claims),
        "wrong audience": lambda: jwks.push_token(audience="https://other.example.com/push", email=PUSH_EMAIL),
        "expired": lambda: jwks.push_token(audience=AUDIENCE, email=PUSH_EMAIL, expires_in=-300),
        "wrong issuer": lambda: jwks.push_token(audience=AUDIENCE, email=PUSH_EMAIL, issuer="https://evil.example"),
        "other service account": lambda: jwks.push_token(audience=AUDIENCE, email="x@evil.iam.gserviceaccount.com"),
    }[kind]()
    headers, body, query = push_request(jwks, subscription_notification("tok-1", 4), token=token)
    rejected = _rejected(adapter, headers, body, query)
    assert rejected.status == (403 if kind == "other service account" else 401)
    assert rejected.reason


@pytest.mark.django_db
def test_jwk_set_url_bad_token_is_401_through_the_endpoint(client, jwks):
    token = shared_key("forger").token({"iss": "https://accounts.google.com", "aud": AUDIENCE, "email": PUSH_EMAIL,
                                        "email_verified": True, "iat": 1, "exp": 4102444800})
    response = client.post("/webhooks/google", pubsub_body(subscription_notification("tok-1", 4)),
                           content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 401
    assert "not valid" in response.json()["error"]["message"]
    assert jwks.calls == []


@pytest.mark.parametrize("served", [b'{"keys": []}', b'{"keys": [{"kty": "nonsense"}]}', b"<html>oops</html>",
                                    b'["not", "an", "object"]'])
def test_unusable_certificates_are_transient_not_the_senders_fault(adapter, jwks, served):
    jwks.certs_override = served
    with pytest.raises(TransientError):
        _auth(adapter, jwks)


@pytest.mark.django_db
def test_unusable_certificates_are_503_through_the_endpoint(client, jwks):
    jwks.certs_override = b'{"keys": []}'
    response = client.post("/webhooks/google", pubsub_body(subscription_notification("tok-1", 4)),
                           content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {_token(jwks)}")
    assert response.status_code == 503
    assert "certificates" in response.json()["error"]["message"]
    assert not WebhookEvent.objects.exists()


def _token(fake) -> str:
    return fake.push_token(audience=AUDIENCE, email=PUSH_EMAIL)
