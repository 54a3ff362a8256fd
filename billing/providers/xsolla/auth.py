"""Xsolla's webhook authentication and its answers.

The signature: `Authorization: Signature <sha1_hex(raw_body + project_secret_key)>`. A plain SHA-1 of
the concatenation, not an HMAC (as the official PHP SDK's WebhookAuthenticator checks it), over the
raw request bytes: re-serialised JSON would hash differently. Then the body must be a JSON object with a
`notification_type` and, for a notification we act on, its ids; anything else is refused in Xsolla's
error shape (`XsollaDialect`: Xsolla retries only on 5xx, so whatever the sender must fix is a 400). A
signed body that is not JSON at all (not UTF-8, nested too deep) is Undecodable: stored as failed and
answered 400 INVALID_PARAMETER (never a 204: it could be a user validation we cannot read)."""

import hashlib
import hmac
import re
from collections.abc import Mapping

from django.conf import settings

from billing.providers.base import Answer, Rejected, VerifiedEvent, WebhookDialect
from billing.providers.common import as_dict, digest, header, json_decode
from billing.snapshots import Environment

from . import mapping

# Xsolla's error codes (its documentation lists these for the 400 answer).
INVALID_SIGNATURE = "INVALID_SIGNATURE"
INVALID_USER = "INVALID_USER"
INVALID_PARAMETER = "INVALID_PARAMETER"
_XSOLLA_CODES = frozenset({INVALID_SIGNATURE, INVALID_USER, INVALID_PARAMETER, "INCORRECT_AMOUNT",
                           "INCORRECT_INVOICE"})

_HEADER = re.compile(r"^Signature ([0-9a-fA-F]{40})$")


class XsollaDialect(WebhookDialect):
    def success(self, *, duplicate: bool) -> Answer:
        """204 and no body, for a first delivery and a repeat alike."""
        return Answer(204)

    def error(self, *, status: int, code: str, message: str) -> Answer:
        """Xsolla retries only on 5xx: a server-side failure keeps its 5xx (503 for settings missing or
        the database down, as every store answers); everything the sender must fix is 400 with one of
        Xsolla's codes."""
        if status >= 500:
            code = (code or "SERVER_ERROR").upper()
        else:
            status = 400
            code = code if code in _XSOLLA_CODES else INVALID_PARAMETER
        return Answer(status, {"error": {"code": code, "message": message}})

    def stored_undecodable(self, *, reason: str) -> Answer:
        """Stored as failed, answered as Xsolla's "invalid parameter" (it stops retrying): its type is
        unknown, and a 204 would confirm a user validation nobody could read."""
        return self.error(status=400, code=INVALID_PARAMETER, message=f"{reason} (stored for review)")


# --- The signature ----------------------------------------------------------------------------

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


# --- The delivery -----------------------------------------------------------------------------

def webhook_authenticate(headers: Mapping[str, str], body: bytes, query: Mapping[str, str]) -> VerifiedEvent:
    """The signed notification as a VerifiedEvent; Rejected (400 INVALID_SIGNATURE or INVALID_PARAMETER)
    for anything else. No database, no call to Xsolla."""
    if not signature_ok(body, header(headers, "Authorization"), settings.XSOLLA_WEBHOOK_SECRET):
        raise Rejected("The Authorization header does not carry the body's signature.", status=400,
                       code=INVALID_SIGNATURE)
    return webhook_decode(body)


def webhook_decode(body: bytes) -> VerifiedEvent:
    """A signed body decoded (at arrival, or again from the stored bytes): Undecodable if it is not
    JSON, Rejected (INVALID_PARAMETER) if it is not a notification."""
    payload = json_decode(body)
    if not isinstance(payload, dict):
        raise Rejected("The body is not a JSON object.", code=INVALID_PARAMETER)
    event_type = payload.get("notification_type")
    if not isinstance(event_type, str) or not event_type.strip():
        raise Rejected("notification_type is missing.", code=INVALID_PARAMETER)
    event_type = event_type.strip()
    _check_required(event_type, payload)
    sub = mapping.notification_subscription(payload)
    ids = (sub.subscription_id if sub else "", mapping.transaction_id_of(payload), mapping.user_id_of(payload))
    return VerifiedEvent(
        dedupe_key=dedupe_key(event_type, payload),
        event_type=event_type,
        payload=payload,
        occurred_at=mapping.payment_time(payload),
        store_ids=tuple(i for i in ids if i),
        environment=Environment.SANDBOX if mapping.is_dry_run(payload) else "",
    )


def dedupe_key(event_type: str, payload: dict) -> str:
    """Xsolla sends no notification id, so the key is built from what the notification is about:

    - payment / refund / afs_reject: the type and `transaction.id` (Xsolla: "if a transaction id repeats,
      return the previous result");
    - partial_refund: also a digest of `payment_details` (one payment can be partially refunded twice);
    - subscription notifications: the type, `subscription_id` and a digest of the whole `subscription`
      object: a repeated delivery carries the same object, two renewals differ in date_next_charge,
      a plan change in plan_id;
    - anything else (user_validation, types we ignore): the type and a digest of the whole body."""
    tx_id = mapping.transaction_id_of(payload)
    if event_type in (mapping.PAYMENT, mapping.REFUND, mapping.AFS_REJECT) and tx_id:
        return f"{event_type}:{tx_id}"
    if event_type == mapping.PARTIAL_REFUND and tx_id:
        return f"{event_type}:{tx_id}:{digest(as_dict(payload.get('payment_details')))}"
    sub = as_dict(payload.get("subscription"))
    sub_id = mapping.id_str(sub.get("subscription_id"))
    if event_type in mapping.SUBSCRIPTION_TYPES and sub_id:
        normalized = {**sub, "subscription_id": sub_id, "plan_id": mapping.id_str(sub.get("plan_id"))}
        return f"{event_type}:{sub_id}:{digest(normalized)}"
    return f"{event_type}:{digest(payload)}"


def _check_required(event_type: str, payload: dict) -> None:
    """What a notification we act on must carry; without it Xsolla gets a 400 INVALID_PARAMETER."""
    if event_type == mapping.USER_VALIDATION and not mapping.user_id_of(payload):
        raise Rejected("user.id is missing.", code=INVALID_PARAMETER)
    subscription = as_dict(payload.get("subscription"))
    if event_type in mapping.SUBSCRIPTION_TYPES and not mapping.id_str(subscription.get("subscription_id")):
        raise Rejected("subscription.subscription_id is missing.", code=INVALID_PARAMETER)
    if event_type in mapping.TRANSACTION_TYPES and not mapping.transaction_id_of(payload):
        raise Rejected("transaction.id is missing.", code=INVALID_PARAMETER)
