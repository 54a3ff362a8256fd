"""Authentication of API callers: `Authorization: Api-Key <key>` for services, `Authorization: Bearer
<JWT>` for the apps' end users, and (check API only) anonymous calls from trusted networks.

The functions here are shared by the DRF authentication classes and by the check API's lean view,
so both paths accept and refuse exactly the same credentials."""

import hmac
import logging
import threading
import time
from datetime import timedelta

import jwt
from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils import timezone
from rest_framework import authentication, exceptions

from .models import ApiKey
from .principals import Principal

logger = logging.getLogger(__name__)

# last_used_at is written at most this often per key: the hot path must not write on every call.
LAST_USED_RESOLUTION = timedelta(minutes=1)
_MAX_CACHED_KEYS = 10_000


class AuthFailed(Exception):
    """Credentials were given but are not valid (401)."""

    def __init__(self, message: str, code: str = "authentication_failed"):
        self.message = message
        self.code = code
        super().__init__(message)


# --- API keys ---------------------------------------------------------------------------------

# sha256(raw key) -> (valid until, monotonic; Principal or None for an unknown/revoked key).
# A revoked key keeps working in *other* processes for at most API_KEY_CACHE_SECONDS.
_key_cache: dict[str, tuple[float, Principal | None]] = {}
_key_cache_lock = threading.Lock()


def clear_api_key_cache() -> None:
    with _key_cache_lock:
        _key_cache.clear()


def _principal_for_key(raw_key: str, hashed: str) -> Principal | None:
    prefix = ApiKey.prefix_of(raw_key)
    if prefix is None:
        return None
    key = ApiKey.objects.filter(prefix=prefix).first()
    if key is None or not hmac.compare_digest(key.hashed_key, hashed) or not key.is_active:
        return None
    now = timezone.now()
    if key.last_used_at is None or now - key.last_used_at >= LAST_USED_RESOLUTION:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
    return Principal(kind=Principal.SERVICE, name=key.name, scopes=frozenset(key.scopes or ()),
                     api_key_id=key.pk)


def authenticate_api_key(raw_key: str) -> Principal:
    """The service behind a raw key, from a short in-process cache or the database. Raises AuthFailed."""
    raw_key = raw_key.strip()
    hashed = ApiKey.hash(raw_key)
    now = time.monotonic()
    cached = _key_cache.get(hashed)
    if cached is not None and cached[0] > now:
        principal = cached[1]
    else:
        principal = _principal_for_key(raw_key, hashed)
        with _key_cache_lock:
            if len(_key_cache) >= _MAX_CACHED_KEYS:  # bounded: random bad keys cannot grow it
                _key_cache.clear()
            _key_cache[hashed] = (now + settings.API_KEY_CACHE_SECONDS, principal)
    if principal is None:
        raise AuthFailed("Invalid or revoked API key.", "invalid_api_key")
    return principal


def cached_api_key_principal(raw_key: str) -> Principal | None:
    """The service behind a raw key if this process's cache holds it as valid now, else None (unknown,
    revoked, expired from the cache or never seen: authenticate_api_key then decides). No database."""
    cached = _key_cache.get(ApiKey.hash(raw_key.strip()))
    if cached is not None and cached[0] > time.monotonic():
        return cached[1]
    return None


# --- End-user JWTs ----------------------------------------------------------------------------

def _jwt_key(algorithm: str) -> str:
    if algorithm.startswith("HS"):
        return settings.JWT_SECRET
    # PEM in an environment variable often arrives with literal "\n".
    return settings.JWT_PUBLIC_KEY.replace("\\n", "\n")


def jwt_missing_settings() -> list[str]:
    """The JWT_* settings that must be set before any token is accepted (empty: none missing)."""
    missing = [] if settings.JWT_SECRET or settings.JWT_PUBLIC_KEY else ["JWT_SECRET or JWT_PUBLIC_KEY"]
    if settings.JWT_REQUIRE_AUDIENCE and not settings.JWT_AUDIENCE:
        missing.append("JWT_AUDIENCE (or JWT_REQUIRE_AUDIENCE=0)")
    if settings.JWT_REQUIRE_ISSUER and not settings.JWT_ISSUER:
        missing.append("JWT_ISSUER (or JWT_REQUIRE_ISSUER=0)")
    return missing


_JWT_ERRORS = (  # most specific first: several are subclasses of others
    (jwt.ExpiredSignatureError, "token_expired", "The bearer token has expired."),
    (jwt.InvalidSignatureError, "invalid_token", "The bearer token's signature is not valid."),
    (jwt.InvalidAudienceError, "invalid_token", "The bearer token is not for this audience."),
    (jwt.InvalidIssuerError, "invalid_token", "The bearer token is not from the expected issuer."),
    (jwt.ImmatureSignatureError, "invalid_token", "The bearer token is not valid yet (iat or nbf in the future)."),
    (jwt.DecodeError, "invalid_token", "Malformed bearer token."),
)


