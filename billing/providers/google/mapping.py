"""Google Play's wire format → our values, as pure functions: the Real-time Developer Notification
(its kind, type name, store ids, time) and the SubscriptionPurchaseV2 that subscriptionsv2.get answers
(→ Snapshot, via `subscription_snapshot`).

The RTDN says only *that* something changed (and which purchase token): the state is always read
back with subscriptionsv2.get. Notification numbers 1-13 are from Google's reference; the later ones
from several independent sources (PROVIDERS.md §2.2). An unknown number is handled like any other:
re-read. Who the user is and whether the token is ours are decided from what we hold
(selectors.purchase_snapshot), which passes them in. Times are RFC 3339 strings; money is
{currencyCode, units, nanos}."""

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from billing.providers.base import PermanentError
from billing.providers.common import datetime_from_iso, datetime_from_millis, minor_from_units_nanos
from billing.snapshots import Environment, OfferKind, Provider, Snapshot, TransactionKind, TransactionRecord
from billing.statuses import Status

# --- The notification ---------------------------------------------------------------------------

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
SUBSCRIPTION_PURCHASED = 4
SUBSCRIPTION_REVOKED = 12
SUBSCRIPTION_PENDING_PURCHASE_CANCELED = 20

# The kinds of notification (the adapter's HANDLERS keys). A subscription notification's event type
# is its type's name; the others' event type is their kind.
SUBSCRIPTION = "SUBSCRIPTION_NOTIFICATION"
TEST = "TEST_NOTIFICATION"
ONE_TIME_PRODUCT = "ONE_TIME_PRODUCT_NOTIFICATION"
VOIDED_PURCHASE = "VOIDED_PURCHASE"
UNDECODABLE = "UNDECODABLE"  # authentic, but message.data is no notification
UNKNOWN = "UNKNOWN_NOTIFICATION"

_KINDS = (("subscriptionNotification", SUBSCRIPTION), ("voidedPurchaseNotification", VOIDED_PURCHASE),
          ("oneTimeProductNotification", ONE_TIME_PRODUCT), ("testNotification", TEST))

PRODUCT_TYPE_SUBSCRIPTION = 1
REFUND_TYPE_FULL = 1


def subscription_type_name(number) -> str:
    try:
        number = int(number)
    except (TypeError, ValueError):
        return "SUBSCRIPTION_UNKNOWN"
    return SUBSCRIPTION_TYPES.get(number, f"SUBSCRIPTION_UNKNOWN_{number}")


def notification_kind(notification: dict) -> str:
    return next((kind for key, kind in _KINDS if key in notification), UNKNOWN)


def event_type(notification: dict) -> str:
    kind = notification_kind(notification)
    if kind == SUBSCRIPTION:
        return subscription_type_name((notification["subscriptionNotification"] or {}).get("notificationType"))
    return kind


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
        return datetime_from_millis(notification.get("eventTimeMillis"))
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def unhandled_kinds(notification: dict) -> list[str]:
    """The members of a notification of a kind we do not know (what support reads in the outcome)."""
    return sorted(k for k in notification if k not in ("version", "packageName", "eventTimeMillis"))


def one_time_product_sku(notification: dict):
    return (notification.get("oneTimeProductNotification") or {}).get("sku")


@dataclass(frozen=True)
class SubscriptionNotice:
    """A subscriptionNotification: which purchase changed and the notification's number."""

    purchase_token: str | None
    number: int | None

    @classmethod
    def of(cls, notification: dict) -> "SubscriptionNotice":
        inner = notification.get("subscriptionNotification") or {}
        return cls(purchase_token=inner.get("purchaseToken"), number=inner.get("notificationType"))


