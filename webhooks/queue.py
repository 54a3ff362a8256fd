"""Publishing to Celery, cheaply: the drain task behind a Redis flag, and one event's retry task.

A Celery `.delay()` per webhook costs more CPU than the rest of the request (~1.1 ms measured), so the
answer path does not publish one task per event. After the INSERT commits it sets a Redis flag with
SET NX; only when the flag was not already set does it publish one `drain_events` task. The drain
task claims due `received` events from the database (FOR UPDATE SKIP LOCKED) until none are left,
clears the flag, then looks once more (an event committed while the flag was still set would
otherwise wait for the sweeper). The database is the queue: a lost task or a broker outage loses
nothing, the sweeper (beat) kicks a drain for any event still `received` after a few minutes, at once
for one whose publish failed (processing.py marks it due), and a worker kicks one whenever it
(re)connects to the broker (config/celery.py).

A broker that is down costs one short connection attempt (BROKER_CONNECT_TIMEOUT_SECONDS, no retry)
per process, then none while redis_client's circuit breaker skips that server: the webhook is stored
and answered at its usual speed.

This module only publishes (tasks by their registered names) and imports nothing of the pipeline.
Without a broker (`make run`: tasks run in-process) nothing is published: processing.py processes
right after the commit instead (`event_process_soon`, `events_drain_soon`), and retries.py leaves
retries to the sweeper.
"""

import logging

import redis
from celery import current_app

from billing.redis_client import circuit_open, get_redis, report_failure

logger = logging.getLogger(__name__)

DRAIN_TASK = "webhooks.tasks.drain_events"
PROCESS_TASK = "webhooks.tasks.process_event"

DRAIN_FLAG = "webhooks:drain-scheduled"
# Long enough to cover the time between publishing the drain and a worker taking it; short enough
# that a lost drain task only delays processing until the next webhook (or the sweeper).
DRAIN_FLAG_TTL_SECONDS = 60


def inline() -> bool:
    """Tasks run in-process (no broker): the callers process right away instead of publishing."""
    return bool(current_app.conf.task_always_eager)


def kick_drain(*, force: bool = False) -> bool:
    """Make sure a drain task is scheduled (a broker is configured). Returns True if one was published
    or is already scheduled, False if the broker could not be reached (the sweeper will do it)."""
    client = get_redis()
    if client is not None and not force:
        try:
            if not client.set(DRAIN_FLAG, "1", nx=True, ex=DRAIN_FLAG_TTL_SECONDS):
                return True  # a drain is already scheduled or running: it will see this event
        except redis.RedisError as exc:
            logger.warning("drain flag unavailable (%s); publishing a drain anyway", exc)
    return _publish(DRAIN_TASK)


def drain_finished() -> None:
    """Called by the drain task when it found nothing more to do: let the next event schedule a drain."""
    client = get_redis()
    if client is None:
        return
    try:
        client.delete(DRAIN_FLAG)
    except redis.RedisError as exc:
        logger.warning("could not clear the drain flag (%s); it expires in %ss", exc, DRAIN_FLAG_TTL_SECONDS)


def event_publish(event_id: int, *, countdown: float) -> bool:
    """Publish `process_event(event_id)` to run in `countdown` seconds (retries.py decides when)."""
    return _publish(PROCESS_TASK, args=(event_id,), countdown=countdown)


def _publish(task_name: str, *, args=(), countdown: float | None = None) -> bool:
    """Publish without Celery's own publish retries, with one bounded connection attempt, and not at
    all while the broker's server is being skipped after a failure: when the broker is down the
    webhook is still answered quickly (it is stored; the sweeper enqueues it)."""
    app = current_app
    broker_url = app.conf.broker_url or ""
    if circuit_open(broker_url):
        logger.debug("broker skipped after a recent failure, %s not published; the sweeper will enqueue it",
                     task_name)
        return _not_published(task_name)
    try:
        with app.producer_or_acquire() as producer:
            producer.connection.ensure_connection(max_retries=0)  # one attempt, bounded by the timeouts
            app.send_task(task_name, args=args, countdown=countdown, producer=producer, retry=False)
        return True
    except Exception as exc:  # kombu/redis/socket errors: the broker is unavailable
        logger.warning("broker unavailable, %s not published (%s); the sweeper will enqueue it", task_name, exc)
        report_failure(url=broker_url)
        return _not_published(task_name)


def _not_published(task_name: str) -> bool:
    if task_name == DRAIN_TASK:
        drain_finished()
    return False
