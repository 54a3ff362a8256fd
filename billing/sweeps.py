"""Keeping the stored state honest without waiting for the stores: the expiry sweep and the re-poll.
Both write through apply_snapshot; the beat tasks and `manage.py resync_subscriptions` call these."""

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from django.db import connection, transaction
from django.db.models import F, Q
from django.db.models.functions import Greatest
from django.utils import timezone

from . import store_budgets
from .apply import ApplyResult, apply_snapshot
from .models import Drift, Subscription
from .providers import registry
from .providers.base import NotConfigured, NotSupported, ProviderAdapter, ProviderError, TransientError
from .providers.common import store_adapters
from .snapshots import Cause, CauseKind, Provider, Snapshot
from .statuses import ENTITLED_STATUSES, STATUS_CHOICES, Status, grants_access, lapsed_status

logger = logging.getLogger(__name__)

# Re-poll a live subscription the stores have not confirmed for this long (webhooks can be lost).
REPOLL_STALE_AFTER = timedelta(hours=24)
# ... and one whose expiry is this close, or passed without a confirmation since (a lost renewal).
REPOLL_EXPIRY_AHEAD = timedelta(minutes=30)
REPOLL_EXPIRY_BEHIND = timedelta(days=3)
# Never re-poll the same subscription more often than this.
REPOLL_MIN_INTERVAL = timedelta(minutes=30)
REPOLL_BATCH = 200
EXPIRE_BATCH = 1000


# --- the expiry sweep -------------------------------------------------------------------------

def lapsed_subscriptions(now=None):
    """Entitled by status but past their access end (expiry and grace): the sweep's work list."""
    now = now or timezone.now()
    past_end = (Q(expires_at__lt=now) & (Q(grace_until__isnull=True) | Q(grace_until__lt=now))) | Q(
        expires_at__isnull=True, grace_until__lt=now)
    lapsed = Subscription.objects.filter(past_end, status__in=sorted(ENTITLED_STATUSES))
    if connection.vendor == "postgresql":
        # The same condition as PostgreSQL's GREATEST (it passes over NULLs): what the partial index
        # subscription_entitled_by_end holds, so only the lapsed rows are read, not every live one.
        lapsed = lapsed.alias(access_end=Greatest("expires_at", "grace_until")).filter(access_end__lt=now)
    return lapsed


def subscriptions_expire_lapsed(*, limit: int = EXPIRE_BATCH) -> int:
    """Turn lapsed subscriptions EXPIRED (derived: a later store state still applies). Returns how many."""
    ids = list(lapsed_subscriptions().order_by("expires_at").values_list("pk", flat=True)[:limit])
    return sum(1 for pk in ids if subscription_expire_if_lapsed(subscription_id=pk) is not None)


def subscription_expire_if_lapsed(*, subscription_id: int) -> ApplyResult | None:
    with transaction.atomic():
        # Re-checked under the row lock: a renewal may have landed since the list was read.
        sub = Subscription.objects.select_for_update().get(pk=subscription_id)
        now = timezone.now()
        ends = sub.access_ends_at
        if not grants_access(sub.status) or ends is None or ends > now:
            return None
        return apply_snapshot(Snapshot(
            provider=sub.provider, provider_subscription_id=sub.provider_subscription_id,
            status=lapsed_status(sub.status), observed_at=now, environment=sub.environment, ended_at=ends,
            derived=True, note="access ended"), Cause(CauseKind.BEAT, ref="expire_lapsed",
                                                      note=f"access ended at {ends.isoformat()}"))


# --- re-polling the stores --------------------------------------------------------------------

def can_repoll(adapter: ProviderAdapter) -> bool:
    """The store has a re-poll and its API is configured."""
    if type(adapter).fetch is ProviderAdapter.fetch:
        return False
    return not adapter.missing_settings(for_api=True)


def repollable_providers() -> list[str]:
    return [name for name, adapter in store_adapters() if adapter is not None and can_repoll(adapter)]


def subscriptions_due_for_repoll(now=None):
    """Live subscriptions not confirmed by their store lately, and those around their expiry with no
    confirmation since it (a renewal or an expiry we may have missed); oldest confirmation first."""
    now = now or timezone.now()
    unconfirmed = Q(last_verified_at__isnull=True) | Q(last_verified_at__lt=now - REPOLL_STALE_AFTER)
    stale = unconfirmed & ~Q(status__in=[Status.EXPIRED, Status.REVOKED])
    around_expiry = (Q(expires_at__gte=now - REPOLL_EXPIRY_BEHIND, expires_at__lte=now + REPOLL_EXPIRY_AHEAD)
                     & (Q(last_verified_at__isnull=True) | (Q(last_verified_at__lt=F("expires_at"))
                                                            & Q(last_verified_at__lt=now - REPOLL_MIN_INTERVAL)))
                     & ~Q(status=Status.REVOKED))
    return (Subscription.objects.filter(stale | around_expiry, replaced_by__isnull=True)
            .exclude(provider=Provider.MANUAL).order_by(F("last_verified_at").asc(nulls_first=True), "id"))