@dataclass(frozen=True)
class VoidedPurchase:
    """A voidedPurchaseNotification: an order refunded or charged back."""

    purchase_token: str | None
    order_id: str | None
    product_type: int | None
    refund_type: int | None  # 1: full refund; 2: quantity-based partial refund

    @classmethod
    def of(cls, notification: dict) -> "VoidedPurchase":
        inner = notification.get("voidedPurchaseNotification") or {}
        return cls(purchase_token=inner.get("purchaseToken"), order_id=inner.get("orderId"),
                   product_type=inner.get("productType"), refund_type=inner.get("refundType"))

    @property
    def is_subscription(self) -> bool:
        return self.product_type == PRODUCT_TYPE_SUBSCRIPTION

    @property
    def full_refund(self) -> bool:
        return self.refund_type == REFUND_TYPE_FULL


# The Voided Purchases API lists what Google saw voided in the last 30 days.
VOIDED_LIST_DAYS = 30


def voided_list_start(event_at: datetime | None, now: datetime) -> datetime:
    """Where to start looking for a voided order: a day before the notification says it happened
    (its time is the sender's word), never before what the API keeps."""
    oldest = now - timedelta(days=VOIDED_LIST_DAYS) + timedelta(minutes=1)
    if event_at is None:
        return oldest
    return max(oldest, min(event_at, now) - timedelta(days=1))


def matching_void(page: dict, voided: VoidedPurchase) -> dict | None:
    """The VoidedPurchase of a voidedpurchases.list page that confirms the notification: the same
    purchase token, and the same order when the notification names one (a real voided order paired
    with another purchase's token confirms nothing)."""
    for entry in (page or {}).get("voidedPurchases") or []:
        if not isinstance(entry, dict) or entry.get("purchaseToken") != voided.purchase_token:
            continue
        if voided.order_id and entry.get("orderId") != voided.order_id:
            continue
        return entry
    return None


def voided_at(entry: dict) -> datetime | None:
    """When Google says the order was voided (`voidedTimeMillis`, an int64 string)."""
    try:
        return datetime_from_millis(entry.get("voidedTimeMillis"))
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def next_page_token(page: dict) -> str | None:
    return ((page or {}).get("tokenPagination") or {}).get("nextPageToken") or None


# --- The purchase (subscriptionsv2.get) ---------------------------------------------------------

ACKNOWLEDGEMENT_WINDOW = timedelta(days=3)  # unacknowledged purchases are refunded by Google after this

STATE_PREFIX = "SUBSCRIPTION_STATE_"
STATES = {
    "ACTIVE": Status.ACTIVE,
    "IN_GRACE_PERIOD": Status.ON_GRACE,
    "ON_HOLD": Status.ON_HOLD,
    "PAUSED": Status.PAUSED,
    "CANCELED": Status.CANCELED,
    "EXPIRED": Status.EXPIRED,
    "PENDING": Status.INACTIVE,  # awaiting payment at sign-up: no access yet
    "PENDING_PURCHASE_CANCELED": Status.INACTIVE,  # that payment never came
}
PENDING_STATES = ("PENDING", "PENDING_PURCHASE_CANCELED")
# States in which a purchase was granted and must be acknowledged (never while PENDING).
ACKNOWLEDGEABLE_STATES = ("ACTIVE", "IN_GRACE_PERIOD", "CANCELED", "ON_HOLD", "PAUSED")

_RENEWAL_ORDER = re.compile(r"\.\.\d+$")  # GPA.1234-5678-9012-34567..0 is the first renewal


def _price(money: dict | None) -> tuple[int | None, str | None]:
    """Google Money → (integer minor units, currency)."""
    currency = str((money or {}).get("currencyCode") or "").upper()
    if not currency:
        return None, None
    return minor_from_units_nanos(money.get("units"), money.get("nanos"), currency), currency


def state_name(purchase: dict) -> str:
    return str(purchase.get("subscriptionState") or "").removeprefix(STATE_PREFIX)


def needs_acknowledgement(purchase: dict) -> bool:
    return (purchase.get("acknowledgementState") == "ACKNOWLEDGEMENT_STATE_PENDING"
            and state_name(purchase) in ACKNOWLEDGEABLE_STATES)


def product_id(purchase: dict) -> str:
    """The Play product id (what acknowledge needs as subscriptionId)."""
    items = purchase.get("lineItems") or []
    return str(items[0].get("productId") or "") if items else ""


