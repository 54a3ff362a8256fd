"""Retention: raw data kept only as long as it is needed (RETENTION_* settings, docs/operations.md
"Retention"), pruned by the daily beat job `privacy.tasks.prune_retained` (and `manage.py
prune_retained`).

Without long locks: every step works in batches of RETENTION_BATCH_SIZE rows, each its own short
statement in its own transaction (autocommit), so no row is held longer than one batch and workers,
the relay and the admin never wait behind the job. Deletions take the oldest ids first (`… ORDER BY id
LIMIT n`: what is deleted is not read again). Emptying webhook bodies walks the primary key in windows
of ids (`id >= a AND id < a + n`): emptied rows stay in the table, and a window is one index range
whatever the table's size.

Never touched: the ledger (billing.Transaction), the status history (billing.StatusChange), failed
and dead webhook events (kept with their bodies until resolved), unpublished outbox rows, outbox rows
the outgoing-webhooks fan-out has not passed, dead outgoing deliveries. A webhook event's row, and its
dedupe key, outlives its body: a store's late redelivery is still answered as a duplicate (the row is
deleted only after RETENTION_WEBHOOK_EVENT_DAYS, at least 8 days, beyond every store's retry window)."""

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import timedelta

import redis
from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from billing.models import Outbox
from billing.redis_client import get_redis
from outgoing.models import Delivery, Event, FanoutCursor
from webhooks.models import WebhookEvent

logger = logging.getLogger(__name__)

DONE = (WebhookEvent.Status.PROCESSED, WebhookEvent.Status.IGNORED)  # failed and dead wait for staff
EMPTIED = "emptied by retention (RETENTION_WEBHOOK_BODY_DAYS)"
REJECTED_PREFIX = "webhooks:rejected:"


@dataclass
class PruneReport:
    webhook_bodies_emptied: int = 0
    webhook_events_deleted: int = 0
    outbox_rows_deleted: int = 0
    outgoing_deliveries_deleted: int = 0
    outgoing_events_deleted: int = 0
    stream_entries_trimmed: int = 0
    rejected_counters_deleted: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def _cutoff(days: int):
    return timezone.now() - timedelta(days=days) if days > 0 else None


def _done_before(cutoff) -> Q:
    """Processed (or ignored) before `cutoff`: the age counts from processing, so a dead event resolved
    today keeps its body for the whole retention period."""
    return Q(status__in=DONE) & (Q(processed_at__lt=cutoff) | Q(processed_at__isnull=True, received_at__lt=cutoff))


def webhook_bodies_empty(*, progress: Callable[[int], None] = lambda n: None) -> int:
    cutoff = _cutoff(settings.RETENTION_WEBHOOK_BODY_DAYS)
    if cutoff is None:
        return 0
    first = WebhookEvent.objects.order_by("pk").values_list("pk", flat=True).first()
    last = (WebhookEvent.objects.filter(received_at__lt=cutoff).order_by("-received_at")  # the time index
            .values_list("pk", flat=True).first())
    if first is None or last is None:
        return 0
    size, emptied = settings.RETENTION_BATCH_SIZE, 0
    for start in range(first, last + 1, size):
        n = (WebhookEvent.objects.filter(_done_before(cutoff), pk__gte=start, pk__lt=start + size)
             .exclude(body=b"", headers={}, payload={})
             .update(body=b"", headers={}, payload={}, payload_problem=EMPTIED))
        emptied += n
        progress(n)
    return emptied


def _delete_in_batches(queryset, progress: Callable[[int], None]) -> int:
    """Delete the rows of `queryset` oldest id first, RETENTION_BATCH_SIZE per statement."""
    model, size, deleted = queryset.model, settings.RETENTION_BATCH_SIZE, 0
    while True:
        ids = list(queryset.order_by("pk").values_list("pk", flat=True)[:size])
        if not ids:
            return deleted
        model.objects.filter(pk__in=ids).delete()  # by id: the batch's own rows, a few ms of locks
        deleted += len(ids)
        progress(len(ids))
        if len(ids) < size:
            return deleted


