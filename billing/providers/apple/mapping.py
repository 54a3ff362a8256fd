"""Decoded App Store data (notification, transaction, renewal info; all verified by auth.py) → Snapshots,
and the reasons a notification changes nothing. Pure: no ORM, no network, no settings.

The notification type is the trigger (the adapter's HANDLERS table routes on it, raw strings, so a type
or subtype the library does not know yet is still seen as itself); the state comes from the verified
data: `data.status` (1 active, 2 expired, 3 billing retry, 4 grace period, 5 revoked), the transaction
and the renewal info. Entry point: `subscription_snapshot`.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal

from appstoreserverlibrary.receipt_utility import ReceiptUtility

from billing.providers.common import datetime_from_millis, minor_from_milli
from billing.snapshots import OfferKind, Provider, Snapshot, TransactionKind, TransactionRecord
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

# Apple's offerType: 1 introductory, 2 promotional, 3 offer code, 4 win-back (a promotional offer).
_OFFER_KINDS = {1: OfferKind.INTRODUCTORY, 2: OfferKind.PROMOTIONAL, 3: OfferKind.OFFER_CODE, 4: OfferKind.PROMOTIONAL}


def offer_kind(transaction: dict) -> str:
    if transaction.get("offerDiscountType") == "FREE_TRIAL":
        return OfferKind.FREE_TRIAL
    return _OFFER_KINDS.get(transaction.get("offerType"), "")


def _ledger_details(transaction: dict, tid: str) -> dict:
    """What Apple says of a payment, for the ledger's columns (docs/finance.md)."""
    line_item = transaction.get("webOrderLineItemId")
    return {"order_id": tid, "line_item_id": str(line_item) if line_item else "",
            "period_start": datetime_from_millis(transaction.get("purchaseDate")),
            "period_end": datetime_from_millis(transaction.get("expiresDate")),
            "country": transaction.get("storefront") or "", "offer_kind": offer_kind(transaction),
            "store_product_id": transaction.get("productId") or ""}


def transaction_records(transaction: dict, *, reversed_at: datetime | None = None) -> tuple[TransactionRecord, ...]:
    """The money facts of a transaction: its purchase or renewal, its refund if revoked, and the
    refund's reversal (REFUND_REVERSED, `reversed_at`). A family member's access is paid by the
    organizer (recorded on the organizer's subscription)."""
    if transaction.get("inAppOwnershipType") == "FAMILY_SHARED" or not transaction.get("transactionId"):
        return ()
    tid = str(transaction["transactionId"])
    currency = (transaction.get("currency") or "").upper()
    amount = minor_from_milli(transaction.get("price"), currency)
    raw = {k: transaction.get(k) for k in ("transactionId", "originalTransactionId", "productId", "price",
                                           "currency", "transactionReason", "offerType", "offerDiscountType",
                                           "storefront", "revocationReason", "revocationType",
                                           "revocationPercentage") if transaction.get(k) is not None}
    details = _ledger_details(transaction, tid)
    kind = TransactionKind.RENEWAL if transaction.get("transactionReason") == "RENEWAL" else TransactionKind.PURCHASE
    records = [TransactionRecord(provider_transaction_id=tid, kind=kind, amount_minor=amount, currency=currency,
                                 occurred_at=datetime_from_millis(transaction.get("purchaseDate")) or datetime.now(UTC),
                                 raw=raw, **details)]
    refund_details = {"order_id": tid, "line_item_id": details["line_item_id"], "country": details["country"],
                      "store_product_id": details["store_product_id"], "refers_to": tid}
    revoked_at = datetime_from_millis(transaction.get("revocationDate"))
    if revoked_at is not None and transaction.get("revocationType") != "FAMILY_REVOKE":
        refunded = amount
        percentage = transaction.get("revocationPercentage")  # milli-percent: 50000 = 50 %
        if refunded is not None and percentage is not None and transaction.get("revocationType") == "REFUND_PRORATED":
            refunded = int((Decimal(refunded) * int(percentage) / 100000).quantize(Decimal(1), rounding=ROUND_HALF_UP))
        records.append(TransactionRecord(provider_transaction_id=f"{tid}:refund", kind=TransactionKind.REFUND,
                                         amount_minor=refunded, currency=currency, occurred_at=revoked_at, raw=raw,
                                         **refund_details))
    elif reversed_at is not None:
        # Apple reversed a refund it had granted: the money comes back. Once the revocation is gone Apple
        # no longer says how much was refunded: the ledger gives back what it recorded (billing/ledger.py).
        records.append(TransactionRecord(provider_transaction_id=f"{tid}:refund_reversed",
                                         kind=TransactionKind.REFUND_REVERSED, amount_minor=None, currency=currency,
                                         occurred_at=reversed_at, raw=raw, **refund_details))
    return tuple(records)


