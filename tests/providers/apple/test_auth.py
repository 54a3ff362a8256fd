"""Authenticity of what the App Store sends (auth.py): our own chain signs like Apple and Apple's real
sandbox captures verify against its shipped roots; anything else is rejected with a clear reason and
nothing is stored. The endpoint's answers, and the system checks that keep the roots and the unsigned
environments honest."""

import base64
import json
from pathlib import Path

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from django.conf import settings as django_settings
from django.core import checks

from billing.models import Subscription
from billing.providers.apple import auth
from billing.providers.base import Rejected, TransientError
from tests.fakes.apple import (
    REAL_CAPTURES,
    REAL_ORIGINAL_TRANSACTION_ID,
    AppleChain,
    notification_claims,
    now_ms,
    real_body,
    renewal_claims,
    signed_body,
    transaction_claims,
)
from tests.helpers import closed_port, deliver, drain
from webhooks.models import WebhookEvent

HMAC_SECRET = "a-shared-secret-of-at-least-32-bytes!"
G3_SHA256 = "63:34:3A:BF:B8:9A:6A:03:EB:B5:7E:9B:3F:5F:A7:BE:7C:4F:5C:75:6F:30:17:B3:A8:C4:88:C3:65:3E:91:79"
ALL_REAL = sorted(p.name for p in REAL_CAPTURES.glob("*.json"))


def _subscribed(chain, *, environment="Sandbox", txn_environment=None, bundle_id=None, **kw):
    txn = transaction_claims(environment=txn_environment or environment,
                             **({"bundle_id": bundle_id} if bundle_id else {}))
    return notification_claims("SUBSCRIBED", "INITIAL_BUY", chain=chain, transaction=txn,
                               renewal=renewal_claims(txn), environment=environment,
                               **({"bundle_id": bundle_id} if bundle_id else {}), **kw)


# --- Our chain, through the endpoint and the adapter ------------------------------------------

@pytest.mark.django_db
def test_genuine_notification_is_accepted_and_processed(apple_settings, apple_chain):
    claims = _subscribed(apple_chain)
    delivered = deliver("apple", signed_body(apple_chain, claims))
    assert delivered.response.status_code == 200
    event = WebhookEvent.objects.get(provider="apple")
    assert event == delivered.event
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
        apple_settings, apple_chain, case):
    body, status, code = _cases(apple_chain)[case]
    delivered = deliver("apple", body)
    assert delivered.response.status_code == status, delivered.response.content
    error = delivered.response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    assert delivered.event is None
    assert not WebhookEvent.objects.exists()
    assert not Subscription.objects.exists()


# --- The nested signed transaction and renewal: checked on arrival, verified by processing ----------
#
# The answer path verifies the notification, whose signature covers the nested JWS's bytes, and checks
# their claims as the library does (bundle id, environment); their own signatures and chains are verified
# when the event is processed, before anything is applied (auth.verify_notification, adapter.parse).

def _nested_by(chain: AppleChain, signer: AppleChain, *, tamper: bool = False) -> bytes:
    """A notification signed by `chain` whose nested transaction and renewal are signed by `signer`
    (`tamper`: the transaction's claims changed after it was signed)."""
    txn = transaction_claims()
    claims = notification_claims("SUBSCRIBED", "INITIAL_BUY", chain=signer, transaction=txn,
                                 renewal=renewal_claims(txn))
    if tamper:
        header, _, signature = claims["data"]["signedTransactionInfo"].split(".")
        forged = base64.urlsafe_b64encode(json.dumps({**txn, "expiresDate": txn["expiresDate"] * 2}).encode())
        claims["data"]["signedTransactionInfo"] = f"{header}.{forged.rstrip(b'=').decode()}.{signature}"
    return signed_body(chain, claims)


@pytest.mark.django_db
@pytest.mark.parametrize("case", ["nested data signed by a stranger", "nested transaction tampered"])
def test_nested_data_that_does_not_verify_fails_the_event_and_changes_nothing(apple_settings, apple_chain, case,
                                                                              caplog):
    stranger = AppleChain(name="Stranger")
    body = (_nested_by(apple_chain, stranger) if case == "nested data signed by a stranger"
            else _nested_by(apple_chain, apple_chain, tamper=True))
    delivered = deliver("apple", body)
    assert delivered.response.status_code == 200  # the notification is Apple's: stored, and Apple stops retrying
    event = delivered.event
    assert event.status == WebhookEvent.Status.FAILED
    assert "nested signed data does not" in event.error and "VERIFICATION_FAILURE" in event.error
    assert not Subscription.objects.exists()
    assert any("VERIFICATION_FAILURE" in r.getMessage() or "VERIFICATION_FAILURE" in str(r.exc_info)
               for r in caplog.records if r.levelname in ("WARNING", "ERROR"))


