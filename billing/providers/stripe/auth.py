"""Webhook authentication: the Stripe-Signature header checked on the raw bytes with the stripe
library, then the body decoded into a VerifiedEvent. No API call, no writes."""

import json
import time
from collections.abc import Mapping

import stripe
from django.conf import settings

from billing.providers.base import Rejected, VerifiedEvent
from billing.providers.common import datetime_from_seconds, header

from . import mapping

SIGNATURE_TOLERANCE_SECONDS = 300


def webhook_authenticate(headers: Mapping[str, str], body: bytes, query: Mapping[str, str]) -> VerifiedEvent:
    signature = header(headers, "Stripe-Signature")
    if not signature:
        raise Rejected("The Stripe-Signature header is missing.", code="missing_signature")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise Rejected("The body is not UTF-8.", code="malformed") from None
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
    try:
        event = json.loads(text)
    except ValueError:
        raise Rejected("The body is not JSON.", code="malformed") from None
    data = event.get("data") if isinstance(event, dict) else None
    if (not isinstance(event, dict) or event.get("object") != "event" or not isinstance(event.get("id"), str)
            or not isinstance(event.get("type"), str) or not isinstance(data, dict)
            or not isinstance(data.get("object"), dict)):
        raise Rejected("The body is not a Stripe event.", code="malformed")
    return VerifiedEvent(
        dedupe_key=event["id"], event_type=event["type"], payload=event,
        occurred_at=datetime_from_seconds(event.get("created")), store_ids=_store_ids(data["object"]),
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