def _decode_jwt(token: str, key: str) -> dict:
    claim = settings.JWT_USER_CLAIM
    required = ["exp", claim] + (["aud"] if settings.JWT_AUDIENCE else []) + (["iss"] if settings.JWT_ISSUER else [])
    try:
        return jwt.decode(
            token, key, algorithms=settings.JWT_ALGORITHMS,
            # Without JWT_AUDIENCE a token naming any audience is refused: it was issued for someone else.
            audience=settings.JWT_AUDIENCE or None, issuer=settings.JWT_ISSUER or None,
            leeway=10,  # seconds of clock skew between the apps' auth server and us
            # verify_sub off: pyjwt wants a string, and docs/api.md allows an integer user id (checked below).
            options={"require": required, "verify_aud": True, "verify_sub": False})
    except jwt.MissingRequiredClaimError as exc:
        raise AuthFailed(f"The bearer token lacks the {exc.claim!r} claim.", "invalid_token") from None
    except jwt.InvalidTokenError as exc:
        for error, code, message in _JWT_ERRORS:
            if isinstance(exc, error):
                raise AuthFailed(message, code) from None
        raise AuthFailed("The bearer token is not valid.", "invalid_token") from None


def _check_lifetime(payload: dict) -> None:
    """Refuses a token valid for longer than JWT_MAX_LIFETIME_SECONDS (from `iat`, or from now)."""
    issued_at = payload.get("iat", time.time())
    if isinstance(issued_at, bool) or not isinstance(issued_at, (int, float)):
        raise AuthFailed("The bearer token's 'iat' claim is not a time.", "invalid_token")
    if payload["exp"] - issued_at > settings.JWT_MAX_LIFETIME_SECONDS:
        raise AuthFailed(f"The bearer token is valid for longer than the {settings.JWT_MAX_LIFETIME_SECONDS} "
                         "seconds accepted here: issue shorter-lived tokens.", "invalid_token")


def authenticate_jwt(token: str) -> Principal:
    """The end user named by a token signed per the JWT_* settings. Raises AuthFailed with a clear reason."""
    missing = jwt_missing_settings()
    if missing:
        raise AuthFailed(f"End-user tokens are not accepted here: {', '.join(missing)} not set.",
                         "jwt_not_configured")
    try:
        algorithm = jwt.get_unverified_header(token).get("alg", "")
    except jwt.DecodeError:
        raise AuthFailed("Malformed bearer token.", "invalid_token") from None
    if algorithm not in settings.JWT_ALGORITHMS:
        raise AuthFailed(f"Token algorithm {algorithm!r} is not accepted (allowed: "
                         f"{', '.join(settings.JWT_ALGORITHMS)}).", "invalid_token")
    key = _jwt_key(algorithm)
    if not key:
        raise AuthFailed(f"No key is configured for {algorithm} tokens.", "invalid_token")
    payload = _decode_jwt(token, key)
    _check_lifetime(payload)
    claim = settings.JWT_USER_CLAIM
    user_id = payload.get(claim)
    # A string or an integer (bool is an int in Python, and not a user id).
    if isinstance(user_id, bool) or not isinstance(user_id, (str, int)) or str(user_id).strip() == "":
        raise AuthFailed(f"The bearer token's {claim!r} claim is not a user id.", "invalid_token")
    user_id = str(user_id)
    return Principal(kind=Principal.END_USER, name=f"user {user_id}", user_id=user_id)


# --- The Authorization header -----------------------------------------------------------------

def authenticate_header(header: str) -> Principal | None:
    """The principal for an `Authorization` header value; None when there is no header. Raises AuthFailed."""
    if not header:
        return None
    scheme, _, credentials = header.strip().partition(" ")
    scheme = scheme.lower()
    credentials = credentials.strip()
    if scheme == "api-key":
        if not credentials:
            raise AuthFailed("Empty API key.", "invalid_api_key")
        return authenticate_api_key(credentials)
    if scheme == "bearer":
        if not credentials:
            raise AuthFailed("Empty bearer token.", "invalid_token")
        return authenticate_jwt(credentials)
    raise AuthFailed("Unsupported Authorization scheme: use 'Api-Key <key>' or 'Bearer <token>'.",
                     "unsupported_authorization")


@receiver(setting_changed)
def _reset_on_setting_change(setting, **kwargs):
    if setting == "API_KEY_CACHE_SECONDS":
        clear_api_key_cache()


# --- DRF --------------------------------------------------------------------------------------

class ApiKeyAuthentication(authentication.BaseAuthentication):
    """`Authorization: Api-Key <key>` (keys from ApiKey.generate(), stored hashed, scoped)."""

    keyword = "Api-Key"

    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        scheme, _, credentials = header.strip().partition(" ")
        if scheme.lower() != "api-key":
            return None
        try:
            principal = authenticate_api_key(credentials) if credentials.strip() else None
        except AuthFailed as exc:
            raise exceptions.AuthenticationFailed(exc.message, exc.code) from None
        if principal is None:
            raise exceptions.AuthenticationFailed("Empty API key.", "invalid_api_key")
        return principal, principal

    def authenticate_header(self, request):
        return 'Api-Key realm="billing"'


class JWTAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer <JWT>` issued by the apps' own auth (settings JWT_*)."""

    keyword = "Bearer"

    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        scheme, _, credentials = header.strip().partition(" ")
        if scheme.lower() != "bearer":
            return None
        try:
            principal = authenticate_jwt(credentials.strip())
        except AuthFailed as exc:
            raise exceptions.AuthenticationFailed(exc.message, exc.code) from None
        return principal, principal

    def authenticate_header(self, request):
        return 'Bearer realm="billing"'