@pytest.mark.django_db
def test_nested_transaction_for_another_app_is_refused_on_arrival(apple_settings, apple_chain):
    txn = transaction_claims(bundle_id="com.example.other")
    claims = notification_claims("SUBSCRIBED", "INITIAL_BUY", chain=apple_chain, transaction=txn,
                                 renewal=renewal_claims(txn))
    delivered = deliver("apple", signed_body(apple_chain, claims))
    assert delivered.response.status_code == 400
    assert delivered.response.json()["error"]["code"] == "invalid_app_identifier"
    assert "signedTransactionInfo" in delivered.response.json()["error"]["message"]
    assert not WebhookEvent.objects.exists()


@pytest.mark.django_db
def test_nested_renewal_from_another_environment_is_refused_on_arrival(apple_settings, apple_chain):
    txn = transaction_claims()
    claims = notification_claims("SUBSCRIBED", "INITIAL_BUY", chain=apple_chain, transaction=txn,
                                 renewal=renewal_claims(txn, environment="Production"))
    delivered = deliver("apple", signed_body(apple_chain, claims))
    assert delivered.response.status_code == 400
    assert delivered.response.json()["error"]["code"] == "invalid_environment"
    assert "signedRenewalInfo" in delivered.response.json()["error"]["message"]
    assert not WebhookEvent.objects.exists()


def test_nested_data_that_is_no_ordinary_jws_is_verified_on_arrival(apple_settings, apple_chain, adapter):
    """Not an ordinary compact JWS (padded base64): verified in full on arrival, as before: refused."""
    txn = transaction_claims()
    claims = notification_claims("SUBSCRIBED", "INITIAL_BUY", chain=AppleChain(name="Stranger"), transaction=txn)
    header, payload, signature = claims["data"]["signedTransactionInfo"].split(".")
    claims["data"]["signedTransactionInfo"] = f"{header}.{payload}{'=' * (-len(payload) % 4) or '=='}.{signature}"
    with pytest.raises(Rejected) as exc:
        adapter.authenticate({}, signed_body(apple_chain, claims), {})
    assert "signedTransactionInfo" in exc.value.reason


@pytest.mark.django_db
def test_nested_revocation_check_unreachable_at_processing_is_retried(apple_settings, apple_chain, tmp_path):
    """The notification verified on arrival; when processing cannot reach the OCSP responder for the
    nested data, the event waits for a retry (not failed)."""
    ocsp = AppleChain(name="OCSP", ocsp_url=f"http://127.0.0.1:{closed_port()}/ocsp")
    body = _nested_by(apple_chain, ocsp)
    delivered = deliver("apple", body, process=False)
    assert delivered.response.status_code == 200
    roots = tmp_path / "roots"
    roots.mkdir()
    (roots / "ocsp-root.cer").write_bytes(ocsp.root_der)
    apple_settings.APPLE_ROOT_CERTIFICATES = [*apple_settings.APPLE_ROOT_CERTIFICATES, str(roots / "ocsp-root.cer")]
    apple_settings.APPLE_ONLINE_CHECKS = True
    drain()
    delivered.event.refresh_from_db()
    assert delivered.event.status == WebhookEvent.Status.RECEIVED
    assert delivered.event.attempts == 1 and delivered.event.next_attempt_at is not None
    assert not Subscription.objects.exists()


