"""Celery tasks: thin wrappers over the pipeline's modules (acks_late, JSON, time limits: see settings)."""

import logging
from datetime import timedelta

from celery import shared_task
from django.utils import timezone

from billing.providers import registry

from . import processing, recovery, sweep

logger = logging.getLogger(__name__)

APPLE_LOOKBACK = timedelta(days=2)


@shared_task(name="webhooks.tasks.drain_events", acks_late=True, ignore_result=True)
def drain_events() -> int:
    """Process every due `received` event (published by queue.kick_drain after a webhook is stored)."""
    return processing.drain_run()


@shared_task(name="webhooks.tasks.process_event", acks_late=True, ignore_result=True)
def process_event(event_id: int) -> str:
    """One event whose retry is due."""
    return processing.event_process(event_id)


@shared_task(name="webhooks.tasks.sweep_events", acks_late=True, ignore_result=True)
def sweep_events() -> int:
    """Beat: events still `received` (lost task, broker down) and due retries get a drain."""
    return sweep.events_sweep()


@shared_task(name="webhooks.tasks.recover_apple_notifications", acks_late=True, ignore_result=True)
def recover_apple_notifications() -> str:
    """Beat: Apple retries a failed delivery only 5 times in production (never in the sandbox): ingest
    what the App Store says it failed to deliver in the last two days."""
    if registry.get_adapter("apple").missing_settings(for_api=True):
        return "skipped: the App Store Server API is not configured"
    now = timezone.now()
    counts = recovery.missed_notifications_recover(provider="apple", since=now - APPLE_LOOKBACK, until=now,
                                                   only_failures=True, recovered_by="apple_recover")
    result = recovery.summary(counts)
    logger.info("apple recover: %s", result)
    return result
