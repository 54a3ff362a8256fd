"""The fan-out: each new outbox row becomes an `Event` here and one `Delivery` per active endpoint
that wants it (and existed when the change happened: a new endpoint is not sent the past).

Why not a plain "last id seen" cursor: outbox ids are taken at INSERT, rows become visible at COMMIT,
so a row with a lower id can appear after a higher one was read. The cursor (`FanoutCursor`) only
moves past rows older than SETTLE; the rows after it are read every run and those already copied
(an `Event` with their id) are skipped. A write transaction lasting longer than SETTLE would be missed;
the task time limit (CELERY_TASK_TIME_LIMIT, 300 s) keeps them far shorter.

Runs under a lock on the cursor row, so two runs at once never copy a row twice."""

from datetime import timedelta

from django.db import transaction
from django.db.models import Max, Min
from django.utils import timezone

from billing.models import Outbox

from .models import Delivery, Endpoint, Event, FanoutCursor

SETTLE = timedelta(minutes=10)
BATCH = 500


def events_fan_out(*, limit: int = BATCH) -> int:
    """Copy the outbox rows not seen yet and create their deliveries (due at once). Returns how many
    deliveries were created. Nothing is sent here: dispatch.py enqueues one task per delivery."""
    with transaction.atomic():
        cursor = _cursor_locked()
        if cursor is None:
            return 0  # no endpoint yet: nothing to copy, nothing to remember
        endpoints = list(Endpoint.objects.filter(active=True))
        rows = list(Outbox.objects.filter(id__gt=cursor.outbox_id)
                    .exclude(id__in=Event.objects.filter(outbox_id__gt=cursor.outbox_id).values("outbox_id"))
                    .order_by("id").values("id", "event_id", "payload", "created_at")[:limit])
        now = timezone.now()
        events = Event.objects.bulk_create([
            Event(outbox_id=r["id"], event_id=r["event_id"], payload=r["payload"], outbox_created_at=r["created_at"])
            for r in rows])
        deliveries = Delivery.objects.bulk_create([
            Delivery(endpoint=endpoint, event=event, next_attempt_at=now)
            for event in events for endpoint in endpoints
            if endpoint.created_at <= event.outbox_created_at and endpoint.wants(event.payload)])
        # A full batch leaves rows unread, all above the last one read: the cursor stays below them.
        _cursor_advance(cursor, now, below=rows[-1]["id"] if len(rows) == limit else None)
        return len(deliveries)


def _cursor_locked() -> FanoutCursor | None:
    cursor = FanoutCursor.objects.select_for_update().filter(pk=1).first()
    if cursor is not None:
        return cursor
    first = Endpoint.objects.aggregate(m=Min("created_at"))["m"]
    if first is None:
        return None
    # The first run: start where the first endpoint started (rows before it concern no endpoint).
    floor = Outbox.objects.filter(created_at__lt=first - SETTLE).aggregate(m=Max("id"))["m"] or 0
    FanoutCursor.objects.get_or_create(pk=1, defaults={"outbox_id": floor})
    return FanoutCursor.objects.select_for_update().get(pk=1)


def _cursor_advance(cursor: FanoutCursor, now, *, below: int | None) -> None:
    """Past every copied row older than SETTLE (a row committed late is younger than that)."""
    newest = (Event.objects.filter(outbox_id__gt=cursor.outbox_id, outbox_created_at__lt=now - SETTLE)
              .aggregate(m=Max("outbox_id"))["m"])
    if newest is None:
        return
    if below is not None:
        newest = min(newest, below)
    if newest > cursor.outbox_id:
        cursor.outbox_id = newest
        cursor.save(update_fields=["outbox_id", "updated_at"])