def webhook_events_delete(*, progress=lambda n: None) -> int:
    cutoff = _cutoff(settings.RETENTION_WEBHOOK_EVENT_DAYS)
    if cutoff is None:
        return 0
    return _delete_in_batches(WebhookEvent.objects.filter(_done_before(cutoff)), progress)


def outbox_delete(*, progress=lambda n: None) -> int:
    cutoff = _cutoff(settings.RETENTION_OUTBOX_DAYS)
    if cutoff is None:
        return 0
    rows = Outbox.objects.filter(published_at__isnull=False, created_at__lt=cutoff)
    cursor = FanoutCursor.objects.order_by("pk").first()
    if cursor is not None:  # the outgoing webhooks copy outbox rows: never delete one it has not passed
        rows = rows.filter(pk__lte=cursor.outbox_id)
    return _delete_in_batches(rows, progress)


def outgoing_delete(*, progress=lambda n: None) -> tuple[int, int]:
    cutoff = _cutoff(settings.RETENTION_OUTGOING_DAYS)
    if cutoff is None:
        return 0, 0
    deliveries = _delete_in_batches(
        Delivery.objects.filter(status=Delivery.Status.DELIVERED, created_at__lt=cutoff), progress)
    cursor = FanoutCursor.objects.order_by("pk").first()
    events = Event.objects.filter(created_at__lt=cutoff, deliveries__isnull=True)
    if cursor is not None:  # the fan-out skips outbox rows already copied above its cursor
        events = events.filter(outbox_id__lte=cursor.outbox_id)
    return deliveries, _delete_in_batches(events, progress)


def stream_trim() -> int:
    """XTRIM MINID: entries older than RETENTION_STREAM_DAYS leave (the count cap is BILLING_EVENTS_STREAM_MAXLEN)."""
    cutoff = _cutoff(settings.RETENTION_STREAM_DAYS)
    client = get_redis()
    if cutoff is None or client is None:
        return 0
    try:
        return client.xtrim(settings.BILLING_EVENTS_STREAM, minid=f"{int(cutoff.timestamp() * 1000)}-0",
                            approximate=False)  # exact: a daily job, O(entries removed)
    except redis.RedisError as exc:
        logger.warning("stream not trimmed (Redis unavailable): %s", exc)
        return 0


def rejected_counters_delete() -> int:
    """Hourly buckets older than RETENTION_REJECTED_COUNTERS_HOURS (each also expires by itself; this
    catches buckets written with a longer retention before the setting was lowered)."""
    client = get_redis()
    if client is None:
        return 0
    oldest = f"{REJECTED_PREFIX}{timezone.now() - timedelta(hours=settings.RETENTION_REJECTED_COUNTERS_HOURS):%Y%m%d%H}"
    try:
        old = [k for k in client.scan_iter(match=f"{REJECTED_PREFIX}*", count=500)
               if (k.decode() if isinstance(k, bytes) else k) < oldest]
        return client.delete(*old) if old else 0
    except redis.RedisError as exc:
        logger.warning("rejected-request counters not pruned (Redis unavailable): %s", exc)
        return 0


def prune_retained(*, progress: Callable[[int], None] = lambda n: None) -> PruneReport:
    report = PruneReport()
    report.webhook_bodies_emptied = webhook_bodies_empty(progress=progress)
    report.webhook_events_deleted = webhook_events_delete(progress=progress)
    report.outbox_rows_deleted = outbox_delete(progress=progress)
    report.outgoing_deliveries_deleted, report.outgoing_events_deleted = outgoing_delete(progress=progress)
    report.stream_entries_trimmed = stream_trim()
    report.rejected_counters_deleted = rejected_counters_delete()
    logger.info("retention: %s", report.as_dict())
    return report
