"""Google Play's own writes: acknowledging purchases, and staff changes made at Google. Subscription
state is always written through billing.apply.

Acknowledging: Google refunds a purchase not acknowledged within 3 days. Never while the purchase is
PENDING; only once the user link is settled (the subscription has a subscriber: an orphan waits for
support to link it, and is listed in the admin with its deadline); the fact is recorded through
apply_snapshot (`acknowledged=True`). Webhook processing and verification acknowledge right after
applying (`Pending`, a follow-up of the ParseResult); the beat task `acknowledge_due` retries what is
left (`purchases_acknowledge_due`). A new purchase whose processing keeps failing (no subscription row
yet, so neither of those sees it) is acknowledged from what its notification says once it is
ACKNOWLEDGE_FAILING_AFTER old (`purchase_acknowledge_from_notification`, called by webhook processing
after a failed attempt): the purchase is genuine (the notification is authenticated), the failure is
ours, and a refund by Google would lose the sale for good.

Staff changes (revoke with a refund, defer the next renewal): the store first, then a re-read of the
purchase applied through apply_snapshot with the staff member and reason on the status change. The
RTDN Google sends afterwards re-reads the same state (no second effect)."""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from billing.apply import ApplyResult, apply_snapshot
from billing.models import Subscription
from billing.providers.base import NotConfigured, PermanentError, TransientError
from billing.providers.staff_changes import (
    FIX_PERMISSION,
    REFUND_PERMISSION,
    StoreActionError,
    apply_after_store_action,
    ensure_allowed,
    ensure_provider,
    staff_cause,
)
from billing.snapshots import Cause, CauseKind, Provider, Snapshot

from . import client, mapping, selectors

logger = logging.getLogger(__name__)

BATCH = 200
REFUNDS = ("full", "prorated")
MAX_DEFER_DAYS = 365


# --- Acknowledgement ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Pending:
    """What acknowledging one purchase needs: the token, the product (still a required path
    parameter), and the state just applied (recorded again with acknowledged=True)."""

    snapshot: Snapshot
    product_id: str

    def __call__(self, results=None) -> bool:  # a ParseResult.after_apply follow-up
        return purchase_acknowledge(self)


def pending_acknowledgement(snapshot: Snapshot, purchase: dict) -> Pending | None:
    """The acknowledgement a purchase just read still needs, if any."""
    if not mapping.needs_acknowledgement(purchase):
        return None
    return Pending(snapshot=snapshot, product_id=mapping.product_id(purchase))


def purchase_acknowledge(pending: Pending) -> bool:
    """Acknowledge at Google if still needed and the user is known; True when done. TransientError
    propagates (the caller retries); a refusal by Google is logged and left to the beat task."""
    token = pending.snapshot.provider_subscription_id
    state = selectors.acknowledgement_state(token)
    if state is None or state.acknowledged:
        return False
    if not state.linked:
        logger.info("google purchase %s not acknowledged yet: no user linked", token[:16])
        return False
    try:
        client.subscription_acknowledge(token, pending.product_id)
    except TransientError:
        raise
    except PermanentError as exc:
        logger.warning("google refused to acknowledge %s: %s", token[:16], exc)
        return False
    # Same state and store time as the snapshot just applied, now acknowledged. derived=True: it does
    # not move last_event_at; if a newer state landed meanwhile this one is stale, and the beat task
    # records the acknowledgement from the store's own state later.
    snap = pending.snapshot
    apply_snapshot(Snapshot(provider=snap.provider, provider_subscription_id=token, status=snap.status,
                            observed_at=snap.observed_at, environment=snap.environment, acknowledged=True,
                            derived=True, note="acknowledged at Google"),
                   Cause(CauseKind.POLL, ref="google:acknowledge"))
    return True


# Two days before Google's 3-day deadline: retries come at least hourly, so a few hundred tries remain.
# Before that, a failing purchase waits for its processing as any other (never while pending, only
# once its user is known).
ACKNOWLEDGE_FAILING_AFTER = timedelta(hours=24)


def purchase_acknowledge_from_notification(notification: dict, *, received_at: datetime, final: bool) -> str:
    """A SUBSCRIPTION_PURCHASED notification whose processing failed: acknowledge the purchase it names
    (token and product from the notification alone, no read of the purchase) once it is
    ACKNOWLEDGE_FAILING_AFTER old, or at once when `final` (no further attempt is planned). Returns what
    was done ("" nothing yet: not due, not ours, or Google did not take it; tried again after the next
    failed attempt)."""
    inner = notification.get("subscriptionNotification") or {}
    token, product = inner.get("purchaseToken"), inner.get("subscriptionId")
    if inner.get("notificationType") != mapping.SUBSCRIPTION_PURCHASED or not token or not product:
        return ""
    if notification.get("packageName") != settings.GOOGLE_PLAY_PACKAGE_NAME:
        return ""
    bought_at = mapping.event_time(notification) or received_at
    if not final and timezone.now() - bought_at < ACKNOWLEDGE_FAILING_AFTER:
        return ""
    state = selectors.acknowledgement_state(token)
    if state is not None and state.acknowledged:
        return "already acknowledged"
    try:
        client.subscription_acknowledge(token, product)
    except (TransientError, PermanentError, NotConfigured) as exc:  # a pending purchase, Google down: next time
        logger.warning("google purchase %s: acknowledgement while its processing fails did not go through: %s",
                       token[:16], exc)
        return ""
    logger.warning("google purchase %s acknowledged from its notification: its processing keeps failing and "
                   "Google refunds unacknowledged purchases after 3 days", token[:16])
    return f"acknowledged at Google from the notification ({product}) while processing kept failing"


