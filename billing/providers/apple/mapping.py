"""Decoded App Store data (notification, transaction, renewal info; all verified) → Snapshots.

The notification type is the trigger; the state comes from the verified data: `data.status` (1 active,
2 expired, 3 billing retry, 4 grace period, 5 revoked), the transaction and the renewal info. Types are
switched on as raw strings: a type or subtype the library does not know yet is still seen as itself.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal

from billing.money import to_minor
from billing.providers.base import ParseResult
from billing.snapshots import Provider, Snapshot, TransactionKind, TransactionRecord
from billing.statuses import Status

# data.status of a notification / lastTransactions item.
ACTIVE, EXPIRED, BILLING_RETRY, GRACE_PERIOD, REVOKED = 1, 2, 3, 4, 5

# Types about an auto-renewable subscription's state.
SUBSCRIPTION_TYPES = frozenset({
    "SUBSCRIBED", "DID_RENEW", "DID_CHANGE_RENEWAL_STATUS", "DID_CHANGE_RENEWAL_PREF", "OFFER_REDEEMED",
    "DID_FAIL_TO_RENEW", "GRACE_PERIOD_EXPIRED", "EXPIRED", "REFUND", "REFUND_DECLINED", "REFUND_REVERSED",
    "REVOKE", "RENEWAL_EXTENDED", "PRICE_INCREASE",
})
# Types that exist but say nothing about a subscription's state.
NOT_SUBSCRIPTION_TYPES = {
    "ONE_TIME_CHARGE": "a consumable, non-consumable or non-renewing purchase, not a subscription",
    "EXTERNAL_PURCHASE_TOKEN": "External Purchase API token report, not an App Store subscription",
    "RESCIND_CONSENT": "parental consent withdrawn (no transaction)",
    "METADATA_UPDATE": "Advanced Commerce API metadata, not a StoreKit subscription",
    "MIGRATION": "Advanced Commerce API migration, not a StoreKit subscription",
    "PRICE_CHANGE": "Advanced Commerce API price change, not a StoreKit subscription",
}
AUTO_RENEWABLE = "Auto-Renewable Subscription"

_INTEGER_TOKEN = re.compile(r"^([0-9a-f]{8})-0000-0000-0000-000000000000$")


# --- Small conversions ------------------------------------------------------------------------

def ms_to_datetime(value) -> datetime | None:
    if value in (None, ""):
        return None
    return datetime.fromtimestamp(int(value) / 1000, tz=UTC)


def milli_to_minor(price, currency: str | None) -> int | None:
    """Apple prices are in milli-units (1990 = 1.990 AUD): to the currency's minor units (199 cents)."""
    if price is None or not currency:
        return None
    code = currency.upper()
    return to_minor(Decimal(int(price)) / 1000, code)


def user_link(app_account_token) -> dict:
    """Who bought: the app's integer user id when the token is `%08x-0000-0000-0000-000000000000`,
    else the token as the subscriber's stored identity; nothing when the app set no (valid) token."""
    if not app_account_token:
        return {}
    try:
        token = str(uuid.UUID(str(app_account_token)))
    except ValueError:
        return {}
    link = {"identity_field": "apple_app_account_token", "identity_value": token}
    match = _INTEGER_TOKEN.match(token)
    if match:
        link["user_id"] = str(int(match.group(1), 16))
    return link


def app_account_token_for_user(user_id: int) -> str:
    """The token an app sets for an integer user id (what user_link maps back)."""
    return f"{int(user_id):08x}-0000-0000-0000-000000000000"


def is_free_trial(transaction: dict) -> bool:
    if transaction.get("offerType") != 1:  # 1 = introductory offer
        return False
    discount = transaction.get("offerDiscountType")
    return discount == "FREE_TRIAL" or (discount is None and not transaction.get("price"))


def is_current(transaction: dict, renewal: dict | None) -> bool:
    """Whether the transaction is the subscription's latest period (a REFUND or CONSUMPTION_REQUEST can
    be about an older one). The renewal info's renewalDate is when the latest period ends."""
    renewal_date = (renewal or {}).get("renewalDate")
    expires = transaction.get("expiresDate")
    return renewal_date is None or expires is None or int(expires) >= int(renewal_date)


# --- Status -----------------------------------------------------------------------------------

