"""Retries: the backoff policy, what a failed attempt leaves on the event (a planned retry or `dead`
after failures a retry may fix, `failed` after a permanent one), the alert a dead event raises, and
how a retry is scheduled.

The horizon: an event is retried until BOTH it has had WEBHOOK_MAX_ATTEMPTS attempts AND
WEBHOOK_RETRY_HORIZON_HOURS have passed since its first failure (`failing_since`), longer than any
store keeps retrying a delivery itself; only then is it dead. The backoff starts within seconds and
grows to WEBHOOK_RETRY_MAX_SECONDS, so a store that comes back is seen within that cap."""

import logging
import secrets
import traceback
from datetime import timedelta
from functools import partial

from django.conf import settings
from django.core.mail import mail_admins
from django.db import transaction
from django.db.models import Q
from django.urls import reverse

from . import queue
from .models import WebhookEvent

logger = logging.getLogger(__name__)

Status = WebhookEvent.Status
_random = secrets.SystemRandom()
# At most one alert mail per this interval: a mass failure is one mail (with the count), not thousands.
ALERT_MAIL_INTERVAL = timedelta(hours=1)


def backoff_seconds(attempt: int) -> float:
    """Exponential backoff with jitter ("equal jitter": half fixed, half random), capped."""
    ceiling = min(settings.WEBHOOK_RETRY_MAX_SECONDS, settings.WEBHOOK_RETRY_BASE_SECONDS * 2 ** (attempt - 1))
    return ceiling / 2 + _random.uniform(0, ceiling / 2)


def horizon() -> timedelta:
    return timedelta(hours=settings.WEBHOOK_RETRY_HORIZON_HOURS)


def event_retry_or_dead(event: WebhookEvent, exc: BaseException, now, *, prefix: str = "") -> float | None:
    """A failure a retry may fix (called while handling it: its traceback is kept): back to `received`
    with a retry planned, or `dead` once both the attempts and the horizon are used up. Returns the
    retry's delay (None: dead)."""
    _record_error(event, exc, prefix)
    if event.failing_since is None or event.attempts <= 1:  # the first failure (also of a replay)
        event.failing_since = now
    give_up_at = event.failing_since + horizon()
    if event.attempts >= settings.WEBHOOK_MAX_ATTEMPTS and now >= give_up_at:
        _dead(event, now)
        retry_in = None
    else:
        event.status = Status.RECEIVED
        retry_in = backoff_seconds(event.attempts)
        remaining = (give_up_at - now).total_seconds()
        if 0 < remaining < retry_in:  # the last attempt falls on the horizon, not up to a cap later
            retry_in = remaining
        event.next_attempt_at = now + timedelta(seconds=retry_in)
        event.outcome = (f"attempt {event.attempts} failed; retrying until {give_up_at:%Y-%m-%d %H:%M} UTC "
                         f"(and at least {settings.WEBHOOK_MAX_ATTEMPTS} attempts); retry in {retry_in:.1f}s")
        logger.warning("webhook event %s: %s; retry in %.1fs", event.pk, event.error, retry_in)
    event.save(update_fields=["status", "error", "traceback", "next_attempt_at", "processed_at", "outcome",
                              "attempts", "failing_since"])
    return retry_in


def _dead(event: WebhookEvent, now) -> None:
    event.status = Status.DEAD
    event.next_attempt_at = None
    event.processed_at = now
    hours = (now - event.failing_since).total_seconds() / 3600
    event.outcome = f"dead after {event.attempts} attempts over {hours:.1f} hours"
    logger.error("webhook event %s (%s %s) is dead after %s attempts over %.1f hours: %s", event.pk,
                 event.provider, event.event_type, event.attempts, hours, event.error)
    transaction.on_commit(partial(_mail_dead, event.pk, now))


def _mail_dead(event_id: int, now) -> None:
    """The alert (after the commit, never failing the attempt): a mail to ADMINS, unless another dead
    event was mailed within ALERT_MAIL_INTERVAL (the admin's Needs attention box lists them all)."""
    if not settings.ADMINS:
        return
    earlier = Q(processed_at__lt=now) | Q(processed_at=now, pk__lt=event_id)  # one drain group shares `now`
    if WebhookEvent.objects.filter(earlier, status=Status.DEAD, processed_at__gte=now - ALERT_MAIL_INTERVAL).exists():
        return
    event = WebhookEvent.objects.filter(pk=event_id).first()
    if event is None:
        return
    dead = WebhookEvent.objects.filter(status=Status.DEAD).count()
    path = reverse("admin:webhooks_webhookevent_changelist") + "?status__exact=dead"
    body = (f"Webhook event {event.pk} ({event.provider} {event.event_type}, store id {event.dedupe_key}) is dead: "
            f"{event.outcome}.\n\nLast error: {event.error}\n\n{dead} dead event(s) in all, listed at {path} "
            "(the admin's Needs attention box). Fix the cause, then replay them from there.\n")
    try:
        mail_admins(f"Webhook event {event.pk} ({event.provider}) is dead", body)
    except Exception:  # the alert must not undo the attempt; the log and the admin box still show it
        logger.exception("could not mail ADMINS about dead webhook event %s", event_id)


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
