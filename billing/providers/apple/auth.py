"""Webhook authentication for the App Store: Apple's signed data (JWS) → verified, decoded claims, and a
notification's body → the VerifiedEvent to store (`webhook_authenticate`).

One `SignedDataVerifier` per environment (sandbox and production notifications arrive at the same URL):
the unverified environment is only peeked at to pick the verifier, which then checks the signature, the
certificate chain up to the configured roots, the bundle id, the app Apple id (production) and that the
environment really is that one. Xcode and LocalTesting data carry no App Store signature (the library
skips every check for them): accepted only when APPLE_ALLOW_UNSIGNED_ENVIRONMENTS and DEBUG are both on
(a developer's machine; the system check `unsigned_environments_check` makes the setting without DEBUG
a startup error too). The same verifiers check a StoreKit purchase sent for verification and the App
Store Server API's own signed answers.

A notification's nested signed transaction and renewal info are covered by its signature: the webhook's
answer checks their claims (bundle id, environment), and processing verifies their own signatures and
chains before anything is applied (`verify_notification`, `nested_verified`; docs/providers/apple.md).

A body that is not a JSON document cannot be authentic (the signature is inside it): 400. Signed claims
that are not JSON (the library reads them before the signature) are checked without reading them
(`_signed_by_apple`): Apple's are Undecodable (stored as failed), anyone else's refused."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import NoReturn

import jwt
from appstoreserverlibrary.models.Environment import Environment as AppleEnvironment
from appstoreserverlibrary.signed_data_verifier import (
    SignedDataVerifier,
    VerificationException,
    VerificationStatus,
    _ChainVerifier,
)
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, load_pem_public_key
from django.conf import settings
from django.core.checks import Error, Warning
from django.core.exceptions import ImproperlyConfigured
from jwt.algorithms import get_default_algorithms

from billing.providers.base import (
    NotConfigured,
    Rejected,
    StoreUnavailable,
    TransientError,
    Undecodable,
    VerifiedEvent,
)
from billing.providers.common import datetime_from_millis, json_decode
from billing.snapshots import Environment

from . import mapping

logger = logging.getLogger(__name__)

# SHA-256 of Apple Root CA - G3, the root of every App Store signature (pinned: a system check
# compares the shipped file with it at every start, `roots_check` below).
APPLE_ROOT_CA_G3_SHA256 = (
    "63:34:3A:BF:B8:9A:6A:03:EB:B5:7E:9B:3F:5F:A7:BE:7C:4F:5C:75:6F:30:17:B3:A8:C4:88:C3:65:3E:91:79")
SHIPPED_ROOTS_DIR = Path(__file__).resolve().parent.parent / "apple_roots"
SHIPPED_G3_ROOT = SHIPPED_ROOTS_DIR / "AppleRootCA-G3.cer"

SIGNED_ENVIRONMENTS = {"Production": AppleEnvironment.PRODUCTION, "Sandbox": AppleEnvironment.SANDBOX}
UNSIGNED_ENVIRONMENTS = {"Xcode": AppleEnvironment.XCODE, "LocalTesting": AppleEnvironment.LOCAL_TESTING}

_EXPLANATIONS = {
    VerificationStatus.VERIFICATION_FAILURE: "the signature or its certificate chain is not valid (not rooted in "
                                             "the configured Apple roots, tampered with, or signed outside the "
                                             "certificates' validity)",
    VerificationStatus.INVALID_APP_IDENTIFIER: "it is for another app (the bundle id or app Apple id is not "
                                               "APPLE_BUNDLE_ID / APPLE_APP_APPLE_ID)",
    VerificationStatus.INVALID_CERTIFICATE: "a certificate of its chain (or a configured root) cannot be read",
    VerificationStatus.INVALID_CHAIN_LENGTH: "its x5c header does not hold exactly three certificates",
    VerificationStatus.INVALID_CHAIN: "its certificate chain is not valid",
    VerificationStatus.INVALID_ENVIRONMENT: "its environment does not match the environment it claims",
    VerificationStatus.RETRYABLE_VERIFICATION_FAILURE: "the certificate revocation check (OCSP) could not reach "
                                                       "Apple",
}


class NotTrusted(Exception):
    """Signed data that is not authentic, not ours, or not acceptable here. A retry cannot fix it."""

    def __init__(self, message: str, *, code: str):
        self.code = code
        super().__init__(message)


class RetryLater(Exception):
    """Verification could not complete (the OCSP responder did not answer): retry later."""


@dataclass(frozen=True)
class VerifiedNotification:
    claims: dict  # the notification, without the nested JWS strings (their decoded content is below)
    transaction: dict | None
    renewal: dict | None
    apple_environment: str  # "Production", "Sandbox", "Xcode", "LocalTesting"

    @property
    def environment(self) -> str:
        return environment_of(self.apple_environment)


def environment_of(apple_environment: str | None) -> str:
    """Our two environments: everything that is not Apple's production is a sandbox."""
    return Environment.PRODUCTION if apple_environment == "Production" else Environment.SANDBOX


