"""Xsolla's staff actions (billing/providers/xsolla/admin.py), through the subscriptions API (client.py):
cancel now or at period end, and cancel with a refund of the last payment. Xsolla's API has no refund of
its own for a subscription's transaction; the refund is the update's `cancel_subscription_payment`,
which only works together with canceling. Each action is done at Xsolla first, then Xsolla's state is
re-read and applied through billing.apply with the staff member and reason, and recorded in the audit
log. The `refund` webhook Xsolla sends afterwards records the money (and revokes, as any refund)."""

from billing.apply import ApplyResult
from billing.models import Subscription
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
from billing.snapshots import Provider

from . import client, selectors

CANCEL_WHEN = ("now", "period_end")


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
