"""The sweeper (beat, every minute): events the queue lost (a lost task, a broker outage) and retries
that are due get a drain.

An event whose publish failed (the broker was down when it arrived) is marked due at once
(processing.event_process_soon sets next_attempt_at), so the first sweep after the broker is back
takes it: within a minute, not WEBHOOK_SWEEP_AFTER_SECONDS. Only events whose publish seemed to
succeed wait that long (a task the broker lost after accepting it)."""

import logging
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from . import processing
from .models import WebhookEvent

logger = logging.getLogger(__name__)


def events_stuck():
    """Events the queue lost: still `received` a while after arrival with no retry planned, or whose
    retry is due."""
    now = timezone.now()
    cutoff = now - timedelta(seconds=settings.WEBHOOK_SWEEP_AFTER_SECONDS)
    return WebhookEvent.objects.filter(status=WebhookEvent.Status.RECEIVED).filter(
        Q(next_attempt_at__isnull=True, received_at__lte=cutoff) | Q(next_attempt_at__lte=now))


def events_sweep() -> int:
    """Beat: if any event is stuck, schedule a drain (it takes every due event). Returns how many."""
    count = events_stuck().count()
    if count:
        logger.info("sweeper: %d webhook events waiting; scheduling a drain", count)
        processing.events_drain_soon(force=True)
    return count