def apple_environment_of(environment: str) -> str:
    """The App Store (API) environment of one of ours: "Production" or "Sandbox"."""
    return "Production" if environment == Environment.PRODUCTION else "Sandbox"


def unsigned_environments_allowed() -> bool:
    """Xcode / LocalTesting data (no signature at all) is accepted only on a development machine: the
    setting alone is not enough, DEBUG must be on too (a production .env copied with it set stays safe)."""
    return bool(settings.APPLE_ALLOW_UNSIGNED_ENVIRONMENTS and settings.DEBUG)


# --- Roots and verifiers ----------------------------------------------------------------------

def load_root_certificates(paths) -> list[bytes]:
    """The configured root files as DER bytes (the library rejects PEM: convert it here)."""
    roots: list[bytes] = []
    for path in paths:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise ImproperlyConfigured(f"APPLE_ROOT_CERTIFICATES: cannot read {path}: {exc}") from exc
        try:
            if b"-----BEGIN" in data:
                roots.extend(c.public_bytes(Encoding.DER) for c in x509.load_pem_x509_certificates(data))
            else:
                roots.append(x509.load_der_x509_certificate(data).public_bytes(Encoding.DER))
        except ValueError as exc:
            raise ImproperlyConfigured(f"APPLE_ROOT_CERTIFICATES: {path} is not a DER or PEM certificate") from exc
    return roots


def sha256_fingerprint(der: bytes) -> str:
    return ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


# --- Verifying once per JWS, a chain once per certificate chain --------------------------------
#
# The library decodes each JWS three times with pyjwt before it verifies it (claims, header, then the
# verified decode), and pyjwt checks every character of a segment in Python: for a notification (its
# payload holds the signed transaction and renewal) that was half the CPU of its webhook. And without
# online checks it verifies the certificate chain (OpenSSL, three certificates parsed) for every JWS,
# although App Store notifications are all signed by the same few leaf certificates.

_B64URL = re.compile(rb"[A-Za-z0-9_-]*")
_ES256 = get_default_algorithms()["ES256"]
# The claims pyjwt's decode validates (times, audience, issuer, subject, id): with none of them in a
# JWS, its decode is the signature check and the JSON of the claims.
_REGISTERED_CLAIMS = frozenset({"exp", "nbf", "iat", "aud", "iss", "sub", "jti"})


# Canonical base64url ends, by the length's remainder mod 4, with a character whose unused low bits are
# zero (2: 4 bits, 3: 2 bits): what re-encoding the decoded bytes would give back.
_CANONICAL_LAST = {0: None, 2: frozenset(b"AQgw"), 3: frozenset(b"AEIMQUYcgkosw048")}


def _segment(segment: bytes) -> bytes | None:
    """A JWS segment decoded when pyjwt would accept it as is (unpadded, canonical base64url); None
    for anything else (the caller then leaves the verdict to pyjwt)."""
    last = _CANONICAL_LAST.get(len(segment) % 4, ())
    if last == () or not _B64URL.fullmatch(segment) or (last is not None and segment[-1] not in last):
        return None
    return base64.urlsafe_b64decode(segment + b"=" * (-len(segment) % 4))


