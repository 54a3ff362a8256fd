"""Authenticity of notifications: our own chain signs like Apple; anything else is rejected with a
clear reason and nothing is stored."""

import base64
import json
import socket

import jwt
import pytest
from django.conf import settings

from billing.models import Subscription
from billing.providers.apple.adapter import AppleAdapter
from billing.providers.apple.mapping import app_account_token_for_user
from billing.providers.base import Rejected, TransientError
from tests.fakes.apple import (
    AppleChain,
    notification_claims,
    now_ms,
    renewal_claims,
    signed_body,
    transaction_claims,
)
from webhooks.models import WebhookEvent

HMAC_SECRET = "a-shared-secret-of-at-least-32-bytes!"


def _subscribed(chain, *, environment="Sandbox", txn_environment=None, bundle_id=None, **kw):
    txn = transaction_claims(environment=txn_environment or environment,
                             **({"bundle_id": bundle_id} if bundle_id else {}))
    return notification_claims("SUBSCRIBED", "INITIAL_BUY", chain=chain, transaction=txn,
                               renewal=renewal_claims(txn), environment=environment,
                               **({"bundle_id": bundle_id} if bundle_id else {}), **kw)


def _post(client, body: bytes, capture):
    with capture(execute=True):
        return client.post("/webhooks/apple", data=body, content_type="application/json")


@pytest.mark.django_db
def test_genuine_notification_is_accepted_and_processed(apple_settings, apple_chain, client,
                                                        django_capture_on_commit_callbacks):
    claims = _subscribed(apple_chain)
    response = _post(client, signed_body(apple_chain, claims), django_capture_on_commit_callbacks)
    assert response.status_code == 200
    event = WebhookEvent.objects.get(provider="apple")
    assert event.dedupe_key == claims["notificationUUID"]
    assert event.event_type == "SUBSCRIBED/INITIAL_BUY"
    assert event.environment == "sandbox"
    assert event.status == WebhookEvent.Status.PROCESSED
    assert Subscription.objects.get(provider="apple").status == "ACTIVE"


@pytest.mark.django_db
def test_pem_roots_are_accepted_too(apple_settings, apple_chain, adapter, tmp_path):
    pem = tmp_path / "root.pem"
    pem.write_bytes(apple_chain.root_pem)
    apple_settings.APPLE_ROOT_CERTIFICATES = [str(pem)]
    assert adapter.authenticate({}, signed_body(apple_chain, _subscribed(apple_chain)), {}).environment == "sandbox"


def _tampered(chain: AppleChain) -> bytes:
    token = chain.sign(_subscribed(chain))
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["data"]["status"] = 5
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return json.dumps({"signedPayload": f"{header}.{forged}.{signature}"}).encode()


def _cases(chain: AppleChain) -> dict:
    stranger = AppleChain(name="Stranger")
    two_certs = chain.x5c()[:2]
    return {
        "chain not rooted in the configured roots": (signed_body(stranger, _subscribed(stranger)),
                                                     400, "verification_failure"),
        "tampered payload": (_tampered(chain), 400, "verification_failure"),
        "wrong bundle id": (signed_body(chain, _subscribed(chain, bundle_id="com.example.other")),
                            400, "invalid_app_identifier"),
        "nested transaction from another environment": (
            signed_body(chain, _subscribed(chain, environment="Sandbox", txn_environment="Production")),
            400, "invalid_environment"),
        "unsigned Xcode environment": (signed_body(chain, _subscribed(chain, environment="Xcode")),
                                       400, "unsigned_environment"),
        "two-certificate x5c": (json.dumps({"signedPayload": chain.sign(_subscribed(chain), x5c=two_certs)}).encode(),
                                400, "invalid_chain_length"),
        "HS256 token": (json.dumps({"signedPayload": jwt.encode(_subscribed(chain), HMAC_SECRET)}).encode(),
                        400, "verification_failure"),
        "not JSON": (b"signedPayload=abc", 400, "malformed"),
        "no signedPayload": (b'{"payload": "x"}', 400, "malformed"),
        "not a JWS": (b'{"signedPayload": "not-a-jws"}', 400, "malformed"),
    }


@pytest.mark.django_db
@pytest.mark.parametrize("case", list(_cases(AppleChain()).keys()))
def test_inauthentic_or_malformed_is_rejected_with_a_clear_reason_and_nothing_is_stored(
        apple_settings, apple_chain, client, django_capture_on_commit_callbacks, case):
    body, status, code = _cases(apple_chain)[case]
    response = _post(client, body, django_capture_on_commit_callbacks)
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    assert not WebhookEvent.objects.exists()
    assert not Subscription.objects.exists()


def test_rejection_reason_names_the_library_status(apple_settings, adapter):
    stranger = AppleChain(name="Stranger")
    with pytest.raises(Rejected) as exc:
        adapter.authenticate({}, signed_body(stranger, _subscribed(stranger)), {})
    assert "VERIFICATION_FAILURE" in exc.value.reason
    assert "configured Apple roots" in exc.value.reason


