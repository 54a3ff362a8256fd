"""Replay: events put back to `received` with their attempts reset (after a fix was deployed), then
processed again: queued (the admin action) or here and now (`manage.py replay_events`)."""

from collections.abc import Iterable

from django.db import transaction

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


def event_replay_now(event_id: int) -> str:
    """The command: reset one event and process it here. Returns its status afterwards."""
    events_reset_for_replay([event_id])
    return processing.event_process(event_id)