# The last JWS parsed, per thread: a notification's signedPayload is read to pick its verifier, then
# verified (and a nested JWS verified, then read): one parse each. Keyed by the very string object.
_last_parsed = threading.local()


def jws_parts(jws) -> tuple[dict, dict] | None:
    """(header, claims) of a JWS, unverified, when it is an ordinary compact JWS with JSON objects in
    both; None when it is not (pyjwt then decides, with its own error). Read-only: the dicts of the
    last JWS parsed on this thread are handed out again for the same string."""
    last = getattr(_last_parsed, "value", None)
    if last is not None and last[0] is jws:
        return last[1]
    parts = _jws_parts(jws)
    _last_parsed.value = (jws, parts)
    return parts


def _jws_parts(jws) -> tuple[dict, dict] | None:
    if not isinstance(jws, str) or not jws.isascii():
        return None
    parts = jws.encode().split(b".")
    if len(parts) != 3 or any(_segment(part) is None for part in parts[2:]):
        return None
    raw_header, raw_claims = _segment(parts[0]), _segment(parts[1])
    if raw_header is None or raw_claims is None:
        return None
    try:
        header, claims = json.loads(raw_header), json.loads(raw_claims)
    except (ValueError, RecursionError):
        return None
    if (not isinstance(header, dict) or not isinstance(claims, dict) or not isinstance(header.get("kid", ""), str)
            or "crit" in header or "b64" in header):  # pyjwt's own header rules for those
        return None
    return header, claims


