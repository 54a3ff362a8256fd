"""Reconciliation: re-read every live subscription (and those ended in the last RECONCILE_ENDED_DAYS)
from its store, once per cycle, within the store's budget, oldest confirmation first; what the store
says goes through the one write path with `found_by="reconciliation"`, so every difference is recorded
as a Drift before it is applied (billing/drift.py). `--dry-run` records the drifts and applies nothing.

The cycle: a subscription is due when its store has not confirmed it (`last_verified_at`: a webhook, a
re-poll, a verification, this walk) for RECONCILE_INTERVAL_HOURS. Reconciling one confirms it, so the
walk moves on by itself and reaches each subscription once per cycle; a subscription whose store
answered recently (a webhook) is not asked again. When the budget cannot cover all of them in one
interval the walk simply lags, oldest first.

The walk, per store: live subscriptions (a partial index on (provider, last_verified_at, id) over the
statuses that are not ended: never the years of ended rows), never-confirmed ones first, then the
oldest confirmation; then those ended lately (the (status, expires_at) index). Bounded batches of
RECONCILE_BATCH rows, each after the last one seen (keyset), so that a subscription the store cannot
answer for is passed over, not read again and again. Store calls draw from the reconciliation's share
of the budget (billing/store_budgets.py): a full minute window is waited out (within the run's time),
a full day window or a 429 pause ends the store's walk until the next run. One run per store at a time
(a Redis lock); the beat task starts one run per store every 10 minutes, on the `slow` queue. What the
stores say is applied APPLY_GROUP subscriptions at a time, as one batch of the write path (one
transaction: the walk's cost per subscription is mostly the commit otherwise)."""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

import redis
from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import Q
from django.utils import timezone

from . import store_budgets
from .apply import ApplyResult, apply_snapshots
from .models import Drift, Subscription
from .providers import registry
from .providers.base import NotConfigured, NotSupported, PermanentError, ProviderError, StoreRateLimited, TransientError
from .redis_client import get_redis
from .snapshots import Cause, CauseKind, Snapshot
from .statuses import Status
from .sweeps import repollable_providers

logger = logging.getLogger(__name__)

ENDED = (Status.EXPIRED, Status.REVOKED)
CAUSE = Cause(CauseKind.POLL, ref="reconcile", found_by=Drift.FoundBy.RECONCILIATION)
# A store failing this many calls in a row (not answering, 5xx) is down: its walk waits for the next run.
MAX_FAILURES_IN_A_ROW = 5
LOCK_KEY = "reconcile:lock:"
# Subscriptions read, then applied together in one transaction (the webhook drain does the same).
APPLY_GROUP = 25


@dataclass
class StoreReport:
    checked: int = 0  # subscriptions read from the store
    drifts: int = 0
    outcomes: dict = field(default_factory=dict)  # apply outcome → count
    failed: int = 0
    stopped: str = ""  # why the walk ended before the due ones did ("" : none left, or the limit)
    waited_seconds: float = 0.0  # spent waiting for the minute window


@dataclass
class ReconcileReport:
    stores: dict[str, StoreReport] = field(default_factory=dict)

    @property
    def checked(self) -> int:
        return sum(r.checked for r in self.stores.values())

    @property
    def drifts(self) -> int:
        return sum(r.drifts for r in self.stores.values())


class _DryRun(Exception):
    def __init__(self, results: list[ApplyResult]):
        self.results = results


# --- what is due ---------------------------------------------------------------------------------

def reconcilable_providers() -> list[str]:
    """The stores with a re-read (fetch) and API credentials."""
    return repollable_providers()


def _cutoff(now):
    return now - timedelta(hours=settings.RECONCILE_INTERVAL_HOURS)


def due_live(provider: str, now=None):
    """Live subscriptions of a store not confirmed within the interval (filter matches the partial index)."""
    now = now or timezone.now()
    return (Subscription.objects.filter(provider=provider, replaced_by__isnull=True)
            .exclude(status__in=list(ENDED))
            .filter(Q(last_verified_at__isnull=True) | Q(last_verified_at__lt=_cutoff(now))))


