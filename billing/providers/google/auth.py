"""Webhook authentication for Google Play: the Pub/Sub push request → a VerifiedEvent
(`webhook_authenticate`). The push is authenticated by the OIDC token Pub/Sub signs (the documented
default) or a shared token, then its envelope is decoded. No store API call; the signing certificates
are cached in-process.

The shared token (GOOGLE_PUBSUB_VERIFICATION_TOKEN) is read from the X-Pubsub-Verification-Token header
(a relay in front of us adds it; the header is never stored with the event). In the push URL
(`?token=`) it lands in every proxy's access log, so it is accepted there only with
GOOGLE_PUBSUB_TOKEN_IN_URL on. It is never logged or echoed by our code.

google-auth checks the signature, `exp`/`iat` (with our clock skew) and the audience we pass; it does
NOT check `iss` in `verify_token`, nor `email` ever, so both are checked here. `audience=None` would
accept any audience, so it is always passed.

GOOGLE_PUBSUB_CERTS_URL may serve either form: x509 certificates by key id (oauth2/v1/certs, the
default) or a JWK Set (oauth2/v3/certs). For a JWK Set google-auth verifies with pyjwt, whose errors
are not google-auth's: they are caught too (401), and a set without a usable key is our configuration
(503). pyjwt is given no clock skew there, so prefer the v1 URL."""

import base64
import binascii
import hmac
import json
import logging
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

import jwt
import requests
from django.conf import settings
from django.core.checks import Warning
from google.auth import exceptions as google_exceptions
from google.auth import jwt as google_jwt
from google.oauth2 import id_token

from billing.providers.base import Rejected, StoreUnavailable, VerifiedEvent
from billing.providers.common import header, json_decode

from . import mapping

logger = logging.getLogger(__name__)

GOOGLE_ISSUERS = ("accounts.google.com", "https://accounts.google.com")
CLOCK_SKEW_SECONDS = 10
CERTS_TIMEOUT_SECONDS = 5
# Without a Cache-Control max-age, certificates are kept this long (Google rotates keys over days).
DEFAULT_CERTS_MAX_AGE = 3600
# A token signed by a key id we do not hold may mean Google rotated keys early: refetch, but at most
# this often (a forger sending random key ids must not make us hammer the endpoint).
MIN_REFETCH_INTERVAL = 60.0

_MAX_AGE = re.compile(r"max-age=(\d+)")
TOKEN_HEADER = "X-Pubsub-Verification-Token"


@dataclass
class _Cached:
    data: bytes
    expires: float  # time.monotonic()
    fetched: float


class _Response:
    """What google-auth's `_fetch_certs` reads from a transport response."""

    def __init__(self, data: bytes):
        self.status = 200
        self.data = data
        self.headers = {}


class CertificateCache:
    """A google-auth `Request` callable for the certificates URL that answers from memory until the
    response's Cache-Control max-age runs out. One per process, shared by threads."""

    def __init__(self):
        self._lock = threading.Lock()
        self._entries: dict[str, _Cached] = {}
        self._session = requests.Session()
        self.fetches = 0  # observable for tests and the health of the cache

    def __call__(self, url, method="GET", **kwargs):
        return _Response(self.get(url))

    def get(self, url: str, *, force: bool = False) -> bytes:
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(url)
            if entry is not None and entry.expires > now and not force:
                return entry.data
            if entry is not None and force and now - entry.fetched < MIN_REFETCH_INTERVAL:
                return entry.data
            try:
                response = self._session.get(url, timeout=CERTS_TIMEOUT_SECONDS)
            except requests.RequestException as exc:
                if entry is not None:  # stale keys beat no keys while Google's endpoint is down
                    logger.warning("Google certificates unavailable (%s); using the cached copy", exc)
                    return entry.data
                raise StoreUnavailable(f"Google signing certificates unavailable: {exc}") from exc
            self.fetches += 1
            problem = None
            if response.status_code != 200:
                problem = f"HTTP {response.status_code} from {url}"
            elif not _is_json_object(response.content):
                problem = f"{url} did not answer a JSON object (check GOOGLE_PUBSUB_CERTS_URL)"
            if problem:
                if entry is not None:
                    logger.warning("Google certificates unavailable (%s); using the cached copy", problem)
                    return entry.data
                raise StoreUnavailable(f"Google signing certificates: {problem}")
            match = _MAX_AGE.search(response.headers.get("Cache-Control", ""))
            max_age = int(match.group(1)) if match else DEFAULT_CERTS_MAX_AGE
            self._entries[url] = _Cached(response.content, now + max_age, now)
            return response.content

    def cached(self, url: str) -> bytes | None:
        """The certificates held for `url` while they are fresh; None otherwise (nothing is fetched)."""
        entry = self._entries.get(url)
        return entry.data if entry is not None and entry.expires > time.monotonic() else None

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
        _verified_tokens.clear()


certificates = CertificateCache()