def test_signed_before_the_certificates_were_valid_is_rejected(apple_settings, apple_chain, adapter):
    claims = _subscribed(apple_chain, signed_ms=now_ms() - 90 * 86_400_000)  # chain starts 30 days ago
    with pytest.raises(Rejected) as exc:
        adapter.authenticate({}, signed_body(apple_chain, claims), {})
    assert exc.value.code == "verification_failure"


def _unsigned_body(chain, environment: str) -> bytes:
    txn = transaction_claims(environment=environment)
    claims = notification_claims("SUBSCRIBED", "INITIAL_BUY", chain=chain, transaction=txn,
                                 renewal=renewal_claims(txn), environment=environment)
    return json.dumps({"signedPayload": jwt.encode(claims, HMAC_SECRET)}).encode()  # no App Store signature at all


@pytest.mark.parametrize("environment", ["LocalTesting", "Xcode"])
def test_unsigned_environments_only_when_enabled_for_development(apple_settings, apple_chain, adapter, environment):
    body = _unsigned_body(apple_chain, environment)
    with pytest.raises(Rejected) as exc:
        adapter.authenticate({}, body, {})
    assert exc.value.code == "unsigned_environment"
    apple_settings.APPLE_ALLOW_UNSIGNED_ENVIRONMENTS = True
    apple_settings.DEBUG = True
    assert adapter.authenticate({}, body, {}).environment == "sandbox"


@pytest.mark.django_db
def test_unsigned_environments_stay_refused_without_debug_even_when_allowed(apple_settings, apple_chain, client,
                                                                           django_capture_on_commit_callbacks):
    """Defence in depth: the setting copied into a production environment (DEBUG off) opens nothing."""
    apple_settings.APPLE_ALLOW_UNSIGNED_ENVIRONMENTS = True
    apple_settings.DEBUG = False
    response = _post(client, _unsigned_body(apple_chain, "LocalTesting"), django_capture_on_commit_callbacks)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "unsigned_environment" and "DEBUG is off" in error["message"]
    assert not WebhookEvent.objects.exists() and not Subscription.objects.exists()


def test_production_needs_the_app_apple_id(apple_settings, apple_chain, adapter):
    claims = _subscribed(apple_chain, environment="Production")
    assert adapter.authenticate({}, signed_body(apple_chain, claims), {}).environment == "production"

    wrong_app = _subscribed(apple_chain, environment="Production", app_apple_id=999)
    with pytest.raises(Rejected) as exc:
        adapter.authenticate({}, signed_body(apple_chain, wrong_app), {})
    assert exc.value.code == "invalid_app_identifier"

    apple_settings.APPLE_APP_APPLE_ID = None
    with pytest.raises(Rejected) as exc:
        adapter.authenticate({}, signed_body(apple_chain, claims), {})
    assert exc.value.status == 503  # our configuration: Apple retries once it is fixed
    assert "APPLE_APP_APPLE_ID" in exc.value.reason


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.django_db
def test_unreachable_revocation_check_is_a_503_so_apple_retries(apple_settings, client, tmp_path,
                                                                django_capture_on_commit_callbacks):
    chain = AppleChain(name="OCSP", ocsp_url=f"http://127.0.0.1:{_closed_port()}/ocsp")
    root = tmp_path / "ocsp-root.cer"
    root.write_bytes(chain.root_der)
    apple_settings.APPLE_ROOT_CERTIFICATES = [str(root)]
    apple_settings.APPLE_ONLINE_CHECKS = True
    body = signed_body(chain, _subscribed(chain))

    with pytest.raises(TransientError):
        AppleAdapter().authenticate({}, body, {})
    response = _post(client, body, django_capture_on_commit_callbacks)
    assert response.status_code == 503
    assert not WebhookEvent.objects.exists()


@pytest.mark.django_db
def test_end_to_end_purchase_reaches_the_stream_for_the_user(apple_settings, apple_chain, client, redis_client,
                                                             django_capture_on_commit_callbacks):
    txn = transaction_claims(original_transaction_id="2000000000000555",
                             app_account_token=app_account_token_for_user(77))
    claims = notification_claims("SUBSCRIBED", "INITIAL_BUY", chain=apple_chain, transaction=txn,
                                 renewal=renewal_claims(txn))
    response = _post(client, signed_body(apple_chain, claims), django_capture_on_commit_callbacks)
    assert response.status_code == 200
    events = [json.loads(f["event"]) for _, f in redis_client.xrange(settings.BILLING_EVENTS_STREAM)]
    assert [(e["userId"], e["newStatus"], e["provider"], e["subscriptionId"], e["environment"]) for e in events] == [
        ("77", "ACTIVE", "apple", "2000000000000555", "sandbox")]


def test_unreadable_root_file_is_a_503_naming_the_setting(apple_settings, apple_chain, adapter, tmp_path):
    broken = tmp_path / "broken.cer"
    broken.write_bytes(b"not a certificate")
    apple_settings.APPLE_ROOT_CERTIFICATES = [str(broken)]
    with pytest.raises(Rejected) as exc:
        adapter.authenticate({}, signed_body(apple_chain, _subscribed(apple_chain)), {})
    assert exc.value.status == 503
    assert "APPLE_ROOT_CERTIFICATES" in exc.value.reason