def due_ended(provider: str, now=None):
    """Subscriptions of a store that ended lately (by their access end), not confirmed within the interval."""
    now = now or timezone.now()
    since = now - timedelta(days=settings.RECONCILE_ENDED_DAYS)
    return (Subscription.objects.filter(provider=provider, replaced_by__isnull=True, status__in=list(ENDED),
                                        expires_at__gte=since)
            .filter(Q(last_verified_at__isnull=True) | Q(last_verified_at__lt=_cutoff(now))))


def due_count(provider: str) -> int:
    now = timezone.now()
    return due_live(provider, now).count() + due_ended(provider, now).count()


def _batches(provider: str, size: int):
    """Due subscriptions in walking order, RECONCILE_BATCH rows per query, each query after the last row
    handed out (so a row the walk could not update is not handed out twice)."""
    now = timezone.now()
    for queryset in (due_live(provider, now), due_ended(provider, now)):
        # never confirmed: by id
        last_id = 0
        while True:
            rows = list(queryset.filter(last_verified_at__isnull=True, id__gt=last_id).order_by("id")[:size])
            if not rows:
                break
            yield rows
            last_id = rows[-1].id
        # then the oldest confirmation first
        cursor = None
        while True:
            page = queryset.filter(last_verified_at__isnull=False)
            if cursor is not None:
                page = page.filter(Q(last_verified_at__gt=cursor[0]) | Q(last_verified_at=cursor[0], id__gt=cursor[1]))
            rows = list(page.order_by("last_verified_at", "id")[:size])
            if not rows:
                break
            yield rows
            cursor = (rows[-1].last_verified_at, rows[-1].id)


# --- the walk --------------------------------------------------------------------------------------

def subscription_fetch(subscription: Subscription) -> Snapshot:
    """The store's state of one subscription, drawn from the reconciliation's share of the budget. Raises
    the adapter's errors (and QuotaExceeded); no transaction is open during the store call."""
    adapter = registry.get_adapter(subscription.provider)
    with store_budgets.priority(store_budgets.RECONCILE):
        return adapter.fetch(subscription)


def snapshots_apply(snapshots: list[Snapshot], *, dry_run: bool = False) -> list[ApplyResult]:
    """Apply the stores' states through the write path as one batch (one transaction: the walk's commit
    cost is shared by APPLY_GROUP subscriptions), recording each drift. With `dry_run` the write path runs
    inside a savepoint that is rolled back (nothing kept, nothing published, not even the confirmation),
    then the drifts it found are stored, marked not applied."""
    items = [(snapshot, CAUSE) for snapshot in snapshots]
    if not dry_run:
        return apply_snapshots(items)
    with transaction.atomic():
        try:
            with transaction.atomic():
                raise _DryRun(apply_snapshots(items))
        except _DryRun as done:
            results = done.results
        drifts = [result.drift for result in results if result.drift is not None]
        for drift in drifts:
            drift.pk, drift.applied = None, False
        Drift.objects.bulk_create(drifts)
    return results


def subscription_reconcile(*, subscription: Subscription, dry_run: bool = False) -> ApplyResult:
    """Read one subscription from its store and apply it, recording any drift (`dry_run`: record only)."""
    return snapshots_apply([subscription_fetch(subscription)], dry_run=dry_run)[0]


def store_reconcile(provider: str, *, limit: int | None = None, dry_run: bool = False,
                    deadline: float | None = None, progress: Callable[[], None] | None = None) -> StoreReport:
    """Walk one store's due subscriptions until none is left, `limit` are read, the monotonic `deadline`
    passes, or the store's budget (day window, 429 pause) or the store itself stops it. What the store
    says is applied APPLY_GROUP subscriptions at a time (and what was read before a stop, always)."""
    report = StoreReport()
    pending: list[Snapshot] = []
    try:
        _walk(provider, report, pending, limit=limit, dry_run=dry_run, deadline=deadline, progress=progress)
    finally:
        _flush(pending, report, dry_run=dry_run)
    return report


def _flush(pending: list[Snapshot], report: StoreReport, *, dry_run: bool) -> None:
    if not pending:
        return
    try:
        results = snapshots_apply(pending, dry_run=dry_run)
    except DatabaseError:
        # One row the batch cannot take (a race on a new product, say) must not lose the others: one by one.
        logger.exception("reconciliation: a batch of %d failed to apply; applying them one by one", len(pending))
        results = []
        for snapshot in pending:
            try:
                results += snapshots_apply([snapshot], dry_run=dry_run)
            except DatabaseError:
                logger.exception("reconciliation: %s could not be applied", snapshot.provider_subscription_id)
                report.failed += 1
    pending.clear()
    for result in results:
        report.checked += 1
        report.outcomes[result.outcome] = report.outcomes.get(result.outcome, 0) + 1
        report.drifts += result.drift is not None


