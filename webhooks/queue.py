"""Enqueueing stored events cheaply.

A Celery `.delay()` per webhook costs more CPU than the rest of the request (~1.1 ms measured), so the
answer path does not publish one task per event. After the INSERT commits it sets a Redis flag with
SET NX; only when the flag was not already set does it publish one `drain_events` task. The drain
task claims due `received` events from the database (FOR UPDATE SKIP LOCKED) until none are left,
clears the flag, then looks once more (an event committed while the flag was still set would
otherwise wait for the sweeper). The database is the queue: a lost task or a broker outage loses
nothing, the sweeper (beat) kicks a drain for any event still `received` after a few minutes.

Without a broker (`make run`: tasks run in-process) events are processed right after their commit.
"""

import logging

import redis
from celery import current_app
from django.conf import settings

from billing.redis_client import get_redis

logger = logging.getLogger(__name__)

DRAIN_FLAG = "webhooks:drain-scheduled"
# Long enough to cover the time between publishing the drain and a worker taking it; short enough
# that a lost drain task only delays processing until the next webhook (or the sweeper).
DRAIN_FLAG_TTL_SECONDS = 60


def inline() -> bool:
    """Tasks run in-process (no broker): process right away instead of queueing."""
    return bool(current_app.conf.task_always_eager)


def event_stored(event_id: int) -> None:
    """on_commit hook of the webhook view: have the new event processed. Never raises (the event is
    committed; the sweeper is the safety net)."""
    try:
        if inline():
            from .services import event_process

            event_process(event_id)
        else:
            kick_drain()
    except Exception:  # the answer must stay 2xx: the event is stored and the sweeper will find it
        logger.exception("webhook event %s stored but not queued; the sweeper will pick it up", event_id)


def kick_drain(*, force: bool = False) -> bool:
    """Make sure a drain task is scheduled. Returns True if one was published (or run inline)."""
    if inline():
        from .services import events_drain

        events_drain()
        return True
    client = get_redis()
    if client is not None and not force:
        try:
            if not client.set(DRAIN_FLAG, "1", nx=True, ex=DRAIN_FLAG_TTL_SECONDS):
                return False  # a drain is already scheduled or running: it will see this event
        except redis.RedisError as exc:
            logger.warning("drain flag unavailable (%s); publishing a drain anyway", exc)
    return _publish("webhooks.tasks.drain_events")


def drain_finished() -> None:
    """Called by the drain task when it found nothing more to do: let the next event schedule a drain."""
    client = get_redis()
    if client is None:
        return
    try:
        client.delete(DRAIN_FLAG)
    except redis.RedisError as exc:
        logger.warning("could not clear the drain flag (%s); it expires in %ss", exc, DRAIN_FLAG_TTL_SECONDS)


def schedule_retry(event_id: int, delay_seconds: float) -> None:
    """A retry due in `delay_seconds`. Short delays get a countdown task; long ones (beyond what the
    broker holds reliably: Redis redelivers unacked ETA tasks after its visibility timeout) are left to
    the sweeper, which enqueues every due retry. In-process mode: the sweeper only."""
    if inline():
        return
    visibility = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("visibility_timeout", 3600)
    if delay_seconds > visibility / 2:
        return
    _publish("webhooks.tasks.process_event", args=(event_id,), countdown=delay_seconds)


def _publish(task_name: str, *, args=(), countdown: float | None = None) -> bool:
    """Publish without Celery's own publish retries and with a bounded connection attempt: when the
    broker is down the webhook is still answered quickly (it is stored; the sweeper enqueues it)."""
    app = current_app
    try:
        with app.producer_or_acquire() as producer:
            producer.connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0.2, timeout=2)
            app.send_task(task_name, args=args, countdown=countdown, producer=producer, retry=False)
        return True
    except Exception as exc:  # kombu/redis/socket errors: the broker is unavailable
        logger.warning("broker unavailable, %s not published (%s); the sweeper will enqueue it", task_name, exc)
        if task_name.endswith("drain_events"):
            drain_finished()
        return False