def status_for(*, kind: str | None, subtype: str | None, status_code: int | None, transaction: dict,
               renewal: dict | None) -> str:
    """The unified status (PROVIDERS.md §1.2 and §5). `kind` None: an API answer (state only)."""
    current = is_current(transaction, renewal)
    if kind == "EXPIRED":
        return Status.EXPIRED
    if kind == "GRACE_PERIOD_EXPIRED":  # grace over, Apple still retrying: no access (not EXPIRED)
        return Status.ON_HOLD
    if kind == "DID_FAIL_TO_RENEW":
        # Trust the subtype and gracePeriodExpiresDate, not isInBillingRetryPeriod alone.
        grace = subtype == "GRACE_PERIOD" and (renewal or {}).get("gracePeriodExpiresDate")
        return Status.ON_GRACE if grace else Status.ON_HOLD
    if kind == "REVOKE":
        return Status.REVOKED
    if kind == "REFUND" and (status_code == REVOKED or current):
        return Status.REVOKED
    return _status_from_state(status_code, transaction, renewal, current,
                              revoked_now=kind not in ("REFUND", "REFUND_REVERSED"))


def _status_from_state(status_code, transaction, renewal, current, *, revoked_now: bool) -> str:
    if status_code == REVOKED or (revoked_now and current and transaction.get("revocationDate")):
        return Status.REVOKED
    if status_code == EXPIRED:
        return Status.EXPIRED
    if status_code == BILLING_RETRY:
        return Status.ON_HOLD
    if status_code == GRACE_PERIOD:
        return Status.ON_GRACE if (renewal or {}).get("gracePeriodExpiresDate") else Status.ON_HOLD
    if renewal is not None and renewal.get("autoRenewStatus") == 0:
        return Status.CANCELED
    if current and is_free_trial(transaction):
        return Status.TRIAL
    return Status.ACTIVE


# --- Snapshots --------------------------------------------------------------------------------

def transaction_records(transaction: dict) -> tuple[TransactionRecord, ...]:
    """The money facts of a transaction: its purchase or renewal, and its refund if revoked.
    A family member's access is paid by the organizer (recorded on the organizer's subscription)."""
    if transaction.get("inAppOwnershipType") == "FAMILY_SHARED" or not transaction.get("transactionId"):
        return ()
    tid = str(transaction["transactionId"])
    currency = (transaction.get("currency") or "").upper()
    amount = milli_to_minor(transaction.get("price"), currency)
    raw = {k: transaction.get(k) for k in ("transactionId", "originalTransactionId", "productId", "price",
                                           "currency", "transactionReason", "offerType", "offerDiscountType",
                                           "storefront", "revocationReason", "revocationType",
                                           "revocationPercentage") if transaction.get(k) is not None}
    kind = TransactionKind.RENEWAL if transaction.get("transactionReason") == "RENEWAL" else TransactionKind.PURCHASE
    records = [TransactionRecord(provider_transaction_id=tid, kind=kind, amount_minor=amount, currency=currency,
                                 occurred_at=ms_to_datetime(transaction.get("purchaseDate")) or datetime.now(UTC),
                                 raw=raw)]
    revoked_at = ms_to_datetime(transaction.get("revocationDate"))
    if revoked_at is not None and transaction.get("revocationType") != "FAMILY_REVOKE":
        refunded = amount
        percentage = transaction.get("revocationPercentage")  # milli-percent: 50000 = 50 %
        if refunded is not None and percentage is not None and transaction.get("revocationType") == "REFUND_PRORATED":
            refunded = int((Decimal(refunded) * int(percentage) / 100000).quantize(Decimal(1), rounding=ROUND_HALF_UP))
        records.append(TransactionRecord(provider_transaction_id=f"{tid}:refund", kind=TransactionKind.REFUND,
                                         amount_minor=refunded, currency=currency, occurred_at=revoked_at, raw=raw))
    return tuple(records)