class _Verifier(SignedDataVerifier):
    """The library's verifier, its `_decode_signed_object` doing the same steps with one pyjwt decode
    (the verified one) instead of three; anything unusual goes to the library's own code."""

    def __init__(self, root_certificates: list[bytes], enable_online_checks: bool, *args, **kwargs):
        super().__init__(root_certificates, enable_online_checks, *args, **kwargs)
        self._chain_verifier = _CachingChainVerifier(root_certificates)

    def _decode_signed_object(self, signed_obj: str) -> dict:
        parts = jws_parts(signed_obj)
        if parts is None or self._environment in (AppleEnvironment.XCODE, AppleEnvironment.LOCAL_TESTING):
            return super()._decode_signed_object(signed_obj)
        header, claims = parts
        try:  # as the library (3.1.2): its checks, its effective date, its errors
            x5c = header.get("x5c")
            if x5c is None or len(x5c) == 0:
                raise ValueError("x5c claim was empty")
            if header.get("alg") != "ES256":
                raise ValueError("Algorithm was not ES256")
            signed_date = claims.get("signedDate") if claims.get("signedDate") is not None else claims.get(
                "receiptCreationDate")
            effective_date = (time.time() if self._enable_online_checks or signed_date is None
                              else int(signed_date) // 1000)
            key = self._chain_verifier.verify_chain(x5c, self._enable_online_checks, effective_date)
            if _REGISTERED_CLAIMS.isdisjoint(claims):
                # What jwt.decode does here (App Store claims hold none of the claims it validates): the
                # ES256 signature over the signing input, by pyjwt's own algorithm, without decoding the
                # segments a fourth time.
                signing_input, _, signature = signed_obj.encode().rpartition(b".")
                if not _ES256.verify(signing_input, _ES256.prepare_key(key), _segment(signature)):
                    raise jwt.InvalidSignatureError("Signature verification failed")
                return claims
            return jwt.decode(signed_obj, key, algorithms=["ES256"])
        except VerificationException:
            raise
        except Exception as exc:
            raise VerificationException(VerificationStatus.VERIFICATION_FAILURE) from exc


class _CachingChainVerifier(_ChainVerifier):
    """Without online checks, a chain that verified is remembered (its leaf's public key, loaded) with the
    dates at which all of its certificates and the configured roots are valid: the same chain at a date
    inside them verifies the same, at any other date OpenSSL judges again. With online checks, the
    library's own cache (OCSP answers for 15 minutes)."""

    MAX_CHAINS = 32  # Apple signs with a few leaf certificates at a time

    def __init__(self, root_certificates: list[bytes], enable_strict_checks: bool = True):
        super().__init__(root_certificates, enable_strict_checks)
        self._lock = threading.Lock()
        self._chains: dict[tuple[str, ...], tuple[object, float, float]] = {}
        self._roots_valid = _validity([x509.load_der_x509_certificate(der) for der in root_certificates])

    def verify_chain(self, certificates, perform_online_checks: bool, effective_date):
        if perform_online_checks:
            return super().verify_chain(certificates, perform_online_checks, effective_date)
        key = tuple(certificates) if isinstance(certificates, list) else None
        cached = self._chains.get(key) if key else None
        if cached is not None and cached[1] <= effective_date <= cached[2]:
            return cached[0]
        pem = super().verify_chain(certificates, perform_online_checks, effective_date)
        if key:
            start, end = _validity([x509.load_der_x509_certificate(base64.b64decode(c)) for c in certificates[:2]],
                                   self._roots_valid)
            if start <= end:
                with self._lock:
                    if len(self._chains) >= self.MAX_CHAINS:
                        self._chains.clear()
                    self._chains[key] = (load_pem_public_key(pem.encode()), start, end)
        return pem


def _validity(certificates, within: tuple[float, float] = (float("-inf"), float("inf"))) -> tuple[float, float]:
    """The dates (POSIX seconds) at which every certificate is valid, inside `within`."""
    start, end = within
    for cert in certificates:
        start = max(start, cert.not_valid_before_utc.timestamp())
        end = min(end, cert.not_valid_after_utc.timestamp())
    return start, end


@lru_cache(maxsize=16)
def _verifier(apple_environment: str, roots: tuple[str, ...], bundle_id: str, app_apple_id: int | None,
              online_checks: bool) -> SignedDataVerifier:
    # Cached: its chain verifier remembers the chains it verified (with online checks: for 15 minutes).
    env = {**SIGNED_ENVIRONMENTS, **UNSIGNED_ENVIRONMENTS}[apple_environment]
    return _Verifier(load_root_certificates(roots), online_checks, env, bundle_id,
                     app_apple_id if env == AppleEnvironment.PRODUCTION else None)


def verifier_for(apple_environment: str | None) -> SignedDataVerifier:
    """The verifier for data that says it is from `apple_environment` (raises NotTrusted if that
    environment is not accepted here, NotConfigured if it cannot be verified with this configuration)."""
    if apple_environment in UNSIGNED_ENVIRONMENTS and not unsigned_environments_allowed():
        if settings.APPLE_ALLOW_UNSIGNED_ENVIRONMENTS:
            why = ("APPLE_ALLOW_UNSIGNED_ENVIRONMENTS is on but DEBUG is off, and unsigned data is never accepted "
                   "outside development")
        else:
            why = "set APPLE_ALLOW_UNSIGNED_ENVIRONMENTS=true with DEBUG=true, on a development machine only"
        raise NotTrusted(f"Apple environment {apple_environment} is not accepted: its data carries no App Store "
                         f"signature ({why}).", code="unsigned_environment")
    if apple_environment not in SIGNED_ENVIRONMENTS and apple_environment not in UNSIGNED_ENVIRONMENTS:
        raise NotTrusted(f"Unknown Apple environment {apple_environment!r}.", code="unknown_environment")
    if not settings.APPLE_BUNDLE_ID:
        raise NotConfigured("apple", ["APPLE_BUNDLE_ID"])
    if apple_environment == "Production" and settings.APPLE_APP_APPLE_ID is None:
        raise NotConfigured("apple", ["APPLE_APP_APPLE_ID"])
    try:
        return _verifier(apple_environment, tuple(settings.APPLE_ROOT_CERTIFICATES), settings.APPLE_BUNDLE_ID,
                         settings.APPLE_APP_APPLE_ID, bool(settings.APPLE_ONLINE_CHECKS))
    except ImproperlyConfigured as exc:
        logger.error("Apple roots unusable: %s", exc)
        raise NotConfigured("apple", ["APPLE_ROOT_CERTIFICATES"]) from exc


# --- Verifying --------------------------------------------------------------------------------

def peek(jws: str, *, what: str) -> dict:
    """The claims of a JWS WITHOUT verifying it: only to choose the verifier, or after verification."""
    if not isinstance(jws, str) or not jws:
        raise NotTrusted(f"The {what} is missing or not a string.", code="malformed")
    parts = jws_parts(jws)
    if parts is not None:
        return parts[1]
    try:
        claims = jwt.decode(jws, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise NotTrusted(f"The {what} is not a JWS: {exc}", code="malformed") from exc
    if not isinstance(claims, dict):
        raise NotTrusted(f"The {what} does not hold a JSON object.", code="malformed")
    return claims


def _checked(call, jws: str, *, what: str):
    try:
        return call(jws)
    except VerificationException as exc:
        _refuse(exc, what=what)


def _refuse(exc: VerificationException, *, what: str) -> NoReturn:
    explanation = _EXPLANATIONS.get(exc.status, "it could not be verified")
    if exc.status == VerificationStatus.RETRYABLE_VERIFICATION_FAILURE:
        raise RetryLater(f"Apple {what} not verified yet ({exc.status.name}): {explanation}") from exc
    raise NotTrusted(f"Apple {what} rejected ({exc.status.name}): {explanation}.",
                     code=exc.status.name.lower()) from exc


def notification_environment(claims: dict) -> str | None:
    for part in ("data", "summary", "appData"):
        if isinstance(claims.get(part), dict):
            return claims[part].get("environment")
    token = claims.get("externalPurchaseToken")
    if isinstance(token, dict):
        return "Sandbox" if str(token.get("externalPurchaseId") or "").startswith("SANDBOX") else "Production"
    return None


def _claims_undecodable(jws: str) -> str:
    """Why a JWS's claims are not JSON ("" if they are, or it is no JWS at all)."""
    parts = jws.split(".")
    try:
        json_decode(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)), what="The signed content")
    except Undecodable as exc:
        return exc.reason if len(parts) == 3 else ""
    except (binascii.Error, ValueError, IndexError):
        pass
    return ""


