"""Helpers for the API tests: keys, end-user tokens, and clients that send them."""

import time

import jwt

from accounts.services import api_key_create

JWT_SECRET = "test-jwt-secret-of-at-least-32-bytes!!"
UNTRUSTED = "203.0.113.7"  # TEST-NET-3: never in CHECK_API_TRUSTED_NETWORKS


def configure_jwt(settings, **overrides):
    settings.JWT_SECRET = JWT_SECRET
    settings.JWT_ALGORITHMS = ["HS256"]
    settings.JWT_ISSUER = overrides.get("issuer", "https://auth.example.com")
    settings.JWT_AUDIENCE = overrides.get("audience", "billing")
    settings.JWT_USER_CLAIM = "sub"


def token(user_id, *, secret=JWT_SECRET, expires_in=300, iss="https://auth.example.com", aud="billing", **claims):
    payload = {"sub": str(user_id), "exp": int(time.time()) + expires_in, "iss": iss, "aud": aud, **claims}
    return jwt.encode(payload, secret, algorithm="HS256")


def bearer(user_id, **kw) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {token(user_id, **kw)}", "REMOTE_ADDR": UNTRUSTED}


def api_key(*scopes, name="orders-service") -> str:
    _key, raw = api_key_create(name=name, scopes=list(scopes))
    return raw


def with_key(raw: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Api-Key {raw}", "REMOTE_ADDR": UNTRUSTED}