def subscription_snapshot(*, transaction: dict, renewal: dict | None, observed_at: datetime, environment: str,
                          status_code: int | None = None, kind: str | None = None, subtype: str | None = None,
                          note: str = "") -> Snapshot:
    """One subscription (keyed on originalTransactionId) as the verified data describes it."""
    renewal = renewal or None
    current = is_current(transaction, renewal)
    status = status_for(kind=kind, subtype=subtype, status_code=status_code, transaction=transaction, renewal=renewal)
    currency = (transaction.get("currency") or (renewal or {}).get("currency") or "").upper() or None
    expires_at = ms_to_datetime(transaction.get("expiresDate") if current else (renewal or {}).get("renewalDate"))
    product = transaction.get("productId")
    if not current:
        product = (renewal or {}).get("productId") or product
    token = transaction.get("appAccountToken") or (renewal or {}).get("appAccountToken")
    auto_renew = None if renewal is None or renewal.get("autoRenewStatus") is None else renewal["autoRenewStatus"] == 1

    grace_until = ms_to_datetime((renewal or {}).get("gracePeriodExpiresDate")) if status == Status.ON_GRACE else None
    ended_at = None
    if status == Status.EXPIRED:
        ended_at = expires_at
    elif status == Status.REVOKED:
        ended_at = ms_to_datetime(transaction.get("revocationDate")) or observed_at
    canceled_at = observed_at if (kind, subtype) == ("DID_CHANGE_RENEWAL_STATUS", "AUTO_RENEW_DISABLED") else None
    renewal_currency = ((renewal or {}).get("currency") or currency or "")

    return Snapshot(
        provider=Provider.APPLE,
        provider_subscription_id=str(transaction["originalTransactionId"]),
        status=status,
        observed_at=observed_at,
        store_product_id=product or "",
        environment=environment,
        amount_minor=milli_to_minor(transaction.get("price"), currency) if current else None,
        upcoming_amount_minor=milli_to_minor((renewal or {}).get("renewalPrice"), renewal_currency),
        currency=currency,
        auto_renew=auto_renew,
        started_at=ms_to_datetime(transaction.get("originalPurchaseDate")),
        current_period_start=ms_to_datetime(transaction.get("purchaseDate")) if current else None,
        current_period_end=expires_at,
        expires_at=expires_at,
        grace_until=grace_until,
        canceled_at=canceled_at,
        ended_at=ended_at,
        transactions=transaction_records(transaction),
        raw={"notificationType": kind, "subtype": subtype, "status": status_code, "transaction": transaction,
             "renewal": renewal},
        note=note,
        **user_link(token),
    )


def notification_result(payload: dict, *, sandbox_grants_access: bool) -> ParseResult:
    """What a verified notification (as stored by authenticate) means."""
    claims = payload.get("notification") or {}
    kind = claims.get("notificationType") or ""
    subtype = claims.get("subtype") or None
    label = f"{kind}/{subtype}" if subtype else kind
    data = claims.get("data") or {}
    transaction = payload.get("transaction")
    renewal = payload.get("renewal")

    if kind == "TEST":
        return ParseResult(ignored_reason="test notification (no effect)")
    if kind == "CONSUMPTION_REQUEST":
        tid = (transaction or {}).get("transactionId", "?")
        reason = data.get("consumptionRequestReason") or "not given"
        return ParseResult(ignored_reason=f"consumption request recorded for support: the user asked Apple to "
                                          f"refund transaction {tid} (reason: {reason}); no state change until "
                                          "Apple decides (REFUND or REFUND_DECLINED)")
    if kind == "RENEWAL_EXTENSION":
        if subtype == "SUMMARY":
            summary = claims.get("summary") or {}
            return ParseResult(ignored_reason=(
                f"renewal-date extension summary (request {summary.get('requestIdentifier', '?')}: "
                f"{summary.get('succeededCount', '?')} extended, {summary.get('failedCount', '?')} failed); "
                "each extended subscription gets its own RENEWAL_EXTENDED"))
        return ParseResult(ignored_reason=f"{label}: the renewal-date extension failed for this subscription; "
                                          "no state change")
    if kind in NOT_SUBSCRIPTION_TYPES:
        return ParseResult(ignored_reason=f"{label}: {NOT_SUBSCRIPTION_TYPES[kind]}")
    if kind not in SUBSCRIPTION_TYPES:
        return ParseResult(ignored_reason=f"unknown notification type {label or '(none)'}: recorded, not acted on")
    if not transaction or not transaction.get("originalTransactionId"):
        return ParseResult(ignored_reason=f"{label} carries no transaction")
    if transaction.get("type") not in (None, AUTO_RENEWABLE):
        return ParseResult(ignored_reason=f"{label} for a {transaction['type']}, not an auto-renewable subscription")
    environment = payload.get("environment") or ""
    if environment != "production" and not sandbox_grants_access:
        return ParseResult(ignored_reason=f"{label} from the App Store sandbox: sandbox purchases do not grant access "
                                          "on this deployment (APPLE_ALLOW_SANDBOX=false)")
    observed_at = ms_to_datetime(claims.get("signedDate")) or datetime.now(UTC)
    snapshot = subscription_snapshot(transaction=transaction, renewal=renewal, observed_at=observed_at,
                                     environment=environment or "production", status_code=data.get("status"),
                                     kind=kind, subtype=subtype, note=f"App Store {label}")
    return ParseResult(snapshots=[snapshot])