def _is_json_object(data: bytes) -> bool:
    try:
        return isinstance(json.loads(data), dict)
    except (ValueError, UnicodeDecodeError):
        return False


def _key_ids(url: str) -> set[str]:
    try:
        data = json.loads(certificates.get(url))
    except (ValueError, TypeError):
        return set()
    if isinstance(data.get("keys"), list):  # the JWK form (oauth2/v3/certs)
        return {key.get("kid") for key in data["keys"] if isinstance(key, dict)}
    return set(data)


# Pub/Sub signs one token per push endpoint and sends it with every push until it nears expiry (an hour):
# a token verified against the certificates held now is remembered with them, and while those very
# certificates are still the ones held, a push carrying it costs only the time check google-auth makes
# (iat/exp with the same skew) instead of parsing a certificate and an RSA verification. New certificates
# (refetched, rotated, cleared) mean verifying again. The x509 form (the default URL) only: a JWK Set
# is verified by pyjwt, with its own time rules.
_verified_tokens: dict[tuple[str, str, str], tuple[Mapping, bytes]] = {}
_MAX_VERIFIED_TOKENS = 256


def _verify_oidc(token: str) -> Mapping:
    url = settings.GOOGLE_PUBSUB_CERTS_URL
    audience = settings.GOOGLE_PUBSUB_AUDIENCE
    if not audience:  # never verify without an audience: google-auth would accept any
        raise Rejected("Push authentication is not configured (GOOGLE_PUBSUB_AUDIENCE).", status=401,
                       code="unauthenticated")
    key = (token, audience, url)
    known = _verified_tokens.get(key)
    if known is not None and certificates.cached(url) is known[1]:
        try:
            google_jwt._verify_iat_and_exp(known[0], CLOCK_SKEW_SECONDS)  # what verify_token checks of time
        except (ValueError, google_exceptions.GoogleAuthError) as exc:
            raise Rejected(f"The push token is not valid: {exc}", status=401, code="invalid_token") from exc
        return _claims_checked(known[0])
    claims = _token_verified(token, url, audience)
    held = certificates.cached(url)
    if held is not None and b'"keys"' not in held:
        if len(_verified_tokens) >= _MAX_VERIFIED_TOKENS:  # bounded: tokens expire within the hour anyway
            _verified_tokens.clear()
        _verified_tokens[key] = (claims, held)
    return _claims_checked(claims)


def _token_verified(token: str, url: str, audience: str) -> Mapping:
    try:
        kid = google_jwt.decode_header(token).get("kid")  # header only; nothing trusted yet
    except Exception as exc:
        raise Rejected("The bearer token is not a JWT.", status=401, code="invalid_token") from exc
    if kid and kid not in _key_ids(url):
        certificates.get(url, force=True)  # a rotation we have not seen yet (rate-limited)
    try:
        claims = id_token.verify_token(token, certificates, audience=audience, certs_url=url,
                                       clock_skew_in_seconds=CLOCK_SKEW_SECONDS)
    except google_exceptions.TransportError as exc:
        raise StoreUnavailable(f"Google signing certificates unavailable: {exc}") from exc
    except jwt.PyJWKSetError as exc:  # the JWK Set we were served holds no key we can use
        raise StoreUnavailable(f"Google signing certificates at {url} are not usable: {exc}") from exc
    except (ValueError, google_exceptions.GoogleAuthError, jwt.PyJWTError) as exc:
        # wrong signature / unknown key, expired, wrong audience: google-auth (or pyjwt, for a JWK Set)
        # says which
        raise Rejected(f"The push token is not valid: {exc}", status=401, code="invalid_token") from exc
    return claims


def _claims_checked(claims: Mapping) -> Mapping:
    """What google-auth does not check of a verified token: the issuer, the push service account."""
    if claims.get("iss") not in GOOGLE_ISSUERS:
        raise Rejected(f"The push token's issuer {claims.get('iss')!r} is not Google.", status=401,
                       code="invalid_token")
    expected = settings.GOOGLE_PUBSUB_SERVICE_ACCOUNT
    if not expected or claims.get("email") != expected:
        raise Rejected(f"The push token was issued to {claims.get('email')!r}, not to the configured push "
                       "service account.", status=403, code="forbidden")
    if claims.get("email_verified") is not True:
        raise Rejected("The push token's email is not verified.", status=403, code="forbidden")
    return claims


def _shared_token(headers: Mapping[str, str], query: Mapping[str, str]) -> str:
    """The shared token the push carries: its header, or `?token=` where the URL is allowed."""
    given = header(headers, TOKEN_HEADER).strip()
    if given:
        return given
    if query.get("token"):
        if settings.GOOGLE_PUBSUB_TOKEN_IN_URL:
            return str(query["token"])
        raise Rejected(f"The push verification token is not accepted in the URL (?token=, which access logs "
                       f"keep): send it in the {TOKEN_HEADER} header, use the OIDC token "
                       "(GOOGLE_PUBSUB_AUDIENCE), or set GOOGLE_PUBSUB_TOKEN_IN_URL=true.", status=401,
                       code="token_in_url")
    raise Rejected(f"Missing the push verification token ({TOKEN_HEADER} header).", status=401,
                   code="unauthenticated")