def _signed_by_apple(jws: str) -> bool:
    """The JWS's signature and chain (up to the configured roots, valid now), its claims left unread: the
    library's chain verifier (the same roots for every environment), then pyjwt over the raw claims."""
    try:
        header = jwt.get_unverified_header(jws)
        if header.get("alg") != "ES256" or not isinstance(header.get("x5c"), list):
            return False
        key = verifier_for("Sandbox")._chain_verifier.verify_chain(
            header["x5c"], bool(settings.APPLE_ONLINE_CHECKS), int(time.time()))
        jwt.PyJWS().decode(jws, key, algorithms=["ES256"])  # the claims as bytes: nothing parsed
    except (VerificationException, jwt.PyJWTError, ValueError, TypeError, RecursionError):
        return False
    return True


def _raise_if_signed_undecodable(jws) -> None:
    """Undecodable if Apple signed this JWS and its claims are not JSON (else the caller's error stands)."""
    why = _claims_undecodable(jws) if isinstance(jws, str) else ""
    if why and _signed_by_apple(jws):
        raise Undecodable(why)


def _notification_claims(signed_payload: str) -> dict:
    """The claims, unverified (to choose the verifier); Undecodable when Apple signed non-JSON claims."""
    try:
        return peek(signed_payload, what="signedPayload")
    except (NotTrusted, RecursionError) as exc:
        _raise_if_signed_undecodable(signed_payload)
        if isinstance(exc, NotTrusted):
            raise
        raise NotTrusted("The signedPayload's claims are not JSON.", code="malformed") from None


