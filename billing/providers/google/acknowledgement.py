"""Acknowledging purchases. Google refunds a purchase not acknowledged within 3 days.

Rules: never while the purchase is PENDING; only once the user link is settled (the subscription has
a subscriber: an orphan waits for support to link it, and is listed in the admin with its deadline);
the fact is recorded through apply_snapshot (`acknowledged=True`). Webhook processing and verification
acknowledge right after applying; the beat task `acknowledge_due` retries what is left."""

import logging
from dataclasses import dataclass

from django.utils import timezone

from billing.apply import apply_snapshot
from billing.models import Subscription
from billing.providers.base import PermanentError, TransientError
from billing.snapshots import Cause, CauseKind, Provider, Snapshot

from . import client, mapping, selectors

logger = logging.getLogger(__name__)

BATCH = 200


@dataclass(frozen=True)
class Pending:
    """What acknowledging one purchase needs: the token, the product (still a required path
    parameter), and the state just applied (recorded again with acknowledged=True)."""

    snapshot: Snapshot
    product_id: str

    def __call__(self, results=None) -> bool:  # a ParseResult.after_apply follow-up
        return acknowledge(self)


def pending_for(snapshot: Snapshot, purchase: dict) -> Pending | None:
    if not mapping.needs_acknowledgement(purchase):
        return None
    return Pending(snapshot=snapshot, product_id=mapping.product_id(purchase))


def acknowledge(pending: Pending) -> bool:
    """Acknowledge at Google if still needed and the user is known; True when done. TransientError
    propagates (the caller retries); a refusal by Google is logged and left to the beat task."""
    token = pending.snapshot.provider_subscription_id
    row = (Subscription.objects.filter(provider=Provider.GOOGLE, provider_subscription_id=token)
           .values("subscriber_id", "acknowledged_at").first())
    if row is None or row["acknowledged_at"] is not None:
        return False
    if row["subscriber_id"] is None:
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


@dataclass
class Report:
    acknowledged: int = 0
    recorded: int = 0  # Google already had it acknowledged: only our record was missing
    waiting: int = 0
    failed: int = 0


def acknowledge_due(*, limit: int = BATCH) -> Report:
    """The beat task's work: re-read each unacknowledged purchase with a user (soonest deadline
    first), apply the state, and acknowledge it. Runs every few minutes, well inside 3 days."""
    from .adapter import GoogleAdapter

    adapter = GoogleAdapter()
    report = Report()
    if adapter.missing_settings(for_api=True):
        return report
    due = selectors.subscriptions_awaiting_acknowledgement().filter(subscriber__isnull=False)[:limit]
    for sub in due:
        try:
            purchase = client.subscription_get(sub.provider_subscription_id)
            snapshot = adapter.snapshot_for(sub.provider_subscription_id, purchase, known_status=sub.status,
                                            observed_at=timezone.now())
            apply_snapshot(snapshot, Cause(CauseKind.BEAT, ref="google:acknowledge_due"))
            pending = pending_for(snapshot, purchase)
            if pending is None:
                report.recorded += 1 if snapshot.acknowledged else 0
                report.waiting += 0 if snapshot.acknowledged else 1
            elif acknowledge(pending):
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