def store_product_id(purchase: dict) -> str:
    """The catalogue key: `productId:basePlanId` (one Play subscription holds several base plans,
    e.g. monthly and quarterly, which staff may map differently), or the product id alone."""
    items = purchase.get("lineItems") or []
    if not items:
        return ""
    base_plan = (items[0].get("offerDetails") or {}).get("basePlanId")
    return f"{items[0].get('productId')}:{base_plan}" if base_plan else str(items[0].get("productId") or "")


def obfuscated_account_id(purchase: dict) -> str:
    return str((purchase.get("externalAccountIdentifiers") or {}).get("obfuscatedExternalAccountId") or "")


def out_of_app_context(purchase: dict) -> tuple[str, str]:
    """A resubscribe from the Play subscription center: (the expired token, its account id). Google
    clears this once the purchase is acknowledged, so it is read before acknowledging."""
    context = purchase.get("outOfAppPurchaseContext") or {}
    account = (context.get("expiredExternalAccountIdentifiers") or {}).get("obfuscatedExternalAccountId") or ""
    return str(context.get("expiredPurchaseToken") or ""), str(account)


@dataclass(frozen=True)
class Who:
    """The user link decided from what we hold (selectors.purchase_buyer)."""

    user_id: str | None = None
    identity_value: str | None = None  # google_obfuscated_account_id


def subscription_snapshot(token: str, purchase: dict, *, observed_at: datetime, who: Who = Who(),
                          revoked: bool = False, event_time: datetime | None = None,
                          extra_transactions: tuple[TransactionRecord, ...] = ()) -> Snapshot:
    """Map the store's state. `revoked`: the purchase was refunded/revoked (RTDN 12, a voided purchase,
    or already REVOKED here), so a lapsed state reads REVOKED rather than EXPIRED."""
    name = state_name(purchase)
    if name not in STATES:
        raise PermanentError(f"Google subscriptionState {purchase.get('subscriptionState')!r} is not one we know")
    items = purchase.get("lineItems") or []
    expiries = [t for t in (datetime_from_iso(i.get("expiryTime")) for i in items) if t is not None]
    expires_at = max(expiries) if expiries else None
    status = STATES[name]
    if status == Status.ACTIVE and any("freeTrial" in (i.get("offerPhase") or {}) for i in items):
        status = Status.TRIAL
    if revoked and status == Status.EXPIRED:
        status = Status.REVOKED

    plans = [i.get("autoRenewingPlan") for i in items if i.get("autoRenewingPlan") is not None]
    auto_renew = any(p.get("autoRenewEnabled") is True for p in plans) if items else None
    amount, currency = _price(plans[0].get("recurringPrice") if plans else None)
    started_at = datetime_from_iso(purchase.get("startTime"))
    cancel_context = purchase.get("canceledStateContext") or {}
    canceled_at = datetime_from_iso((cancel_context.get("userInitiatedCancellation") or {}).get("cancelTime"))
    due = started_at + ACKNOWLEDGEMENT_WINDOW if needs_acknowledgement(purchase) and started_at else None
    linked = purchase.get("linkedPurchaseToken") or None
    return Snapshot(
        provider=Provider.GOOGLE,
        provider_subscription_id=token,
        status=status,
        observed_at=observed_at,
        store_product_id=store_product_id(purchase),
        user_id=who.user_id,
        identity_field="google_obfuscated_account_id" if who.identity_value else None,
        identity_value=who.identity_value or None,
        environment=Environment.SANDBOX if "testPurchase" in purchase else Environment.PRODUCTION,
        amount_minor=amount,
        upcoming_amount_minor=amount if auto_renew else None,
        currency=currency,
        auto_renew=auto_renew,
        started_at=started_at,
        current_period_end=expires_at,
        expires_at=expires_at,
        grace_until=expires_at if status == Status.ON_GRACE else None,
        canceled_at=canceled_at,
        ended_at=(observed_at if status == Status.REVOKED else expires_at) if status in (
            Status.EXPIRED, Status.REVOKED) else None,
        # A pending purchase (an upgrade not yet paid) replaces nothing yet: the old one stays live.
        replaces=None if name in PENDING_STATES else linked,
        acknowledgement_due_at=due,
        acknowledged=True if purchase.get("acknowledgementState") == "ACKNOWLEDGEMENT_STATE_ACKNOWLEDGED" else None,
        transactions=_transactions(purchase, observed_at=event_time or observed_at, currency=currency,
                                   amount=amount) + tuple(extra_transactions),
        raw=purchase,
        note=f"Google state {name}",
    )