@dataclass
class AcknowledgementReport:
    acknowledged: int = 0
    recorded: int = 0  # Google already had it acknowledged: only our record was missing
    waiting: int = 0
    failed: int = 0


def purchases_acknowledge_due(*, limit: int = BATCH) -> AcknowledgementReport:
    """The beat task's work: re-read each unacknowledged purchase with a user (soonest deadline
    first), apply the state, and acknowledge it. Runs every few minutes, well inside 3 days."""
    report = AcknowledgementReport()
    for sub in selectors.subscriptions_awaiting_acknowledgement(linked_only=True)[:limit]:
        try:
            purchase = client.subscription_get(sub.provider_subscription_id)
            snapshot = selectors.purchase_snapshot(sub.provider_subscription_id, purchase, known_status=sub.status,
                                                   observed_at=timezone.now())
            apply_snapshot(snapshot, Cause(CauseKind.BEAT, ref="google:acknowledge_due"))
            pending = pending_acknowledgement(snapshot, purchase)
            if pending is None:
                report.recorded += 1 if snapshot.acknowledged else 0
                report.waiting += 0 if snapshot.acknowledged else 1
            elif purchase_acknowledge(pending):
                report.acknowledged += 1
            else:
                report.waiting += 1
        except client.QuotaExceeded:
            report.failed += 1
            break  # the rest waits for the next run
        except (TransientError, PermanentError) as exc:
            report.failed += 1
            logger.warning("acknowledging google purchase %s failed: %s", sub.pk, exc)
    return report


# --- Staff changes at Google --------------------------------------------------------------------

def _google(subscription: Subscription) -> None:
    ensure_provider(subscription, Provider.GOOGLE, "Google Play")


def _reread(subscription: Subscription, *, revoked: bool = False):
    token = subscription.provider_subscription_id
    return lambda: selectors.purchase_snapshot(token, client.subscription_get(token), known_status=subscription.status,
                                               revoked=revoked, observed_at=timezone.now())


def subscription_revoke_at_google(*, subscription: Subscription, refund: str, reason: str,
                                  staff_user) -> ApplyResult:
    """Revoke at Google with a full or prorated refund: access ends now (REVOKED). Google's
    voidedPurchaseNotification then records the refund transaction. Needs the refund permission."""
    _google(subscription)
    ensure_allowed(staff_user, REFUND_PERMISSION)
    if refund not in REFUNDS:
        raise StoreActionError(f"Refund must be one of {', '.join(REFUNDS)}.")
    cause = staff_cause(reason, staff_user, f"revoked at Google with a {refund} refund")
    client.subscription_revoke(subscription.provider_subscription_id, refund=refund)
    return apply_after_store_action(subscription=subscription, staff_user=staff_user, action="store_revoke_refund",
                                    reason=reason, cause=cause, details={"provider": "google", "refund": refund},
                                    reread=_reread(subscription, revoked=True))


def subscription_defer_at_google(*, subscription: Subscription, days: int, reason: str,
                                 staff_user) -> ApplyResult:
    """Move the next renewal `days` later for free (a goodwill extension). Uses the purchase's current
    etag, so a change at Google in between makes it fail rather than defer twice."""
    _google(subscription)
    ensure_allowed(staff_user, FIX_PERMISSION)
    if not isinstance(days, int) or not 1 <= days <= MAX_DEFER_DAYS:
        raise StoreActionError(f"Defer by 1 to {MAX_DEFER_DAYS} days.")
    cause = staff_cause(reason, staff_user, f"next renewal deferred by {days} days at Google")
    purchase = client.subscription_get(subscription.provider_subscription_id)
    etag = purchase.get("etag")
    if not etag:
        raise StoreActionError("Google returned no etag for this purchase; it cannot be deferred now.")
    client.subscription_defer(subscription.provider_subscription_id, seconds=days * 86400, etag=etag)
    # No status changes, so no history row carries the staff member: the log and the audit entry keep who and why.
    logger.info("google subscription %s deferred by %d days at Google by %s: %s", subscription.pk, days,
                staff_user.get_username(), cause.note)
    details = {"provider": "google", "days": days, "expires_before": _iso(subscription.expires_at)}
    return apply_after_store_action(subscription=subscription, staff_user=staff_user, action="store_defer",
                                    reason=reason, cause=cause, details=details, reread=_reread(subscription))


def _iso(value) -> str | None:
    return value.isoformat() if value else None