def test_a_jws_segment_is_read_only_when_canonical_as_pyjwt_reads_it():
    """auth._segment takes the short way only for unpadded, canonical base64url (what re-encoding its bytes
    gives back); every other segment is left to pyjwt's own decoding and verdict (None)."""
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

    def canonical(segment: bytes) -> bytes | None:
        if len(segment) % 4 == 1 or not set(segment) <= set(alphabet):
            return None
        decoded = base64.urlsafe_b64decode(segment + b"=" * (-len(segment) % 4))
        return decoded if base64.urlsafe_b64encode(decoded).rstrip(b"=") == segment else None

    ends = [bytes([a, b]) for a in b"AB-_" for b in alphabet] + [bytes([c]) for c in alphabet]
    for prefix in (b"", b"eyJh", b"eyJhbGciOiJFUzI1"):
        for end in [*ends, b"", b"=", b"A=", b"+", b"/", b"AA==", b"A.A"]:
            assert auth._segment(prefix + end) == canonical(prefix + end), prefix + end


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
def test_unsigned_environments_stay_refused_without_debug_even_when_allowed(apple_settings, apple_chain):
    """Defence in depth: the setting copied into a production environment (DEBUG off) opens nothing."""
    apple_settings.APPLE_ALLOW_UNSIGNED_ENVIRONMENTS = True
    apple_settings.DEBUG = False
    response = deliver("apple", _unsigned_body(apple_chain, "LocalTesting")).response
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


@pytest.mark.django_db
def test_unreachable_revocation_check_is_a_503_so_apple_retries(apple_settings, adapter, tmp_path):
    chain = AppleChain(name="OCSP", ocsp_url=f"http://127.0.0.1:{closed_port()}/ocsp")
    root = tmp_path / "ocsp-root.cer"
    root.write_bytes(chain.root_der)
    apple_settings.APPLE_ROOT_CERTIFICATES = [str(root)]
    apple_settings.APPLE_ONLINE_CHECKS = True
    body = signed_body(chain, _subscribed(chain))

    with pytest.raises(TransientError):
        adapter.authenticate({}, body, {})
    assert deliver("apple", body).response.status_code == 503
    assert not WebhookEvent.objects.exists()


def test_unreadable_root_file_is_a_503_naming_the_setting(apple_settings, apple_chain, adapter, tmp_path):
    broken = tmp_path / "broken.cer"
    broken.write_bytes(b"not a certificate")
    apple_settings.APPLE_ROOT_CERTIFICATES = [str(broken)]
    with pytest.raises(Rejected) as exc:
        adapter.authenticate({}, signed_body(apple_chain, _subscribed(apple_chain)), {})
    assert exc.value.status == 503
    assert "APPLE_ROOT_CERTIFICATES" in exc.value.reason


# --- Apple's real sandbox captures against its shipped roots -------------------------------------

def test_the_shipped_g3_root_is_apples_and_the_default():
    g3 = next(p for p in django_settings.APPLE_ROOT_CERTIFICATES if p.endswith("AppleRootCA-G3.cer"))
    der = Path(g3).read_bytes()
    assert auth.sha256_fingerprint(der) == auth.APPLE_ROOT_CA_G3_SHA256
    assert auth.APPLE_ROOT_CA_G3_SHA256 == G3_SHA256
    # Every shipped root loads (DER as shipped).
    assert len(auth.load_root_certificates(django_settings.APPLE_ROOT_CERTIFICATES)) == 3


@pytest.mark.parametrize("name", ALL_REAL)
def test_real_notification_verifies_against_the_g3_root(real_apple_settings, adapter, name):
    event = adapter.authenticate({}, real_body(name), {})
    assert event.environment == "sandbox"
    assert REAL_ORIGINAL_TRANSACTION_ID in event.store_ids
    # The nested JWS were verified and decoded too; nothing of them is left unverified in the payload.
    assert event.payload["transaction"]["originalTransactionId"] == REAL_ORIGINAL_TRANSACTION_ID
    assert "signedTransactionInfo" not in event.payload["notification"]["data"]
    assert event.event_type.split("/")[0] in name


def test_real_notification_is_rejected_when_the_roots_do_not_include_apples(real_apple_settings, adapter, tmp_path):
    other = tmp_path / "testCA.der"
    other.write_bytes(AppleChain().root_der)
    real_apple_settings.APPLE_ROOT_CERTIFICATES = [str(other)]
    with pytest.raises(Rejected) as exc:
        adapter.authenticate({}, real_body("seq1_e00_SUBSCRIBED_RESUBSCRIBE.json"), {})
    assert exc.value.code == "verification_failure"
    assert "VERIFICATION_FAILURE" in exc.value.reason


def test_real_notification_for_another_bundle_is_rejected(real_apple_settings, adapter):
    real_apple_settings.APPLE_BUNDLE_ID = "com.example.someone-else"
    with pytest.raises(Rejected) as exc:
        adapter.authenticate({}, real_body("sandbox_01_DID_RENEW.json"), {})
    assert exc.value.code == "invalid_app_identifier"