def offer_kind(item: dict, *, first_order: bool, purchase: dict) -> str:
    """The offer an order was charged under: the line item's offer phase, or the signup promotion
    (a promo code) of the first order."""
    phase = item.get("offerPhase") or {}
    if "freeTrial" in phase:
        return OfferKind.FREE_TRIAL
    if "introductoryPrice" in phase:
        return OfferKind.INTRODUCTORY
    if first_order and purchase.get("signupPromotion"):
        return OfferKind.OFFER_CODE
    return ""


def _transactions(purchase: dict, *, observed_at: datetime, currency, amount) -> tuple[TransactionRecord, ...]:
    """One per successful order: the purchase and each renewal (`..N`) are distinct transactions. The
    amount is the plan's recurring price when the order was charged at it (not a trial, intro price
    or proration, whose amounts the purchase does not carry). The period it pays for ends at the line
    item's expiry (the latest successful order's); Google gives its start only for the first order."""
    records = {}
    started_at = datetime_from_iso(purchase.get("startTime")) or observed_at
    for item in purchase.get("lineItems") or []:
        order_id = item.get("latestSuccessfulOrderId")
        if not order_id or order_id in records:
            continue
        phase = item.get("offerPhase") or {}
        item_amount, item_currency = _price((item.get("autoRenewingPlan") or {}).get("recurringPrice"))
        if "freeTrial" in phase:
            item_amount = 0
        elif phase and "basePrice" not in phase:
            item_amount = None
        renewal = bool(_RENEWAL_ORDER.search(order_id))
        records[order_id] = TransactionRecord(
            provider_transaction_id=order_id,
            kind=TransactionKind.RENEWAL if renewal else TransactionKind.PURCHASE,
            occurred_at=observed_at if renewal else started_at,
            amount_minor=item_amount, currency=item_currency or currency or "",
            raw={"orderId": order_id, "productId": item.get("productId"),
                 "basePlanId": (item.get("offerDetails") or {}).get("basePlanId")},
            order_id=order_id, store_product_id=item.get("productId") or "",
            period_start=None if renewal else datetime_from_iso(purchase.get("startTime")),
            period_end=datetime_from_iso(item.get("expiryTime")), country=purchase.get("regionCode") or "",
            offer_kind=offer_kind(item, first_order=not renewal, purchase=purchase))
    return tuple(records.values())


# Voided purchases: voidedReason 7 is a chargeback; the others (remorse, not received, fraud, …) refunds.
CHARGEBACK_VOIDED_REASON = 7


def refund_transaction(*, order_id: str, occurred_at: datetime, amount_minor: int | None, currency: str,
                       refund_type, voided_reason=None) -> TransactionRecord:
    chargeback = voided_reason == CHARGEBACK_VOIDED_REASON
    return TransactionRecord(
        provider_transaction_id=f"refund:{order_id}", kind=TransactionKind.CHARGEBACK if chargeback else
        TransactionKind.REFUND, occurred_at=occurred_at, amount_minor=amount_minor, currency=currency or "",
        raw={"orderId": order_id, "refundType": refund_type, "voidedReason": voided_reason},
        order_id=order_id, refers_to=order_id)


def voided_snapshot(token: str, *, at: datetime, transactions: tuple[TransactionRecord, ...]) -> Snapshot:
    """A voided purchase Google no longer knows: what the notification says is all there is."""
    return Snapshot(provider=Provider.GOOGLE, provider_subscription_id=token, status=Status.REVOKED,
                    observed_at=at, ended_at=at, transactions=transactions,
                    note="voided purchase (refund or chargeback)")
