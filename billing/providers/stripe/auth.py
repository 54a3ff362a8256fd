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
    # The signature covers the raw bytes: verified before anything is parsed, never re-serialized.
    error = None
    for secret in _webhook_secrets():
        try:
            stripe.WebhookSignature.verify_header(text, signature, secret, tolerance=SIGNATURE_TOLERANCE_SECONDS)
            break
        except stripe.SignatureVerificationError as exc:
            error = exc
    else:
        reason = str(getattr(error, "user_message", None) or error or "no webhook secret")
        raise Rejected(f"The Stripe signature is not valid: {reason}", code="bad_signature")
    _refuse_future(signature)
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


def _refuse_future(signature: str) -> None:
    """The library checks only the past side of the tolerance; a signature dated further ahead than the
    same tolerance (clock skew) is refused too: a body signed for later replays for as long as we accept it."""
    try:  # every `t=` counts (the library reads the last one), so no second one can slip past
        signed_at = max(int(item.partition("=")[2]) for item in signature.split(",") if item.startswith("t="))
    except ValueError:  # none, or not a number: the library has refused these already; kept as a guard
        raise Rejected("The Stripe signature has no timestamp.", code="bad_signature") from None
    if signed_at > time.time() + SIGNATURE_TOLERANCE_SECONDS:
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