def verify_notification(signed_payload: str, *, nested_signatures: bool = True) -> VerifiedNotification:
    """Verify a notification's signedPayload and its nested signed transaction and renewal info.

    `nested_signatures=False` (the webhook's answer path): the nested JWS's own signatures and chains are
    left to processing (`nested_verified`). The notification's signature covers their bytes, so once it
    verifies they are Apple's; their claims are read and checked here as the library checks them after
    verifying (the transaction's bundle id, both environments). A nested JWS that is not an ordinary one
    (its claims unreadable as a JSON object) is verified here in full, as before, so it gets the same
    verdict (Undecodable when Apple signed claims that are not JSON, refused otherwise)."""
    claims = _notification_claims(signed_payload)
    apple_environment = notification_environment(claims)
    verifier = verifier_for(apple_environment)
    _checked(verifier.verify_and_decode_notification, signed_payload, what="notification")
    data = claims.get("data") if isinstance(claims.get("data"), dict) else None
    transaction = renewal = None
    if data is not None:
        covered = not nested_signatures and apple_environment in SIGNED_ENVIRONMENTS
        try:
            if data.get("signedTransactionInfo"):
                transaction = _nested(verifier, data["signedTransactionInfo"], renewal=False, covered=covered)
            if data.get("signedRenewalInfo"):
                renewal = _nested(verifier, data["signedRenewalInfo"], renewal=True, covered=covered)
        except NotTrusted:  # an authentic notification may nest signed claims that are not JSON
            for nested in (data.get("signedTransactionInfo"), data.get("signedRenewalInfo")):
                _raise_if_signed_undecodable(nested)
            raise
        claims = {**claims, "data": {k: v for k, v in data.items()
                                     if k not in ("signedTransactionInfo", "signedRenewalInfo")}}
    return VerifiedNotification(claims=claims, transaction=transaction, renewal=renewal,
                                apple_environment=apple_environment)


def _nested(verifier: SignedDataVerifier, jws, *, renewal: bool, covered: bool) -> dict:
    """A nested JWS's claims: verified in full, or (`covered`: the notification around it verified) read
    and checked without its signature, when its claims are an ordinary JSON object."""
    claims = _covered_claims(jws) if covered else None
    if claims is None:
        return _verified(verifier, jws, renewal=renewal)
    what = "signedRenewalInfo" if renewal else "signedTransactionInfo"
    # The library's checks after its verified decode (3.1.2: verify_and_decode_signed_transaction and
    # verify_and_decode_renewal_info), on the raw claims: the same statuses, the same rejections.
    expected = verifier._environment.value
    if not renewal and claims.get("bundleId") != verifier._bundle_id:
        _refuse(VerificationException(VerificationStatus.INVALID_APP_IDENTIFIER), what=what)
    if claims.get("environment") != expected:
        _refuse(VerificationException(VerificationStatus.INVALID_ENVIRONMENT), what=what)
    return claims


def _covered_claims(jws) -> dict | None:
    """The claims of a compact JWS (its middle segment: canonical base64url, a JSON object), unverified;
    None for anything else. The header (its x5c chain) is not read: processing verifies it."""
    if not isinstance(jws, str) or not jws.isascii():
        return None
    parts = jws.encode().split(b".")
    raw = _segment(parts[1]) if len(parts) == 3 else None
    if raw is None:
        return None
    try:
        claims = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return claims if isinstance(claims, dict) else None


def nested_verified(body: bytes) -> tuple[dict | None, dict | None]:
    """The claims of a stored notification's nested signed transaction and renewal info, each verified in
    full (signature, certificate chain as of its signedDate, bundle id, environment) as the library does:
    what processing applies. The notification itself was verified when it arrived (webhook_authenticate)
    and is not verified again. Raises NotTrusted, RetryLater or NotConfigured."""
    document = json_decode(body)
    signed_payload = document.get("signedPayload") if isinstance(document, dict) else None
    claims = peek(signed_payload, what="signedPayload")
    data = claims.get("data") if isinstance(claims.get("data"), dict) else {}
    transaction = renewal = None
    if data.get("signedTransactionInfo") or data.get("signedRenewalInfo"):
        verifier = verifier_for(notification_environment(claims))
        if data.get("signedTransactionInfo"):
            transaction = _verified(verifier, data["signedTransactionInfo"], renewal=False)
        if data.get("signedRenewalInfo"):
            renewal = _verified(verifier, data["signedRenewalInfo"], renewal=True)
    return transaction, renewal