def subscription_snapshot(*, transaction: dict, renewal: dict | None, observed_at: datetime, environment: str,
                          status_code: int | None = None, kind: str | None = None, subtype: str | None = None,
                          note: str = "") -> Snapshot:
    """One subscription (keyed on originalTransactionId) as the verified data describes it."""
    renewal = renewal or None
    current = is_current(transaction, renewal)
    status = status_for(kind=kind, subtype=subtype, status_code=status_code, transaction=transaction, renewal=renewal)
    currency = (transaction.get("currency") or (renewal or {}).get("currency") or "").upper() or None
    expires_at = datetime_from_millis(transaction.get("expiresDate") if current else (renewal or {}).get("renewalDate"))
    product = transaction.get("productId")
    if not current:
        product = (renewal or {}).get("productId") or product
    token = transaction.get("appAccountToken") or (renewal or {}).get("appAccountToken")
    auto_renew = None if renewal is None or renewal.get("autoRenewStatus") is None else renewal["autoRenewStatus"] == 1

    grace_until = (datetime_from_millis((renewal or {}).get("gracePeriodExpiresDate"))
                   if status == Status.ON_GRACE else None)
    ended_at = None
    if status == Status.EXPIRED:
        ended_at = expires_at
    elif status == Status.REVOKED:
        ended_at = datetime_from_millis(transaction.get("revocationDate")) or observed_at
    canceled_at = observed_at if (kind, subtype) == ("DID_CHANGE_RENEWAL_STATUS", "AUTO_RENEW_DISABLED") else None
    renewal_currency = ((renewal or {}).get("currency") or currency or "")

    return Snapshot(
        provider=Provider.APPLE,
        provider_subscription_id=str(transaction["originalTransactionId"]),
        status=status,
        observed_at=observed_at,
        store_product_id=product or "",
        environment=environment,
        amount_minor=minor_from_milli(transaction.get("price"), currency) if current else None,
        upcoming_amount_minor=minor_from_milli((renewal or {}).get("renewalPrice"), renewal_currency),
        currency=currency,
        auto_renew=auto_renew,
        started_at=datetime_from_millis(transaction.get("originalPurchaseDate")),
        current_period_start=datetime_from_millis(transaction.get("purchaseDate")) if current else None,
        current_period_end=expires_at,
        expires_at=expires_at,
        grace_until=grace_until,
        canceled_at=canceled_at,
        ended_at=ended_at,
        transactions=transaction_records(transaction, reversed_at=observed_at if kind == "REFUND_REVERSED" else None),
        raw={"notificationType": kind, "subtype": subtype, "status": status_code, "transaction": transaction,
             "renewal": renewal},
        note=note,
        **user_link(token),
    )


# --- Notifications (as auth.verified_event stores them: the claims, the verified transaction and renewal) --

def notification_label(claims: dict) -> str:
    """The notification's type as stored: "TYPE/SUBTYPE", or "TYPE" when it has no subtype."""
    kind, subtype = claims.get("notificationType") or "", claims.get("subtype")
    return f"{kind}/{subtype}" if subtype else kind


def consumption_request_reason(payload: dict) -> str:
    """The user asked Apple for a refund: support sees the transaction and Apple's reason."""
    tid = (payload.get("transaction") or {}).get("transactionId", "?")
    reason = ((payload.get("notification") or {}).get("data") or {}).get("consumptionRequestReason") or "not given"
    return (f"consumption request recorded for support: the user asked Apple to refund transaction {tid} "
            f"(reason: {reason}); no state change until Apple decides (REFUND or REFUND_DECLINED)")


