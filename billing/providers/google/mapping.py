"""SubscriptionPurchaseV2 (the subscriptionsv2.get response) → Snapshot.

Pure functions: who the user is and whether the token is ours are decided by the adapter, which
passes them in. Times are RFC 3339 strings; money is {currencyCode, units, nanos}."""

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from billing.money import exponent as currency_exponent
from billing.providers.base import PermanentError
from billing.snapshots import Environment, Provider, Snapshot, TransactionKind, TransactionRecord
from billing.statuses import Status

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


def parse_time(value) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def money_minor(money: dict | None) -> tuple[int | None, str | None]:
    """Google Money → (integer minor units, currency)."""
    if not money or not money.get("currencyCode"):
        return None, None
    currency = money["currencyCode"].upper()
    exponent = currency_exponent(currency)
    units = int(money.get("units") or 0)
    nanos = int(money.get("nanos") or 0)
    return units * 10**exponent + round(nanos / 10 ** (9 - exponent)), currency


def state_name(purchase: dict) -> str:
    return str(purchase.get("subscriptionState") or "").removeprefix(STATE_PREFIX)


def is_pending(purchase: dict) -> bool:
    return state_name(purchase) in PENDING_STATES


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
    """The user link the adapter decided on (see adapter._who)."""

    user_id: str | None = None
    identity_value: str | None = None  # google_obfuscated_account_id


def to_snapshot(token: str, purchase: dict, *, observed_at: datetime, who: Who = Who(), revoked: bool = False,
                event_time: datetime | None = None, extra_transactions: tuple[TransactionRecord, ...] = ()
                ) -> Snapshot:
    """Map the store's state. `revoked`: the purchase was refunded/revoked (RTDN 12, a voided purchase,
    or already REVOKED here), so a lapsed state reads REVOKED rather than EXPIRED."""
    name = state_name(purchase)
    if name not in STATES:
        raise PermanentError(f"Google subscriptionState {purchase.get('subscriptionState')!r} is not one we know")
    items = purchase.get("lineItems") or []
    expiries = [t for t in (parse_time(i.get("expiryTime")) for i in items) if t is not None]
    expires_at = max(expiries) if expiries else None
    status = STATES[name]
    if status == Status.ACTIVE and any("freeTrial" in (i.get("offerPhase") or {}) for i in items):
        status = Status.TRIAL
    if revoked and status == Status.EXPIRED:
        status = Status.REVOKED

    plans = [i.get("autoRenewingPlan") for i in items if i.get("autoRenewingPlan") is not None]
    auto_renew = any(p.get("autoRenewEnabled") is True for p in plans) if items else None
    amount, currency = money_minor(plans[0].get("recurringPrice") if plans else None)
    started_at = parse_time(purchase.get("startTime"))
    cancel_context = purchase.get("canceledStateContext") or {}
    canceled_at = parse_time((cancel_context.get("userInitiatedCancellation") or {}).get("cancelTime"))

    acknowledged = purchase.get("acknowledgementState") == "ACKNOWLEDGEMENT_STATE_ACKNOWLEDGED"
    due = None
    if needs_acknowledgement(purchase) and started_at is not None:
        due = started_at + ACKNOWLEDGEMENT_WINDOW

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
        acknowledged=True if acknowledged else None,
        transactions=_transactions(purchase, observed_at=event_time or observed_at, currency=currency,
                                   amount=amount) + tuple(extra_transactions),
        raw=purchase,
        note=f"Google state {name}",
    )


def _transactions(purchase: dict, *, observed_at: datetime, currency, amount) -> tuple[TransactionRecord, ...]:
    """One per successful order: the purchase and each renewal (`..N`) are distinct transactions. The
    amount is the plan's recurring price when the order was charged at it (not a trial, intro price
    or proration, whose amounts the purchase does not carry)."""
    records = {}
    started_at = parse_time(purchase.get("startTime")) or observed_at
    for item in purchase.get("lineItems") or []:
        order_id = item.get("latestSuccessfulOrderId")
        if not order_id or order_id in records:
            continue
        phase = item.get("offerPhase") or {}
        item_amount, item_currency = money_minor((item.get("autoRenewingPlan") or {}).get("recurringPrice"))
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
                 "basePlanId": (item.get("offerDetails") or {}).get("basePlanId")})
    return tuple(records.values())


def refund_transaction(*, order_id: str, occurred_at: datetime, amount_minor: int | None, currency: str,
                       refund_type) -> TransactionRecord:
    return TransactionRecord(
        provider_transaction_id=f"refund:{order_id}", kind=TransactionKind.REFUND, occurred_at=occurred_at,
        amount_minor=amount_minor, currency=currency or "",
        raw={"orderId": order_id, "refundType": refund_type})