def _verified(verifier: SignedDataVerifier, jws: str, *, renewal: bool) -> dict:
    what = "signedRenewalInfo" if renewal else "signedTransactionInfo"
    call = verifier.verify_and_decode_renewal_info if renewal else verifier.verify_and_decode_signed_transaction
    _checked(call, jws, what=what)
    # The raw claims (JSON-able, every field, even ones the library does not model yet) of the JWS
    # that was just verified.
    return peek(jws, what=what)


def verify_transaction(signed_transaction: str, *, apple_environment: str | None = None) -> dict:
    """A StoreKit 2 signed transaction (from an app or from the API), verified; its claims."""
    if apple_environment is None:
        apple_environment = peek(signed_transaction, what="signed transaction").get("environment")
    return _verified(verifier_for(apple_environment), signed_transaction, renewal=False)


def verify_renewal(signed_renewal: str, *, apple_environment: str) -> dict:
    return _verified(verifier_for(apple_environment), signed_renewal, renewal=True)


def verified_statuses(response, *, apple_environment: str) -> list[tuple[int | None, dict, dict | None]]:
    """The last transactions of a get_all_subscription_statuses answer (client.subscription_get), each
    verified: (status, transaction claims, renewal claims or None). Our own call to Apple answered with
    data that does not verify: never trusted, the store counts as unavailable."""
    statuses = []
    for group in response.data or []:
        for item in group.lastTransactions or []:
            if not item.signedTransactionInfo:
                continue
            try:
                transaction = verify_transaction(item.signedTransactionInfo, apple_environment=apple_environment)
                renewal = (verify_renewal(item.signedRenewalInfo, apple_environment=apple_environment)
                           if item.signedRenewalInfo else None)
            except NotTrusted as exc:
                raise StoreUnavailable(f"App Store Server API answer not verified: {exc}") from exc
            except RetryLater as exc:
                raise StoreUnavailable(str(exc)) from exc
            statuses.append((item.rawStatus, transaction, renewal))
    return statuses


# --- The webhook ------------------------------------------------------------------------------

def webhook_authenticate(headers: Mapping[str, str], body: bytes, query: Mapping[str, str]) -> VerifiedEvent:
    """POST /webhooks/apple: the body is {"signedPayload": "<JWS>"} (Server Notifications V2); the
    signature is in it, so the headers and query say nothing."""
    try:
        document = json_decode(body)  # not signed itself: a body that cannot be decoded is not authentic
        signed_payload = document["signedPayload"]
        if not isinstance(signed_payload, str):
            raise TypeError
    except (Undecodable, KeyError, TypeError):
        raise Rejected('The body must be JSON {"signedPayload": "<JWS>"} (App Store Server Notifications V2).',
                       code="malformed") from None
    return verified_event(signed_payload)


def verified_event(signed_payload: str) -> VerifiedEvent:
    """A notification's signedPayload, verified, as the event to store; its nested JWS checked as the
    library checks their claims, their own signatures verified by processing (`nested_verified`)."""
    try:
        notification = verify_notification(signed_payload, nested_signatures=False)
    except NotTrusted as exc:
        raise Rejected(str(exc), code=exc.code) from None
    except RetryLater as exc:
        raise TransientError(str(exc)) from exc
    except NotConfigured as exc:  # fixable by us: answer 5xx so Apple retries once it is fixed
        raise Rejected(str(exc), status=503, code="not_configured") from None
    claims = notification.claims
    uuid = claims.get("notificationUUID")
    if not uuid:
        raise Rejected("The notification has no notificationUUID.", code="malformed")
    return VerifiedEvent(
        dedupe_key=str(uuid),
        event_type=mapping.notification_label(claims),
        payload={"notification": claims, "transaction": notification.transaction,
                 "renewal": notification.renewal, "environment": notification.environment,
                 "apple_environment": notification.apple_environment},
        occurred_at=datetime_from_millis(claims.get("signedDate")),
        store_ids=_store_ids(notification),
        environment=notification.environment,
    )


