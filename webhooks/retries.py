"""Retries: the backoff policy, what a failed attempt leaves on the event (a planned retry or `dead`
after a transient failure, `failed` after a permanent one), and how a retry is scheduled."""

import logging
import secrets
import traceback
from datetime import timedelta

from django.conf import settings

from . import queue
from .models import WebhookEvent

logger = logging.getLogger(__name__)

Status = WebhookEvent.Status
_random = secrets.SystemRandom()


def backoff_seconds(attempt: int) -> float:
    """Exponential backoff with jitter ("equal jitter": half fixed, half random), capped."""
    ceiling = min(settings.WEBHOOK_RETRY_MAX_SECONDS, settings.WEBHOOK_RETRY_BASE_SECONDS * 2 ** (attempt - 1))
    return ceiling / 2 + _random.uniform(0, ceiling / 2)


def event_retry_or_dead(event: WebhookEvent, exc: BaseException, now, *, prefix: str = "") -> float | None:
    """A transient failure (called while handling it: its traceback is kept): back to `received` with
    a retry planned, or `dead` once the attempts are used up. Returns the retry's delay (None: dead)."""
    _record_error(event, exc, prefix)
    if event.attempts >= settings.WEBHOOK_MAX_ATTEMPTS:
        event.status = Status.DEAD
        event.next_attempt_at = None
        event.processed_at = now
        event.outcome = f"dead after {event.attempts} attempts"
        retry_in = None
        logger.error("webhook event %s is dead after %s attempts: %s", event.pk, event.attempts, event.error)
    else:
        event.status = Status.RECEIVED
        retry_in = backoff_seconds(event.attempts)
        event.next_attempt_at = now + timedelta(seconds=retry_in)
        event.outcome = f"attempt {event.attempts} of {settings.WEBHOOK_MAX_ATTEMPTS} failed; retry in {retry_in:.1f}s"
        logger.warning("webhook event %s: %s; retry in %.1fs", event.pk, event.error, retry_in)
    event.save(update_fields=["status", "error", "traceback", "next_attempt_at", "processed_at", "outcome",
                              "attempts"])
    return retry_in


def event_fail(event: WebhookEvent, exc: BaseException, now, *, prefix: str = "") -> None:
    """A permanent failure (called while handling it): `failed`, waiting for a fix and a replay."""
    event.status = Status.FAILED
    _record_error(event, exc, prefix)
    event.processed_at = now
    event.next_attempt_at = None
    event.outcome = "failed: needs a fix, then a replay"
    event.save(update_fields=["status", "error", "traceback", "processed_at", "next_attempt_at", "outcome",
                              "attempts"])
    logger.error("webhook event %s failed: %s", event.pk, event.error)


def _record_error(event: WebhookEvent, exc: BaseException, prefix: str) -> None:
    event.error = f"{prefix}{type(exc).__name__}: {exc}"[:4000]
    event.traceback = traceback.format_exc()  # the exception being handled


def retry_schedule(event_id: int, delay_seconds: float) -> None:
    """A retry due in `delay_seconds`, after the attempt committed. Short delays get a countdown task;
    long ones (beyond what the broker holds reliably: Redis redelivers unacked ETA tasks after its
    visibility timeout) are left to the sweeper, which enqueues every due retry. In-process mode: the
    sweeper only."""
    if queue.inline():
        return
    visibility = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("visibility_timeout", 3600)
    if delay_seconds > visibility / 2:
        return
    queue.event_publish(event_id, countdown=delay_seconds)