def system_checks() -> list:
    """The shared token accepted in the push URL outside development: it is in every access log."""
    if settings.GOOGLE_PUBSUB_TOKEN_IN_URL and settings.GOOGLE_PUBSUB_VERIFICATION_TOKEN and not settings.DEBUG:
        return [Warning(
            "GOOGLE_PUBSUB_TOKEN_IN_URL is on: the Google push token is accepted as ?token=, which proxies and "
            "load balancers write to their access logs; whoever reads them can push forged notifications.",
            hint="Use OIDC push authentication (GOOGLE_PUBSUB_AUDIENCE, GOOGLE_PUBSUB_SERVICE_ACCOUNT), or send "
                 f"the token in the {TOKEN_HEADER} header, and turn GOOGLE_PUBSUB_TOKEN_IN_URL off.",
            id="billing.W_GOOGLE_TOKEN_IN_URL")]
    return []


def push_authenticate(headers: Mapping[str, str], query: Mapping[str, str]) -> None:
    """Raise Rejected unless the push carries every configured credential: the OIDC token (when an
    audience is configured) and the shared URL token (when one is configured)."""
    if settings.GOOGLE_PUBSUB_AUDIENCE:
        scheme, _, token = header(headers, "Authorization").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Rejected("Missing the Pub/Sub OIDC token (Authorization: Bearer).", status=401,
                           code="unauthenticated")
        _verify_oidc(token.strip())
    expected = settings.GOOGLE_PUBSUB_VERIFICATION_TOKEN
    if expected:
        given = _shared_token(headers, query)
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise Rejected("The push verification token does not match.", status=403, code="forbidden")
    if not settings.GOOGLE_PUBSUB_AUDIENCE and not expected:
        raise Rejected("Push authentication is not configured.", status=401, code="unauthenticated")


def envelope_decode(body: bytes) -> dict:
    """The push body → {"message_id", "publish_time", "subscription", "attributes", "delivery_attempt",
    "notification" (dict) or "undecodable" (why)}. Raises Undecodable for a body that is not JSON
    (stored as failed: the push was authenticated), Rejected for one that is no Pub/Sub push."""
    envelope = json_decode(body)
    message = envelope.get("message") if isinstance(envelope, dict) else None
    if not isinstance(message, dict):
        raise Rejected("Not a Pub/Sub push: no `message` object.", code="malformed")
    message_id = message.get("messageId") or message.get("message_id")
    if not message_id:
        raise Rejected("The Pub/Sub message has no messageId.", code="malformed")
    parsed = {
        "message_id": str(message_id),
        "publish_time": message.get("publishTime") or message.get("publish_time") or "",
        "subscription": envelope.get("subscription") or "",
        "attributes": message.get("attributes") or {},
        "delivery_attempt": envelope.get("deliveryAttempt"),
    }
    try:
        notification = json.loads(base64.b64decode(message.get("data") or "", validate=True))
        if not isinstance(notification, dict):
            raise ValueError("not a JSON object")
    except (ValueError, binascii.Error, UnicodeDecodeError, RecursionError) as exc:
        # Authentic but unreadable: redelivery would never fix it, so it is kept and answered 2xx.
        why = "nested deeper than the parser goes" if isinstance(exc, RecursionError) else exc
        parsed["undecodable"] = f"message.data is not a base64 JSON DeveloperNotification ({why})"
        return parsed
    parsed["notification"] = notification
    return parsed


def webhook_authenticate(headers: Mapping[str, str], body: bytes, query: Mapping[str, str]) -> VerifiedEvent:
    """The push, authenticated, as the event to store: its Pub/Sub message id is the dedupe key, the
    notification's type name its event type. Raises Rejected (401/403/400) or StoreUnavailable (the
    certificates cannot be had: 503, Pub/Sub retries)."""
    push_authenticate(headers, query)  # before reading anything else of the request
    return webhook_decode(body)


def webhook_decode(body: bytes) -> VerifiedEvent:
    """An authenticated push body decoded (at arrival, or again from the stored bytes)."""
    envelope = envelope_decode(body)
    meta = {k: envelope[k] for k in ("message_id", "publish_time", "subscription", "attributes",
                                     "delivery_attempt")}
    if "undecodable" in envelope:
        return VerifiedEvent(dedupe_key=envelope["message_id"], event_type=mapping.UNDECODABLE,
                             payload={**meta, "undecodable": envelope["undecodable"]})
    notification = envelope["notification"]
    return VerifiedEvent(
        dedupe_key=envelope["message_id"], event_type=mapping.event_type(notification),
        payload={**meta, "notification": notification}, occurred_at=mapping.event_time(notification),
        store_ids=mapping.store_ids(notification))
