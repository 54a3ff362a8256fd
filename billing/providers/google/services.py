"""Staff changes made at Google, then brought into our state: the store first, then a re-read of the
purchase applied through apply_snapshot with the staff member and reason on the status change. The
RTDN Google sends afterwards re-reads the same state (no second effect)."""

import logging

from django.utils import timezone

from billing.apply import ApplyResult, apply_snapshot
from billing.models import Subscription
from billing.snapshots import Cause, CauseKind, Provider

from . import client

REFUNDS = ("full", "prorated")
MAX_DEFER_DAYS = 365

logger = logging.getLogger(__name__)


class StoreActionError(ValueError):
    """A staff action that cannot be done as asked; the message says why."""


def _cause(reason: str, staff_user, what: str) -> Cause:
    reason = (reason or "").strip()
    if not reason:
        raise StoreActionError("A reason is required: say why (it is kept in the subscription's history).")
    if staff_user is None or not getattr(staff_user, "pk", None):
        raise StoreActionError("The staff member doing this is required.")
    return Cause(CauseKind.STAFF, ref=f"staff:{staff_user.get_username()}", staff_user_id=staff_user.pk,
                 note=f"{what}: {reason}")


def _google(subscription: Subscription) -> None:
    if subscription.provider != Provider.GOOGLE:
        raise StoreActionError(f"{subscription} is not a Google Play subscription.")


def _apply_current(subscription: Subscription, cause: Cause, *, revoked: bool = False) -> ApplyResult:
    from .adapter import GoogleAdapter

    token = subscription.provider_subscription_id
    purchase = client.subscription_get(token)
    snapshot = GoogleAdapter().snapshot_for(token, purchase, known_status=subscription.status, revoked=revoked,
                                            observed_at=timezone.now())
    return apply_snapshot(snapshot, cause)


def subscription_revoke_at_google(*, subscription: Subscription, refund: str, reason: str,
                                  staff_user) -> ApplyResult:
    """Revoke at Google with a full or prorated refund: access ends now (REVOKED). Google's
    voidedPurchaseNotification then records the refund transaction."""
    _google(subscription)
    if refund not in REFUNDS:
        raise StoreActionError(f"Refund must be one of {', '.join(REFUNDS)}.")
    cause = _cause(reason, staff_user, f"revoked at Google with a {refund} refund")
    client.subscription_revoke(subscription.provider_subscription_id, refund=refund)
    return _apply_current(subscription, cause, revoked=True)


def subscription_defer_at_google(*, subscription: Subscription, days: int, reason: str,
                                 staff_user) -> ApplyResult:
    """Move the next renewal `days` later for free (a goodwill extension). Uses the purchase's current
    etag, so a change at Google in between makes it fail rather than defer twice."""
    _google(subscription)
    if not isinstance(days, int) or not 1 <= days <= MAX_DEFER_DAYS:
        raise StoreActionError(f"Defer by 1 to {MAX_DEFER_DAYS} days.")
    cause = _cause(reason, staff_user, f"next renewal deferred by {days} days at Google")
    purchase = client.subscription_get(subscription.provider_subscription_id)
    etag = purchase.get("etag")
    if not etag:
        raise StoreActionError("Google returned no etag for this purchase; it cannot be deferred now.")
    client.subscription_defer(subscription.provider_subscription_id, seconds=days * 86400, etag=etag)
    # No status changes, so no history row carries the staff member: the log keeps who and why.
    logger.info("google subscription %s deferred by %d days at Google by %s: %s", subscription.pk, days,
                staff_user.get_username(), cause.note)
    return _apply_current(subscription, cause)