def _walk(provider: str, report: StoreReport, pending: list[Snapshot], *, limit: int | None, dry_run: bool,
          deadline: float | None, progress: Callable[[], None] | None) -> None:
    size = max(1, settings.RECONCILE_BATCH)
    failures_in_a_row = read = 0
    for rows in _batches(provider, size):
        for sub in rows:
            if limit is not None and read + report.failed >= limit:
                return
            while True:
                if deadline is not None and time.monotonic() >= deadline:
                    report.stopped = "time"
                    return
                try:
                    snapshot = subscription_fetch(sub)
                except store_budgets.QuotaExceeded as exc:
                    wait = exc.retry_after
                    if exc.reason in ("minute", "verify") and (deadline is None or
                                                               time.monotonic() + wait < deadline):
                        _flush(pending, report, dry_run=dry_run)  # nothing waits unapplied meanwhile
                        time.sleep(wait)  # the minute window opens again shortly: wait, then the same row
                        report.waited_seconds += wait
                        continue
                    report.stopped = f"budget ({exc.reason})"
                    return
                except StoreRateLimited:  # the budget's hook paused the store's background jobs
                    report.failed += 1
                    report.stopped = "store answered 429"
                    return
                except (NotSupported, NotConfigured, registry.UnknownProvider) as exc:
                    report.stopped = f"cannot re-read: {exc}"
                    return
                except TransientError as exc:
                    report.failed += 1
                    failures_in_a_row += 1
                    logger.info("reconciliation of %s failed, left for the next run: %s", sub, exc)
                    if failures_in_a_row >= MAX_FAILURES_IN_A_ROW:
                        report.stopped = f"store unavailable ({exc})"
                        return
                except (PermanentError, ProviderError) as exc:
                    report.failed += 1
                    logger.warning("reconciliation of %s failed: %s", sub, exc)
                else:
                    failures_in_a_row = 0
                    read += 1
                    pending.append(snapshot)
                    if len(pending) >= APPLY_GROUP:
                        _flush(pending, report, dry_run=dry_run)
                break
            if progress is not None:
                progress()


def reconcile(*, provider: str | None = None, limit: int | None = None, dry_run: bool = False,
              deadline: float | None = None, progress: Callable[[], None] | None = None) -> ReconcileReport:
    """Reconcile each reconcilable store (or the one given), one after the other; `limit` over all."""
    report = ReconcileReport()
    providers = [provider] if provider else reconcilable_providers()
    for name in providers:
        left = None if limit is None else limit - sum(r.checked + r.failed for r in report.stores.values())
        if left is not None and left <= 0:
            break
        with store_lock(name, seconds=settings.RECONCILE_RUN_SECONDS + 60) as held:
            if not held:
                report.stores[name] = StoreReport(stopped="another run holds this store")
                continue
            report.stores[name] = store_reconcile(name, limit=left, dry_run=dry_run, deadline=deadline,
                                                  progress=progress)
    return report


class store_lock:  # a context manager read as a phrase: `with store_lock(...) as held`
    """One reconciliation of a store at a time, across processes (Redis SET NX with expiry; without
    Redis, always held: a single process then)."""

    def __init__(self, provider: str, *, seconds: float):
        self.key = LOCK_KEY + provider
        self.seconds = seconds
        self.token = f"{time.time()}"
        self.client = None

    def __enter__(self) -> bool:
        self.client = get_redis()
        if self.client is None:
            return True
        try:
            return bool(self.client.set(self.key, self.token, nx=True, ex=int(self.seconds)))
        except redis.RedisError:  # Redis failing: go on without the lock rather than never reconcile
            self.client = None
            return True

    def __exit__(self, *exc) -> None:
        if self.client is None:
            return
        try:
            if self.client.get(self.key) in (self.token, self.token.encode()):
                self.client.delete(self.key)
        except redis.RedisError:
            logger.warning("reconciliation lock %s not released; it expires by itself", self.key)
