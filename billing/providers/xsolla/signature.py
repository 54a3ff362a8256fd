"""Xsolla's webhook signature: `Authorization: Signature <sha1_hex(raw_body + project_secret_key)>`.

A plain SHA-1 of the concatenation, not an HMAC (as the official PHP SDK's WebhookAuthenticator checks
it), over the raw request bytes: re-serialised JSON would hash differently."""

import hashlib
import hmac
import re

_HEADER = re.compile(r"^Signature ([0-9a-fA-F]{40})$")


def sign(raw_body: bytes, secret: str) -> str:
    """The hex digest Xsolla sends for this body (used by the tests to sign fixtures, too)."""
    return hashlib.sha1(raw_body + secret.encode()).hexdigest()  # noqa: S324 - Xsolla's scheme, not our choice


def authorization_header(raw_body: bytes, secret: str) -> str:
    return f"Signature {sign(raw_body, secret)}"


def signature_ok(raw_body: bytes, authorization: str | None, secret: str) -> bool:
    """Whether the Authorization header carries the body's signature (compared in constant time)."""
    if not secret:
        return False
    match = _HEADER.match((authorization or "").strip())
    if match is None:
        return False
    return hmac.compare_digest(sign(raw_body, secret), match.group(1).lower())
