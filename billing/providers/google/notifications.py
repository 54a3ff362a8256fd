"""The Pub/Sub push envelope and the Real-time Developer Notification inside it.

The RTDN says only *that* something changed (and which purchase token): the state is always read
back with subscriptionsv2.get. Numbers 1-13 are from Google's reference; the later ones from several
independent sources (PROVIDERS.md §2.2). An unknown number is handled like any other: re-read."""

import base64
import binascii
import json
from datetime import UTC, datetime

from billing.providers.base import Rejected

SUBSCRIPTION_TYPES = {
    1: "SUBSCRIPTION_RECOVERED",
    2: "SUBSCRIPTION_RENEWED",
    3: "SUBSCRIPTION_CANCELED",
    4: "SUBSCRIPTION_PURCHASED",
    5: "SUBSCRIPTION_ON_HOLD",
    6: "SUBSCRIPTION_IN_GRACE_PERIOD",
    7: "SUBSCRIPTION_RESTARTED",
    8: "SUBSCRIPTION_PRICE_CHANGE_CONFIRMED",
    9: "SUBSCRIPTION_DEFERRED",
    10: "SUBSCRIPTION_PAUSED",
    11: "SUBSCRIPTION_PAUSE_SCHEDULE_CHANGED",
    12: "SUBSCRIPTION_REVOKED",
    13: "SUBSCRIPTION_EXPIRED",
    17: "SUBSCRIPTION_ITEMS_CHANGED",
    18: "SUBSCRIPTION_CANCELLATION_SCHEDULED",
    19: "SUBSCRIPTION_PRICE_CHANGE_UPDATED",
    20: "SUBSCRIPTION_PENDING_PURCHASE_CANCELED",
    22: "SUBSCRIPTION_PRICE_STEP_UP_CONSENT_UPDATED",
}
SUBSCRIPTION_REVOKED = 12
SUBSCRIPTION_PENDING_PURCHASE_CANCELED = 20

# event_type values of what is not a subscription notification
TEST = "TEST_NOTIFICATION"
ONE_TIME_PRODUCT = "ONE_TIME_PRODUCT_NOTIFICATION"
VOIDED_PURCHASE = "VOIDED_PURCHASE"
UNDECODABLE = "UNDECODABLE"
UNKNOWN = "UNKNOWN_NOTIFICATION"

PRODUCT_TYPE_SUBSCRIPTION = 1


def subscription_type_name(number) -> str:
    try:
        number = int(number)
    except (TypeError, ValueError):
        return "SUBSCRIPTION_UNKNOWN"
    return SUBSCRIPTION_TYPES.get(number, f"SUBSCRIPTION_UNKNOWN_{number}")


def parse_envelope(body: bytes) -> dict:
    """The push body → {"message_id", "publish_time", "subscription", "attributes", "delivery_attempt",
    "notification" (dict) or "undecodable" (why)}. Raises Rejected for a body that is no Pub/Sub push."""
    try:
        envelope = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Rejected("The body is not JSON.", code="malformed") from exc
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
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        # Authentic but unreadable: redelivery would never fix it, so it is kept and answered 2xx.
        parsed["undecodable"] = f"message.data is not a base64 JSON DeveloperNotification ({exc})"
        return parsed
    parsed["notification"] = notification
    return parsed


def event_type(notification: dict) -> str:
    if "subscriptionNotification" in notification:
        return subscription_type_name((notification["subscriptionNotification"] or {}).get("notificationType"))
    if "voidedPurchaseNotification" in notification:
        return VOIDED_PURCHASE
    if "oneTimeProductNotification" in notification:
        return ONE_TIME_PRODUCT
    if "testNotification" in notification:
        return TEST
    return UNKNOWN


def store_ids(notification: dict) -> tuple[str, ...]:
    ids = []
    for key in ("subscriptionNotification", "voidedPurchaseNotification", "oneTimeProductNotification"):
        inner = notification.get(key)
        if isinstance(inner, dict):
            ids += [inner.get(k) for k in ("purchaseToken", "subscriptionId", "orderId", "sku")]
    return tuple(str(i) for i in ids if i)


def event_time(notification: dict) -> datetime | None:
    """`eventTimeMillis` arrives as a string (an int64 in JSON)."""
    try:
        return datetime.fromtimestamp(int(notification.get("eventTimeMillis")) / 1000, tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None
