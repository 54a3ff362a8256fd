"""Xsolla's wire format → typed values → Snapshots. Pure functions: no database, no network.

Two sources describe a subscription: a webhook's `subscription` object (or `purchase.subscription` in
payment and refund webhooks) and the subscriptions API's subscription object. Both are read into
`XsollaSubscription` first. The entry point `subscription_snapshot` maps the API's view, whose status
enum `unified_status` reads; `notification_snapshot` maps what a webhook alone says (notifications carry
no status), one rule per notification type in `NOTIFICATION_STATES`. In both, `stays_revoked` keeps a
refund's REVOKED until a later period is charged."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from billing.providers.base import PermanentError
from billing.providers.common import as_dict, datetime_from_iso, digest, minor_from_decimal, period_unit
from billing.snapshots import Environment, OfferKind, Provider, Snapshot, TransactionKind, TransactionRecord
from billing.statuses import Status

if TYPE_CHECKING:  # a type only: mapping reads no database
    from .selectors import Stored

IDENTITY_FIELD = "xsolla_user_id"

# Notification types (the `notification_type` strings Xsolla sends).
USER_VALIDATION = "user_validation"
PAYMENT = "payment"
REFUND = "refund"
PARTIAL_REFUND = "partial_refund"
AFS_REJECT = "afs_reject"  # a transaction declined by Xsolla's anti-fraud check (enabled by the CSM)
CREATE_SUBSCRIPTION = "create_subscription"
UPDATE_SUBSCRIPTION = "update_subscription"
CANCEL_SUBSCRIPTION = "cancel_subscription"
NON_RENEWAL_SUBSCRIPTION = "non_renewal_subscription"  # sic: not "non_renewing_subscription"

SUBSCRIPTION_TYPES = frozenset({CREATE_SUBSCRIPTION, UPDATE_SUBSCRIPTION, CANCEL_SUBSCRIPTION,
                                NON_RENEWAL_SUBSCRIPTION})
TRANSACTION_TYPES = frozenset({PAYMENT, REFUND, PARTIAL_REFUND, AFS_REJECT})

# Xsolla's API status enum (there is no "pending" nor "freezed").
XSOLLA_STATUSES = ("new", "active", "canceled", "non_renewing", "freeze")
CHARGEBACK_REFUND_CODE = 2


# --- Small readers ----------------------------------------------------------------------------

def id_str(value) -> str:
    """Xsolla ids arrive as numbers or strings ("10" and 10 are the same subscription)."""
    if value is None or isinstance(value, bool):
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def user_id_of(body: dict) -> str:
    """`user.id`: Xsolla's user id, which is the app's user id (docs/providers/xsolla.md)."""
    return id_str(as_dict(body.get("user")).get("id"))


def transaction_id_of(body: dict) -> str:
    return id_str(as_dict(body.get("transaction")).get("id"))


def is_dry_run(body: dict) -> bool:
    """`transaction.dry_run` is 1 for a test payment and absent for a real one."""
    return bool(as_dict(body.get("transaction")).get("dry_run"))


def payment_time(body: dict) -> datetime | None:
    """When the transaction was paid (`payment_date`, else `date`); None when the body does not say.
    Dates are ISO 8601 as Xsolla writes them: "+04:00" in webhooks, "+0300" in the API."""
    tx = as_dict(body.get("transaction"))
    return datetime_from_iso(tx.get("payment_date")) or datetime_from_iso(tx.get("date"))


def _int(value) -> int | None:
    try:
        return int(value) if value not in (None, "") and not isinstance(value, bool) else None
    except (TypeError, ValueError):
        return None


def _localized(name) -> str:
    """Xsolla names are localized objects ({"en": "Premium", ...}) or plain strings."""
    if isinstance(name, dict):
        return str(name.get("en") or next(iter(name.values()), "") or "")
    return str(name or "")


# --- Typed values -----------------------------------------------------------------------------

@dataclass(frozen=True)
class XsollaSubscription:
    """A subscription as a notification or the API describes it (fields it does not carry are None)."""

    subscription_id: str
    plan_id: str = ""
    plan_name: str = ""
    user_id: str = ""
    status: str | None = None  # the API's status; notifications carry none
    date_create: datetime | None = None
    date_next_charge: datetime | None = None
    date_last_charge: datetime | None = None
    date_end: datetime | None = None
    trial_value: int | None = None
    is_gift: bool = False
    amount_minor: int | None = None
    currency: str | None = None
    period_unit: str | None = None
    period_value: int | None = None


def _raw_subscription(body: dict) -> dict:
    return as_dict(body.get("subscription")) or as_dict(as_dict(body.get("purchase")).get("subscription"))


def notification_subscription(body: dict) -> XsollaSubscription | None:
    """The subscription a webhook is about: `subscription` (subscription notifications) or
    `purchase.subscription` (payment and refund notifications). None if it names no subscription."""
    sub = _raw_subscription(body)
    subscription_id = id_str(sub.get("subscription_id"))
    if not subscription_id:
        return None
    trial = as_dict(sub.get("trial"))
    currency = (sub.get("currency") or "").upper() or None
    return XsollaSubscription(
        subscription_id=subscription_id,
        plan_id=id_str(sub.get("plan_id")),
        user_id=user_id_of(body),
        date_create=datetime_from_iso(sub.get("date_create")),
        date_next_charge=datetime_from_iso(sub.get("date_next_charge")),
        date_end=datetime_from_iso(sub.get("date_end")),
        trial_value=_int(trial.get("value")),
        is_gift=bool(sub.get("is_gift")),
        amount_minor=minor_from_decimal(sub.get("amount"), currency),
        currency=currency,
    )


def api_subscription(data: dict) -> XsollaSubscription:
    """`GET /projects/{project_id}/subscriptions/{id}` (and the PUT's answer)."""
    subscription_id = id_str(data.get("id"))
    if not subscription_id:
        raise PermanentError("Xsolla's subscription object has no id")
    plan = as_dict(data.get("plan"))
    charge = as_dict(plan.get("charge"))
    period = as_dict(charge.get("period"))
    currency = (data.get("currency") or charge.get("currency") or "").upper() or None
    amount = data.get("charge_amount") if data.get("charge_amount") is not None else charge.get("amount")
    unit = period_unit(period.get("type") or period.get("unit"))
    return XsollaSubscription(
        subscription_id=subscription_id,
        # Webhooks name the plan by its external id when it has one; so do we.
        plan_id=id_str(plan.get("external_id")) or id_str(plan.get("id")),
        plan_name=_localized(plan.get("name")),
        user_id=id_str(as_dict(data.get("user")).get("id")),
        status=str(data.get("status") or "") or None,
        date_create=datetime_from_iso(data.get("date_create")),
        date_next_charge=datetime_from_iso(data.get("date_next_charge")),
        date_last_charge=datetime_from_iso(data.get("date_last_charge")),
        date_end=datetime_from_iso(data.get("date_end")),
        amount_minor=minor_from_decimal(amount, currency),
        currency=currency,
        period_unit=unit,
        period_value=_int(period.get("value")) if unit else None,
    )


# --- Status rules -----------------------------------------------------------------------------

def unified_status(xsolla_status: str, *, in_trial: bool, date_end: datetime | None, now: datetime) -> str:
    """PROVIDERS.md §5: new → INACTIVE; active → ACTIVE (TRIAL in a trial); non_renewing → CANCELED
    (entitled until date_next_charge); freeze → PAUSED; canceled → EXPIRED at date_end (CANCELED
    while date_end is still ahead)."""
    if xsolla_status == "new":
        return Status.INACTIVE
    if xsolla_status == "active":
        return Status.TRIAL if in_trial else Status.ACTIVE
    if xsolla_status == "non_renewing":
        return Status.CANCELED
    if xsolla_status == "freeze":
        return Status.PAUSED
    if xsolla_status == "canceled":
        return Status.CANCELED if date_end is not None and date_end > now else Status.EXPIRED
    raise PermanentError(f"unknown Xsolla subscription status {xsolla_status!r} (expected one of "
                         f"{', '.join(XSOLLA_STATUSES)})")


def stays_revoked(stored: Stored | None, next_charge: datetime | None) -> bool:
    """A refund revoked access: only a charge for a later period gives it back (a renewal moves the next
    charge past the one of the refunded period). A late, repeated or older notification does not."""
    if stored is None or stored.status != Status.REVOKED:
        return False
    return next_charge is None or stored.expires_at is None or next_charge <= stored.expires_at


def refund_observed_at(received_at: datetime, stored: Stored | None) -> datetime:
    """A refund is as of when it reached us (notifications carry no time of their own), so that older
    notifications stay stale after it; never older than the state we hold, so that a refund processed
    late (a retry) still revokes."""
    if stored is not None and stored.last_event_at is not None and stored.last_event_at > received_at:
        return stored.last_event_at
    return received_at


def money_observed_at(body: dict, *, received_at: datetime, stored: Stored | None) -> datetime:
    """A payment or partial refund keeps the stored status (derived): as of the state it was read from,
    so that a newer state applied before it (in the same batch) makes it stale and stands; its money is
    recorded either way. Nothing stored: as of the payment itself."""
    if stored is not None and stored.last_event_at is not None:
        return stored.last_event_at
    return payment_time(body) or received_at


# --- The API's view ---------------------------------------------------------------------------

def subscription_snapshot(data: dict, *, observed_at: datetime, stored: Stored | None, trial_hint: bool = False,
                          environment: str | None = None, transactions: tuple[TransactionRecord, ...] = (),
                          revoke: bool = False, note: str = "") -> Snapshot:
    """The API's view of a subscription, as of `observed_at` (when we fetched it; a refund's time for a refund).

    The API has no trial flag: an active subscription that was never charged is in its trial when the
    webhook said so (`trial_hint`) or we already had it as TRIAL. `revoke`: a full refund (or an
    anti-fraud rejection) of its payment, whatever status Xsolla still reports."""
    sub = api_subscription(data)
    if sub.status is None:
        raise PermanentError(f"Xsolla's subscription {sub.subscription_id} has no status")
    in_trial = sub.date_last_charge is None and (trial_hint or (stored is not None and stored.status == Status.TRIAL))
    status = unified_status(sub.status, in_trial=in_trial, date_end=sub.date_end, now=observed_at)
    already_revoked = stored is not None and stored.status == Status.REVOKED
    if revoke or (already_revoked and (sub.status == "canceled" or stays_revoked(stored, sub.date_next_charge))):
        status = Status.REVOKED  # refunded: canceled after it, or no charge for a later period since
    if status in (Status.ACTIVE, Status.TRIAL, Status.CANCELED) and sub.status != "canceled":
        expires_at = sub.date_next_charge or sub.date_end
    elif sub.status == "canceled":
        expires_at = sub.date_end
    elif status == Status.REVOKED and (stored is None or stored.expires_at is None):
        expires_at = sub.date_next_charge  # the refunded period's end: what a renewal must go past
    else:
        expires_at = None
    ended = status in (Status.EXPIRED, Status.REVOKED) and not (already_revoked and status == Status.REVOKED)
    return _snapshot(
        sub, status=status, observed_at=observed_at,
        environment=environment or (stored.environment if stored else Environment.PRODUCTION),
        transactions=transactions, raw={"source": "api", "subscription": data}, note=note,
        product_label=sub.plan_name, period_unit=sub.period_unit, period_value=sub.period_value,
        upcoming_amount_minor=sub.amount_minor if sub.status == "active" else None,
        auto_renew=sub.status == "active", started_at=sub.date_create, current_period_start=sub.date_last_charge,
        current_period_end=sub.date_next_charge, expires_at=expires_at,
        ended_at=(sub.date_end or observed_at) if ended else None)


def _snapshot(sub: XsollaSubscription, *, status: str, observed_at: datetime, environment: str,
              transactions: tuple[TransactionRecord, ...], raw: dict, **fields) -> Snapshot:
    """What both views of a subscription say alike: its ids, the user, the plan and its price."""
    return Snapshot(
        provider=Provider.XSOLLA, provider_subscription_id=sub.subscription_id, status=status,
        observed_at=observed_at, store_product_id=sub.plan_id, user_id=sub.user_id or None,
        identity_field=IDENTITY_FIELD if sub.user_id else None, identity_value=sub.user_id or None,
        environment=environment, amount_minor=sub.amount_minor, currency=sub.currency,
        transactions=transactions, raw=raw, **fields)


# --- What a notification alone says -----------------------------------------------------------

@dataclass(frozen=True)
class NotificationState:
    """The state one notification type sets: its status, as of when, and the fields it knows."""

    status: str
    observed_at: datetime
    fields: dict = field(default_factory=dict)
    derived: bool = False  # money facts only: not a newer store state


def _unless_revoked(state: NotificationState, stored: Stored | None) -> NotificationState:
    """A notification about the refunded period (dates not past it) leaves a refund's REVOKED standing;
    the dates of the refunded period stay the anchor."""
    if stays_revoked(stored, state.fields.get("expires_at")):
        return NotificationState(Status.REVOKED, state.observed_at)
    return state


def _created(sub: XsollaSubscription, body: dict, received_at: datetime, stored: Stored | None) -> NotificationState:
    status = Status.TRIAL if sub.trial_value else Status.ACTIVE
    return _unless_revoked(NotificationState(status, received_at, {
        "expires_at": sub.date_next_charge, "current_period_end": sub.date_next_charge,
        "started_at": sub.date_create, "auto_renew": not sub.is_gift}), stored)


def _updated(sub: XsollaSubscription, body: dict, received_at: datetime, stored: Stored | None) -> NotificationState:
    # Every renewal and every plan change. The SDK's sample names the next charge date_end.
    next_charge = sub.date_next_charge or sub.date_end
    # A plan change inside a trial moves no charge date: still a trial.
    still_trial = (stored is not None and stored.status == Status.TRIAL and next_charge is not None
                   and stored.expires_at == next_charge)
    return _unless_revoked(NotificationState(Status.TRIAL if still_trial else Status.ACTIVE, received_at, {
        "expires_at": next_charge, "current_period_end": next_charge, "auto_renew": True,
        "started_at": sub.date_create}), stored)


def _no_renewal(sub: XsollaSubscription, body: dict, received_at: datetime, stored: Stored | None) -> NotificationState:
    return _unless_revoked(NotificationState(Status.CANCELED, received_at, {
        "expires_at": sub.date_next_charge, "current_period_end": sub.date_next_charge, "auto_renew": False,
        "canceled_at": received_at, "started_at": sub.date_create}), stored)


def _canceled(sub: XsollaSubscription, body: dict, received_at: datetime, stored: Stored | None) -> NotificationState:
    status = unified_status("canceled", in_trial=False, date_end=sub.date_end, now=received_at)
    if stored is not None and stored.status == Status.REVOKED:
        status = Status.REVOKED  # the refund that ended it says more than the cancellation that follows
    end = sub.date_end or received_at
    return NotificationState(status, received_at, {
        "expires_at": end, "auto_renew": False, "canceled_at": end, "started_at": sub.date_create,
        "ended_at": end if status in (Status.EXPIRED, Status.REVOKED) else None})


def _refunded(sub: XsollaSubscription, body: dict, received_at: datetime, stored: Stored | None) -> NotificationState:
    already_revoked = stored is not None and stored.status == Status.REVOKED
    return NotificationState(Status.REVOKED, refund_observed_at(received_at, stored), {
        "auto_renew": False, "ended_at": None if already_revoked else received_at})


def _money_only(sub: XsollaSubscription, body: dict, received_at: datetime, stored: Stored | None) -> NotificationState:
    status = stored.status if stored is not None else Status.INACTIVE
    return NotificationState(status, money_observed_at(body, received_at=received_at, stored=stored), derived=True)


# Notification type → its rule: (subscription, body, received_at, stored) → NotificationState.
NOTIFICATION_STATES: dict[str, Callable[..., NotificationState]] = {
    CREATE_SUBSCRIPTION: _created, UPDATE_SUBSCRIPTION: _updated, NON_RENEWAL_SUBSCRIPTION: _no_renewal,
    CANCEL_SUBSCRIPTION: _canceled, REFUND: _refunded, AFS_REJECT: _refunded,
    PAYMENT: _money_only, PARTIAL_REFUND: _money_only,
}


def notification_snapshot(event_type: str, body: dict, *, received_at: datetime, stored: Stored | None,
                          transactions: tuple[TransactionRecord, ...] = ()) -> Snapshot:
    """What a webhook alone says (the subscriptions API is not configured). Xsolla's notifications
    carry no time of their own: `received_at` (when the webhook reached us) orders them.

    payment / partial refund: money facts only; the status stays what it is (a snapshot marked
    derived, so it does not count as a newer store state). refund / afs_reject: REVOKED, which only a
    charge for a later period undoes (`stays_revoked`)."""
    sub = notification_subscription(body)
    if sub is None:
        raise PermanentError(f"{event_type} names no subscription")
    rule = NOTIFICATION_STATES.get(event_type)
    if rule is None:
        raise PermanentError(f"no mapping for Xsolla notification {event_type!r}")
    state = rule(sub, body, received_at, stored)
    environment = (Environment.SANDBOX if is_dry_run(body)
                   else stored.environment if stored else Environment.PRODUCTION)
    return _snapshot(
        sub, status=state.status, observed_at=state.observed_at, environment=environment, transactions=transactions,
        raw={"source": "webhook", "notification_type": event_type, "subscription": _raw_subscription(body),
             "user": {"id": sub.user_id} if sub.user_id else {}},
        email=_email(body), derived=state.derived, **{k: v for k, v in state.fields.items() if v is not None})


def _email(body: dict) -> str:
    email = as_dict(body.get("user")).get("email")
    return email if isinstance(email, str) and "@" in email and len(email) <= 254 else ""


# --- Transactions -----------------------------------------------------------------------------

def transaction_record(event_type: str, body: dict, *, received_at: datetime, renewal: bool) -> TransactionRecord:
    """The money movement a payment or refund webhook reports. Amounts: the subscription's part of the
    purchase (`purchase.subscription`), else the purchase total, else what the user paid."""
    tx = as_dict(body.get("transaction"))
    tx_id = id_str(tx.get("id"))
    if not tx_id:
        raise PermanentError(f"{event_type} carries no transaction.id")
    amount_minor, currency = _amount(body)
    raw = {"notification_type": event_type, "transaction": tx,
           "payment_details": as_dict(body.get("payment_details")),
           "refund_details": as_dict(body.get("refund_details"))}
    details = _ledger_details(body, tx_id)
    if event_type == PAYMENT:
        return TransactionRecord(provider_transaction_id=tx_id,
                                 kind=TransactionKind.RENEWAL if renewal else TransactionKind.PURCHASE,
                                 occurred_at=payment_time(body) or received_at, amount_minor=amount_minor,
                                 currency=currency, raw=raw, **details, **_payout(body))
    details["refers_to"] = tx_id
    code = _int(as_dict(body.get("refund_details")).get("code"))
    kind = TransactionKind.CHARGEBACK if code == CHARGEBACK_REFUND_CODE else TransactionKind.REFUND
    if event_type == PARTIAL_REFUND:
        # Xsolla does not state the refunded part; several partial refunds of one payment are told
        # apart by their payment details. The amount stays unknown (finance reads the raw details).
        refund_id = f"partial_refund:{tx_id}:{digest(raw['payment_details'])}"
        return TransactionRecord(provider_transaction_id=refund_id, kind=kind, occurred_at=received_at,
                                 amount_minor=None, currency=currency, raw=raw, **details)
    return TransactionRecord(provider_transaction_id=f"{event_type}:{tx_id}", kind=kind, occurred_at=received_at,
                             amount_minor=amount_minor, currency=currency, raw=raw, **details)


def _ledger_details(body: dict, tx_id: str) -> dict:
    """What Xsolla says of a payment for the ledger's columns (docs/finance.md)."""
    purchase = as_dict(body.get("purchase"))
    country = as_dict(body.get("user")).get("country")
    offer = ""
    if as_dict(purchase.get("coupon")).get("coupon_code"):
        offer = OfferKind.OFFER_CODE
    elif any(key.startswith("promotions") for key in purchase):
        offer = OfferKind.PROMOTIONAL
    return {"order_id": tx_id, "country": country if isinstance(country, str) and len(country) <= 3 else "",
            "store_product_id": id_str(as_dict(purchase.get("subscription")).get("plan_id")), "offer_kind": offer}


def _payout(body: dict) -> dict:
    """Xsolla's fees and what it pays out, when all are in one currency (Xsolla's payment_details)."""
    details = as_dict(body.get("payment_details"))
    payout = as_dict(details.get("payout"))
    fees = [as_dict(details.get(name)) for name in ("xsolla_fee", "payment_method_fee")]
    currency = (payout.get("currency") or "").upper()
    if not currency or any((fee.get("currency") or currency).upper() != currency for fee in fees):
        return {}
    net = minor_from_decimal(payout.get("amount"), currency)
    fee_amounts = [minor_from_decimal(fee.get("amount"), currency) for fee in fees if fee.get("amount") is not None]
    if net is None or any(amount is None for amount in fee_amounts):
        return {}
    return {"fee_minor": sum(fee_amounts), "net_minor": net, "settlement_currency": currency}


def _amount(body: dict) -> tuple[int | None, str]:
    purchase = as_dict(body.get("purchase"))
    for source in (as_dict(purchase.get("subscription")), as_dict(purchase.get("total")),
                   as_dict(as_dict(body.get("payment_details")).get("payment"))):
        currency = (source.get("currency") or "").upper()
        amount = minor_from_decimal(source.get("amount"), currency)
        if amount is not None and currency:
            return amount, currency
    return None, ""
