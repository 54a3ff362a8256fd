"""Webhook authentication: the Stripe-Signature header checked on the raw bytes with the stripe
library, then the body decoded into a VerifiedEvent. No API call, no writes.

The library verifies text only (it decodes the body as UTF-8 first). A body that is not UTF-8 is
checked here by Stripe's documented scheme over the raw bytes (HMAC-SHA256 of "<t>.<body>", a v1
signature, within the tolerance): a genuine one is authentic but Undecodable (stored as failed), a
forged one is refused like any other."""

import hashlib
import hmac
import time
from collections.abc import Mapping

import stripe
from django.conf import settings

from billing.providers.base import Rejected, Undecodable, VerifiedEvent
from billing.providers.common import datetime_from_seconds, header, json_decode

from . import mapping

SIGNATURE_TOLERANCE_SECONDS = 300


def webhook_authenticate(headers: Mapping[str, str], body: bytes, query: Mapping[str, str]) -> VerifiedEvent:
    signature = header(headers, "Stripe-Signature")
    if not signature:
        raise Rejected("The Stripe-Signature header is missing.", code="missing_signature")
    if not signature.isascii():  # hex digests and digits only (the library's comparison would raise on others)
        raise Rejected("The Stripe signature is not valid: the header is not ASCII.", code="bad_signature")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        if _bytes_signature_ok(body, signature):
            raise Undecodable(f"The body is not UTF-8 (byte 0x{body[exc.start]:02x} at offset {exc.start}).") from None
        raise Rejected("The body is not UTF-8 and its Stripe signature is not valid.", code="bad_signature") from None
    _check_timestamp(signature)
    # The signature covers the raw bytes: verified before anything is parsed, never re-serialized.
    for secret in _webhook_secrets():
        try:
            stripe.WebhookSignature.verify_header(text, signature, secret, tolerance=SIGNATURE_TOLERANCE_SECONDS)
            break
        except stripe.SignatureVerificationError:
            continue
    else:  # our words, not the library's
        raise Rejected("The Stripe signature is not valid: no v1 signature matches the body and our webhook secret.",
                       code="bad_signature")
    return webhook_decode(text)


def webhook_decode(body: bytes | str) -> VerifiedEvent:
    """A signed body decoded (at arrival, or again from the stored bytes): Undecodable if it is not
    JSON, Rejected if it is not a Stripe event."""
    event = json_decode(body)
    data = event.get("data") if isinstance(event, dict) else None
    if (not isinstance(event, dict) or event.get("object") != "event" or not isinstance(event.get("id"), str)
            or not isinstance(event.get("type"), str) or not isinstance(data, dict)
            or not isinstance(data.get("object"), dict)):
        raise Rejected("The body is not a Stripe event.", code="malformed")
    return VerifiedEvent(
        dedupe_key=event["id"], event_type=event["type"], payload=event,
        occurred_at=_created(event), store_ids=_store_ids(data["object"]),
        environment=mapping.environment(event))


def _check_timestamp(signature: str) -> None:
    """Signed within the tolerance of our clock, on both sides. The library checks only the past; a body
    signed for a later date could be replayed for as long as we accepted it. Every `t=` counts."""
    try:
        stamps = [int(item.partition("=")[2]) for item in signature.split(",") if item.startswith("t=")]
    except ValueError:
        stamps = []
    if not stamps:
        raise Rejected("The Stripe signature is not valid: it has no timestamp.", code="bad_signature")
    now = time.time()
    if min(stamps) < now - SIGNATURE_TOLERANCE_SECONDS:
        raise Rejected(f"The Stripe signature is not valid: its timestamp is more than "
                       f"{SIGNATURE_TOLERANCE_SECONDS} s old.", code="bad_signature")
    if max(stamps) > now + SIGNATURE_TOLERANCE_SECONDS:
        raise Rejected("The Stripe signature is not valid: its timestamp is in the future.", code="bad_signature")


def _created(event: dict):
    """When Stripe created the event; None for a value that is not a time (stored, not a 500)."""
    try:
        return datetime_from_seconds(event.get("created"))
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _bytes_signature_ok(body: bytes, signature: str) -> bool:
    """Stripe's v1 scheme over raw bytes, for a body the library cannot take as text."""
    items = [part.split("=", 1) for part in signature.split(",") if "=" in part]
    timestamps = [value for key, value in items if key == "t"]
    given = [value for key, value in items if key == "v1"]
    if len(timestamps) != 1 or not timestamps[0].isdigit() or not given:
        return False
    if abs(time.time() - int(timestamps[0])) > SIGNATURE_TOLERANCE_SECONDS:
        return False
    for secret in _webhook_secrets():
        expected = hmac.new(secret.encode(), timestamps[0].encode() + b"." + body, hashlib.sha256).hexdigest()
        if any(hmac.compare_digest(expected, value) for value in given):
            return True
    return False


def _webhook_secrets() -> list[str]:
    # Several comma-separated secrets: a rotation in the dashboard keeps the old one valid for a while.
    return [s.strip() for s in settings.STRIPE_WEBHOOK_SECRET.split(",") if s.strip()]


def _store_ids(obj: dict) -> tuple[str, ...]:
    """The ids support searches events by: the object's own, and the subscription, customer, invoice,
    charge and payment intent it names."""
    ids = [obj.get("id")]
    for key in ("subscription", "customer", "invoice", "charge", "payment_intent", "latest_invoice"):
        ids.append(mapping.obj_id(obj.get(key)))
    ids.append(mapping.invoice_subscription_id(obj) if obj.get("object") == "invoice" else None)
    return tuple(dict.fromkeys(i for i in ids if isinstance(i, str) and i))