def _store_ids(notification: VerifiedNotification) -> tuple[str, ...]:
    """The ids support searches events by: the subscription's, the transaction's, the app's token."""
    ids: list[str] = []
    for part in (notification.transaction or {}, notification.renewal or {}):
        for key in ("originalTransactionId", "transactionId", "webOrderLineItemId", "appAccountToken"):
            if part.get(key) and str(part[key]) not in ids:
                ids.append(str(part[key]))
    return tuple(ids)


# --- System checks (AppleAdapter.checks: `manage.py check`, every server start) ----------------

def system_checks() -> list:
    """Configurations that would trust unsigned or wrongly rooted Apple data."""
    return unsigned_environments_check() + roots_check(shipped_g3=SHIPPED_G3_ROOT,
                                                       configured=settings.APPLE_ROOT_CERTIFICATES)


def unsigned_environments_check() -> list:
    """Xcode / LocalTesting data carries no signature at all: never reachable outside development.
    (The verifier refuses it without DEBUG as well; this makes the mistake loud at start.)"""
    if settings.APPLE_ALLOW_UNSIGNED_ENVIRONMENTS and not settings.DEBUG:
        return [Error(
            "APPLE_ALLOW_UNSIGNED_ENVIRONMENTS is on while DEBUG is off: Xcode and LocalTesting notifications "
            "and transactions carry no App Store signature, so anyone could forge them.",
            hint="Unset APPLE_ALLOW_UNSIGNED_ENVIRONMENTS (it is for a developer's machine with DEBUG=true).",
            id="billing.E_APPLE_UNSIGNED_ENVIRONMENTS")]
    return []


def roots_check(*, shipped_g3: Path, configured) -> list:
    """The shipped Apple Root CA - G3 file must be Apple's (pinned fingerprint): a replaced file would
    make us trust whoever replaced it. The configured roots should include it: without it, no genuine
    App Store signature verifies (e.g. a test root left in a deployment's settings)."""
    pinned = APPLE_ROOT_CA_G3_SHA256
    messages = []
    try:
        shipped = load_root_certificates([shipped_g3])
    except ImproperlyConfigured as exc:
        shipped = []
        messages.append(Error(f"The shipped Apple root {shipped_g3} cannot be read: {exc}",
                              hint="Restore billing/providers/apple_roots/AppleRootCA-G3.cer from the repository.",
                              id="billing.E_APPLE_G3_ROOT"))
    if shipped and [sha256_fingerprint(der) for der in shipped] != [pinned]:
        found = ", ".join(sha256_fingerprint(der) for der in shipped)
        messages.append(Error(
            f"The shipped Apple root {shipped_g3} is not Apple Root CA - G3: its SHA-256 fingerprint is {found}, "
            f"expected {pinned}.",
            hint="Restore the file from the repository, or from https://www.apple.com/certificateauthority/.",
            id="billing.E_APPLE_G3_ROOT"))
    try:
        roots = load_root_certificates(configured)
    except ImproperlyConfigured as exc:
        messages.append(Error(str(exc), hint="APPLE_ROOT_CERTIFICATES lists DER or PEM certificate files.",
                              id="billing.E_APPLE_ROOT_CERTIFICATES"))
        return messages
    if pinned not in {sha256_fingerprint(der) for der in roots}:
        messages.append(Warning(
            "APPLE_ROOT_CERTIFICATES holds no Apple Root CA - G3 (SHA-256 " + pinned + "): genuine App Store "
            "notifications and transactions will not verify.",
            hint="Leave APPLE_ROOT_CERTIFICATES unset (Apple's roots shipped with the project), or include "
                 "billing/providers/apple_roots/AppleRootCA-G3.cer. A test root belongs in tests only.",
            id="billing.W_APPLE_G3_ROOT"))
    return messages
