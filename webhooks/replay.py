"""Replay: events put back to `received` with their attempts reset (after a fix was deployed), then
processed again: queued (the admin action) or here and now (`manage.py replay_events`)."""

from collections.abc import Iterable

from django.db import transaction

from audit.records import record

from . import processing
from .models import WebhookEvent


def events_reset_for_replay(ids: Iterable[int]) -> int:
    """Put events back to `received` with their attempts reset. Returns how many."""
    return WebhookEvent.objects.filter(pk__in=list(ids)).update(
        status=WebhookEvent.Status.RECEIVED, attempts=0, next_attempt_at=None, processed_at=None, error="",
        traceback="", outcome="replay requested")


def events_replay(ids: Iterable[int]) -> int:
    """Admin action: reset the events and have them drained after the commit (by the workers)."""
    count = events_reset_for_replay(ids)
    if count:
        transaction.on_commit(processing.events_drain_soon)
    return count


def event_replay_by_staff(*, event: WebhookEvent, reason: str, staff_user) -> None:
    """The admin action, for one event: reset and queue it, with who and why in the audit log (same
    transaction). The subscription it touched, if any, is named on the entry (the customer's timeline)."""
    reason = (reason or "").strip()
    if not reason:
        raise ValueError("A reason is required: say why (it is kept in the audit log).")
    subscription = next(iter(event.subscriptions.all()), None)
    with transaction.atomic():
        events_replay([event.pk])
        record(actor=staff_user, action="replay", reason=reason, target=f"webhooks.webhookevent:{event.pk}",
               subscriber=subscription.subscriber if subscription is not None else None,
               subscription_id=subscription.pk if subscription is not None else None,
               details={"event_id": event.pk, "provider": event.provider, "event_type": event.event_type,
                        "status_before": event.status})


def event_replay_now(event_id: int) -> str:
    """The command: reset one event and process it here. Returns its status afterwards."""
    events_reset_for_replay([event_id])
    return processing.event_process(event_id)