def renewal_extension_reason(payload: dict) -> str:
    """A renewal-date extension's summary or one subscription's failure: no state of its own."""
    claims = payload.get("notification") or {}
    if claims.get("subtype") == "SUMMARY":
        summary = claims.get("summary") or {}
        return (f"renewal-date extension summary (request {summary.get('requestIdentifier', '?')}: "
                f"{summary.get('succeededCount', '?')} extended, {summary.get('failedCount', '?')} failed); "
                "each extended subscription gets its own RENEWAL_EXTENDED")
    return f"{notification_label(claims)}: the renewal-date extension failed for this subscription; no state change"


def not_a_subscription_reason(payload: dict) -> str:
    """A type that exists but says nothing about a subscription's state (NOT_SUBSCRIPTION_TYPES)."""
    claims = payload.get("notification") or {}
    return f"{notification_label(claims)}: {NOT_SUBSCRIPTION_TYPES[claims.get('notificationType')]}"


def unknown_type_reason(payload: dict) -> str:
    """A type Apple added after this code was written: kept for the record, not acted on."""
    label = notification_label(payload.get("notification") or {})
    return f"unknown notification type {label or '(none)'}: recorded, not acted on"


def subscription_notification_problem(payload: dict) -> str:
    """Why a notification of a SUBSCRIPTION_TYPES type cannot be applied; "" when it can."""
    label = notification_label(payload.get("notification") or {})
    transaction = payload.get("transaction")
    if not transaction or not transaction.get("originalTransactionId"):
        return f"{label} carries no transaction"
    if transaction.get("type") not in (None, AUTO_RENEWABLE):
        return f"{label} for a {transaction['type']}, not an auto-renewable subscription"
    return ""


def notification_snapshot(payload: dict) -> Snapshot:
    """The subscription a notification of a SUBSCRIPTION_TYPES type describes, as of its signedDate
    (check `subscription_notification_problem` first)."""
    claims = payload.get("notification") or {}
    kind, subtype = claims.get("notificationType") or "", claims.get("subtype") or None
    return subscription_snapshot(
        transaction=payload["transaction"], renewal=payload.get("renewal"),
        observed_at=datetime_from_millis(claims.get("signedDate")) or datetime.now(UTC),
        environment=payload.get("environment") or "production", status_code=(claims.get("data") or {}).get("status"),
        kind=kind, subtype=subtype, note=f"App Store {notification_label(claims)}")


def notification_body(signed_payload: str | None) -> bytes | None:
    """The body Apple POSTs for a notification (None for a history entry without one)."""
    return json.dumps({"signedPayload": signed_payload}).encode() if signed_payload else None


# --- The App Store Server API's answers and the apps' purchases ----------------------------------

def status_snapshots(statuses, *, environment: str) -> list[Snapshot]:
    """get_all_subscription_statuses' last transactions, verified ((status, transaction, renewal) each,
    auth.verified_statuses) → one snapshot per auto-renewable subscription, as of its latest signedDate."""
    snapshots: list[Snapshot] = []
    for status_code, transaction, renewal in statuses:
        if transaction.get("type") not in (None, AUTO_RENEWABLE):
            continue
        signed = [datetime_from_millis(d.get("signedDate")) for d in (transaction, renewal or {})]
        observed_at = max((d for d in signed if d is not None), default=datetime.now(UTC))
        snapshots.append(subscription_snapshot(
            transaction=transaction, renewal=renewal, observed_at=observed_at, environment=environment,
            status_code=status_code, note="App Store Server API: all subscription statuses"))
    return snapshots


def receipt_transaction_id(receipt: str) -> str | None:
    """The transaction id in a legacy base64 app receipt (read, not validated: the API's signed answer
    about it is what is trusted); None when it holds no in-app purchase. ValueError: not a receipt."""
    return ReceiptUtility().extract_transaction_id_from_app_receipt(receipt)
