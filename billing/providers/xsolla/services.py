"""Xsolla's staff actions (billing/providers/xsolla/admin.py), through Xsolla's merchant API (client.py):

- cancel now or at period end (the subscriptions API's update: `canceled` / `non_renewing`);
- postpone the next charge (the update's `timeshift`, in days: a free extension);
- cancel with a refund of the last payment (the same update with `cancel_subscription_payment`, which
  Xsolla accepts only together with canceling);
- refund the latest payment in full or in part, the subscription going on (Pay Station's "Request
  refund" / "Request partial refund" of the payment's transaction: a request Xsolla may complete at
  once or by hand within two business days).

Each is done at Xsolla first, then Xsolla's state is re-read and applied through billing.apply with the
staff member and reason, and recorded in the audit log. The `refund` / `partial_refund` webhook Xsolla
sends when the money moves records it (a full refund revokes, as any refund)."""

from decimal import Decimal

from billing import money
from billing.apply import ApplyResult
from billing.models import Subscription, Transaction
from billing.providers import registry
from billing.providers.staff_changes import (
    FIX_PERMISSION,
    REFUND_PERMISSION,
    StoreActionError,
    apply_after_store_action,
    ensure_allowed,
    ensure_provider,
    staff_cause,
)
from billing.snapshots import Provider, TransactionKind

from . import client, selectors

CANCEL_WHEN = ("now", "period_end")
MAX_POSTPONE_DAYS = 366


def _xsolla(subscription: Subscription) -> str:
    """Xsolla's user id of the subscription (its update is addressed by user and subscription)."""
    ensure_provider(subscription, Provider.XSOLLA, "Xsolla")
    user_id = selectors.subscription_user_id(subscription)
    if not user_id:
        raise StoreActionError(f"{subscription} has no Xsolla user id to address the subscriptions API with.")
    return user_id


def _reread(subscription: Subscription):
    return lambda: registry.get_adapter(Provider.XSOLLA).fetch(subscription)


def subscription_cancel_at_xsolla(*, subscription: Subscription, when: str, reason: str, staff_user) -> ApplyResult:
    """Now: Xsolla's `canceled` (access ends now: EXPIRED). At period end: `non_renewing` (CANCELED,
    access until the next charge date). Nothing is refunded."""
    user_id = _xsolla(subscription)
    ensure_allowed(staff_user, FIX_PERMISSION)
    if when not in CANCEL_WHEN:
        raise StoreActionError(f"Cancel must be one of {', '.join(CANCEL_WHEN)}.")
    what = "canceled now at Xsolla" if when == "now" else "set to cancel at period end at Xsolla"
    cause = staff_cause(reason, staff_user, what)
    if when == "now":
        client.subscription_cancel(user_id=user_id, subscription_id=subscription.provider_subscription_id,
                                   refund_last_payment=False)
    else:
        client.subscription_status_update(user_id=user_id, subscription_id=subscription.provider_subscription_id,
                                          status="non_renewing")
    return apply_after_store_action(subscription=subscription, staff_user=staff_user, action=f"store_cancel_{when}",
                                    reason=reason, cause=cause, details={"provider": "xsolla", "when": when},
                                    reread=_reread(subscription))


def subscription_postpone_at_xsolla(*, subscription: Subscription, days: int, reason: str,
                                    staff_user) -> ApplyResult:
    """The next charge moves `days` later, free (Xsolla refuses it for a subscription that is not active)."""
    user_id = _xsolla(subscription)
    ensure_allowed(staff_user, FIX_PERMISSION)
    if not isinstance(days, int) or not 1 <= days <= MAX_POSTPONE_DAYS:
        raise StoreActionError(f"Xsolla postpones by 1 to {MAX_POSTPONE_DAYS} days.")
    cause = staff_cause(reason, staff_user, f"next charge postponed by {days} days at Xsolla")
    client.subscription_postpone(user_id=user_id, subscription_id=subscription.provider_subscription_id, days=days)
    details = {"provider": "xsolla", "days": days,
               "expires_before": subscription.expires_at.isoformat() if subscription.expires_at else None}
    return apply_after_store_action(subscription=subscription, staff_user=staff_user, action="store_extend",
                                    reason=reason, cause=cause, details=details, reread=_reread(subscription))


def subscription_refund_at_xsolla(*, subscription: Subscription, reason: str, staff_user) -> ApplyResult:
    """Cancel now and refund the last payment, in full (Xsolla offers no partial or older refund here)."""
    user_id = _xsolla(subscription)
    ensure_allowed(staff_user, REFUND_PERMISSION)
    cause = staff_cause(reason, staff_user, "canceled at Xsolla with a refund of the last payment")
    client.subscription_cancel(user_id=user_id, subscription_id=subscription.provider_subscription_id,
                               refund_last_payment=True)
    return apply_after_store_action(subscription=subscription, staff_user=staff_user, action="store_refund",
                                    reason=reason, cause=cause,
                                    details={"provider": "xsolla", "refund": "last payment", "canceled": True},
                                    reread=_reread(subscription))


def latest_payment(*, subscription: Subscription) -> Transaction:
    """The subscription's latest payment we recorded (its id is Xsolla's transaction id)."""
    payment = subscription.transactions.filter(kind__in=[TransactionKind.PURCHASE, TransactionKind.RENEWAL]).order_by(
        "-occurred_at", "-id").first()
    if payment is None:
        raise StoreActionError("No payment of this subscription is recorded here: nothing to refund.")
    return payment


def payment_refund_at_xsolla(*, subscription: Subscription, amount: Decimal | None, reason: str,
                             staff_user) -> tuple[ApplyResult, str]:
    """Request a refund of the latest payment, in full (`amount` None) or in part (major units, at most
    what it paid); the subscription is not canceled. Returns the result and Xsolla's own message."""
    _xsolla(subscription)
    ensure_allowed(staff_user, REFUND_PERMISSION)
    payment = latest_payment(subscription=subscription)
    if amount is not None:
        if amount <= 0:
            raise StoreActionError("The amount to refund must be more than zero.")
        minor = money.to_minor(amount, payment.currency)
        if Decimal(minor) != amount * (10 ** money.exponent(payment.currency)):
            raise StoreActionError(f"{amount} has more decimals than {payment.currency} allows.")
        if payment.amount_minor is not None and minor > payment.amount_minor:
            raise StoreActionError(f"At most {money.format_minor(payment.amount_minor, payment.currency)} was paid in "
                                   f"transaction {payment.provider_transaction_id}.")
    what = ("a full refund" if amount is None else
            f"a refund of {money.format_minor(money.to_minor(amount, payment.currency), payment.currency)}")
    cause = staff_cause(reason, staff_user, f"{what} of transaction {payment.provider_transaction_id} "
                                            "requested at Xsolla")
    if amount is None:
        answer = client.transaction_refund(payment.provider_transaction_id, description=reason.strip())
    else:
        answer = client.transaction_refund_partial(payment.provider_transaction_id, amount=amount,
                                                   description=reason.strip())
    message = str(answer.get("message") or "refund request accepted")
    details = {"provider": "xsolla", "transaction": payment.provider_transaction_id, "full": amount is None,
               "amount": str(amount) if amount is not None else None, "currency": payment.currency,
               "xsolla_message": message[:500]}
    result = apply_after_store_action(subscription=subscription, staff_user=staff_user, action="store_refund",
                                      reason=reason, cause=cause, details=details, reread=_reread(subscription))
    return result, message
