"""What the beat job does: fan out new status changes, then enqueue ONE task per due delivery (a slow
or dead endpoint holds up only its own task, never the stream, which billing publishes on its own,
nor another endpoint). Also the admin's resend."""

import logging

from celery import current_app
from django.db import transaction
from django.utils import timezone

from .fanout import events_fan_out
from .models import Delivery
from .sending import LEASE, delivery_send

logger = logging.getLogger(__name__)

SEND_TASK = "outgoing.tasks.send_delivery"
BATCH = 200


def deliveries_dispatch(*, limit: int = BATCH) -> int:
    """Fan out, then enqueue the due deliveries of active endpoints. Returns how many were enqueued."""
    events_fan_out()
    return deliveries_enqueue_due(limit=limit)


def deliveries_enqueue_due(*, limit: int = BATCH, ids: list[int] | None = None) -> int:
    """Each due delivery is leased (not due again for LEASE) and gets one send task. Tasks are
    published after the lease is committed; one lost by the broker is re-enqueued after the lease."""
    now = timezone.now()
    with transaction.atomic():
        due = (Delivery.objects.select_for_update(skip_locked=True)
               .filter(status=Delivery.Status.PENDING, next_attempt_at__lte=now, endpoint__active=True))
        if ids is not None:
            due = due.filter(pk__in=ids)
        batch = list(due.order_by("next_attempt_at").values_list("pk", "attempts")[:limit])
        Delivery.objects.filter(pk__in=[pk for pk, _ in batch]).update(next_attempt_at=now + LEASE)
    for pk, attempts in batch:
        try:
            if _eager():  # in-process mode (no broker): send here, one after the other (bounded: timeouts)
                delivery_send(pk, attempts)
            else:
                current_app.send_task(SEND_TASK, args=(pk, attempts))
        except Exception:  # a broker failure: the lease runs out and the next run enqueues it again
            logger.exception("could not enqueue outgoing delivery %s", pk)
    return len(batch)


def deliveries_resend(ids: list[int]) -> int:
    """Staff's resend: due again at once, whatever its status (a delivered event is sent again)."""
    count = Delivery.objects.filter(pk__in=ids).update(status=Delivery.Status.PENDING, next_attempt_at=timezone.now(),
                                                       failing_since=None)
    deliveries_enqueue_due(ids=ids)
    return count


def _eager() -> bool:
    return bool(current_app.conf.task_always_eager)