@dataclass
class ResyncReport:
    applied: dict = field(default_factory=dict)  # outcome -> count
    skipped: int = 0
    failed: int = 0

    def count(self, outcome: str) -> None:
        self.applied[outcome] = self.applied.get(outcome, 0) + 1


def subscription_resync(*, subscription: Subscription, cause_ref: str = "repoll",
                        staff_user_id: int | None = None) -> ApplyResult:
    """Fetch the store's current state and apply it. Raises the adapter's errors (NotSupported,
    NotConfigured, TransientError, ...); no transaction is open during the store call."""
    adapter = registry.get_adapter(subscription.provider)
    snapshot = adapter.fetch(subscription)
    kind = CauseKind.STAFF if staff_user_id else CauseKind.POLL
    found_by = Drift.FoundBy.STAFF_RESYNC if staff_user_id else Drift.FoundBy.REPOLL
    return apply_snapshot(snapshot, Cause(kind, ref=cause_ref, staff_user_id=staff_user_id, found_by=found_by,
                                          note="re-synced from the store" if staff_user_id else ""))


def subscriptions_resync(subscriptions, *, cause_ref: str = "repoll", progress=None) -> ResyncReport:
    """Re-sync each subscription; a store that cannot be re-polled is skipped, a failure is left for
    the next run. `progress` is called once per subscription (the command's progress bar)."""
    report = ResyncReport()
    for sub in subscriptions:
        try:
            with store_budgets.priority(store_budgets.REPOLL):  # within the re-poll's share of the budget
                result = subscription_resync(subscription=sub, cause_ref=cause_ref)
        except (NotSupported, NotConfigured, registry.UnknownProvider):
            report.skipped += 1
        except TransientError as exc:
            report.failed += 1
            logger.info("re-poll of %s failed, left for the next run: %s", sub, exc)
        except ProviderError as exc:
            report.failed += 1
            logger.warning("re-poll of %s failed: %s", sub, exc)
        else:
            report.count(result.outcome)
        if progress is not None:
            progress()
    return report


def subscriptions_repoll(*, limit: int = REPOLL_BATCH) -> ResyncReport:
    """The periodic re-poll: a bounded batch of what is due, for the stores that can be re-polled."""
    providers = repollable_providers()
    if not providers:
        return ResyncReport()
    return subscriptions_resync(subscriptions_repoll_batch(providers, limit=limit), cause_ref="repoll")


def subscriptions_repoll_batch(providers: list[str], *, limit: int = REPOLL_BATCH, now=None) -> list[Subscription]:
    """The re-poll's next batch: the first `limit` due subscriptions of these stores, in the order of
    subscriptions_due_for_repoll. That one query (an OR over millions of rows, ordered) would read every
    live subscription to keep the first 200; instead each part of it is read in order along an index, at
    most `limit` rows each, and the parts merged: per store, the never-confirmed live ones (by id) and the
    live ones not confirmed lately (by confirmation), both along subscription_live_by_verified; then those
    around their expiry (a window of the (status, expires_at) index). Every part is a subset of the due
    query (its filter added to it) and together they cover it, so the first `limit` are the same rows."""
    now = now or timezone.now()
    due = subscriptions_due_for_repoll(now)
    live = ~Q(status__in=[Status.EXPIRED, Status.REVOKED])  # the partial index's condition
    parts = []
    for provider in sorted(set(providers) - {Provider.MANUAL}):
        mine = due.filter(live, provider=provider)
        parts.append(mine.filter(last_verified_at__isnull=True).order_by("id")[:limit])
        stale = mine.filter(last_verified_at__lt=now - REPOLL_STALE_AFTER)
        parts.append(stale.order_by("last_verified_at", "id")[:limit])
    # Around the expiry: every status but REVOKED, spelled as a list so the (status, expires_at) index serves it.
    not_revoked = [value for value, _ in STATUS_CHOICES if value != Status.REVOKED]
    window = due.filter(provider__in=providers, status__in=not_revoked, expires_at__gte=now - REPOLL_EXPIRY_BEHIND,
                        expires_at__lte=now + REPOLL_EXPIRY_AHEAD)
    parts.append(window[:limit])
    rows = {sub.pk: sub for part in parts for sub in part}
    ordered = sorted(rows.values(), key=lambda s: (s.last_verified_at is not None, s.last_verified_at or now, s.pk))
    return ordered[:limit]