# --- System checks (what `manage.py check`, and with it every server start, reports) -----------

def _billing_messages() -> dict:
    return {m.id: m for m in checks.run_checks(tags=["billing"])}


@pytest.mark.parametrize(("allow", "debug", "error"), [
    (True, False, True),
    (True, True, False),  # a developer's machine
    (False, False, False),
])
def test_unsigned_environments_are_an_error_outside_debug(settings, allow, debug, error):
    settings.APPLE_ALLOW_UNSIGNED_ENVIRONMENTS = allow
    settings.DEBUG = debug
    message = _billing_messages().get("billing.E_APPLE_UNSIGNED_ENVIRONMENTS")
    assert (message is not None) == error
    if error:
        assert message.level == checks.ERROR and message.is_serious()
        assert "APPLE_ALLOW_UNSIGNED_ENVIRONMENTS" in message.msg and "DEBUG" in message.msg


def test_the_shipped_roots_pass(settings):
    settings.APPLE_ROOT_CERTIFICATES = [str(auth.SHIPPED_ROOTS_DIR / name) for name in (
        "AppleRootCA-G3.cer", "AppleRootCA-G2.cer", "AppleIncRootCertificate.cer")]
    found = _billing_messages()
    assert not {"billing.E_APPLE_G3_ROOT", "billing.W_APPLE_G3_ROOT", "billing.E_APPLE_ROOT_CERTIFICATES"} & set(found)


def test_the_shipped_g3_file_is_the_pinned_one():
    assert auth.SHIPPED_G3_ROOT.name == "AppleRootCA-G3.cer"
    assert auth.APPLE_ROOT_CA_G3_SHA256 == G3_SHA256
    assert auth.roots_check(shipped_g3=auth.SHIPPED_G3_ROOT, configured=[str(auth.SHIPPED_G3_ROOT)]) == []


def test_a_replaced_g3_file_is_an_error_naming_both_fingerprints(apple_chain, tmp_path):
    impostor = tmp_path / "AppleRootCA-G3.cer"
    impostor.write_bytes(apple_chain.root_der)
    (message,) = [m for m in auth.roots_check(shipped_g3=impostor, configured=[str(auth.SHIPPED_G3_ROOT)])
                  if m.id == "billing.E_APPLE_G3_ROOT"]
    assert message.level == checks.ERROR
    assert G3_SHA256 in message.msg and auth.sha256_fingerprint(apple_chain.root_der) in message.msg


def test_a_missing_g3_file_is_an_error(tmp_path):
    messages = auth.roots_check(shipped_g3=tmp_path / "gone.cer", configured=[str(auth.SHIPPED_G3_ROOT)])
    assert [(m.id, m.level) for m in messages] == [("billing.E_APPLE_G3_ROOT", checks.ERROR)]
    assert "cannot be read" in messages[0].msg


def test_configured_roots_without_g3_warn(settings, apple_root_file):
    settings.APPLE_ROOT_CERTIFICATES = [apple_root_file]  # e.g. a test root left in a deployment
    message = _billing_messages()["billing.W_APPLE_G3_ROOT"]
    assert message.level == checks.WARNING and G3_SHA256 in message.msg

    settings.APPLE_ROOT_CERTIFICATES = [apple_root_file, str(auth.SHIPPED_G3_ROOT)]
    assert "billing.W_APPLE_G3_ROOT" not in _billing_messages()


def test_configured_g3_as_pem_counts(settings, tmp_path):
    pem = tmp_path / "g3.pem"
    pem.write_bytes(x509.load_der_x509_certificate(auth.SHIPPED_G3_ROOT.read_bytes()).public_bytes(Encoding.PEM))
    settings.APPLE_ROOT_CERTIFICATES = [str(pem)]
    assert "billing.W_APPLE_G3_ROOT" not in _billing_messages()


def test_unreadable_configured_root_is_an_error(settings, tmp_path):
    broken = tmp_path / "broken.cer"
    broken.write_bytes(b"not a certificate")
    settings.APPLE_ROOT_CERTIFICATES = [str(broken)]
    message = _billing_messages()["billing.E_APPLE_ROOT_CERTIFICATES"]
    assert message.level == checks.ERROR and str(broken) in message.msg
