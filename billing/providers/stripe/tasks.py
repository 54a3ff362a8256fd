"""Celery tasks of the Stripe package: thin. The dj-stripe mirror has tasks of its own, on the `slow`
queue (`worker-slow`), so that dj-stripe failing (a Stripe outage, a shape it does not know) or being
slow (it re-reads each object from Stripe: ~20-50 ms per event) never holds back the unified state nor
takes time from the webhooks worker.

Queueing it is batched, as the webhook drain is (webhooks/queue.py): processing an event only appends
the event's body to a Redis list and sets a flag with SET NX, in one round trip; only when the flag was
not set is one `mirror_events` task published, which mirrors what the list holds, MIRROR_BATCH at a
time, until it is empty. Without Redis each event gets its own `mirror_event` task, as before. The list
is a copy's queue: a worker killed mid-batch loses at most that batch's mirror (dj-stripe's
`djstripe_sync_models` or `stripe_backfill --mirror` fills it in), never anything of the unified state."""

import json
import logging
import time

import redis
from celery import shared_task

from billing.providers.base import TransientError
from billing.redis_client import get_redis

from .services import event_mirror

logger = logging.getLogger(__name__)

MIRROR_PENDING = "stripe:mirror:pending"  # Redis list of event bodies (JSON) waiting for the mirror
MIRROR_FLAG = "stripe:mirror:scheduled"  # set while a mirror_events task is queued or running
# Longer than a mirror_events run (MIRROR_RUN_SECONDS) plus its wait in the `slow` queue behind a slow
# job; if a task is lost, the next event after the flag expires schedules a new one.
MIRROR_FLAG_TTL_SECONDS = 900
MIRROR_BATCH = 100  # events popped per round trip
MIRROR_RUN_SECONDS = 60.0  # then the task hands over to a successor (task time limits: 240 s soft)


def mirror_soon(event: dict) -> None:
    """Have dj-stripe mirror this (verified) event, batched. Raises only when nothing could be queued."""
    client = get_redis()
    if client is not None:
        try:
            pipe = client.pipeline(transaction=False)
            pipe.rpush(MIRROR_PENDING, json.dumps(event, separators=(",", ":")))
            pipe.set(MIRROR_FLAG, "1", nx=True, ex=MIRROR_FLAG_TTL_SECONDS)
            _, schedule = pipe.execute()
        except redis.RedisError as exc:
            logger.warning("the dj-stripe mirror's list is unavailable (%s); one task for %s", exc, event.get("id"))
        else:
            if schedule:
                _publish_drain(client)
            return
    mirror_event.delay(event)


def _publish_drain(client) -> None:
    try:
        mirror_events.delay()
    except Exception:
        client.delete(MIRROR_FLAG)  # the next event tries again
        raise


@shared_task(bind=True, max_retries=5, acks_late=True, ignore_result=True)
def mirror_event(self, event: dict) -> None:
    # Takes the verified event body (Stripe keeps events only 30 days: a replay could not re-fetch it).
    try:
        event_mirror(event=event)
    except TransientError as exc:
        if self.request.retries < self.max_retries:
            raise self.retry(exc=exc, countdown=30 * 2 ** self.request.retries) from exc
        logger.exception("dj-stripe mirror of %s failed", event.get("id"))
    except Exception:
        logger.exception("dj-stripe mirror of %s failed", event.get("id"))


@shared_task(acks_late=True, ignore_result=True)
def mirror_events() -> int:
    """Mirror the events waiting in MIRROR_PENDING, oldest first; one that fails for a reason a retry may
    get past gets a `mirror_event` task of its own (retried with backoff). Returns how many were mirrored."""
    client = get_redis()
    if client is None:
        return 0
    done, deadline = 0, time.monotonic() + MIRROR_RUN_SECONDS
    while True:
        if time.monotonic() > deadline:
            mirror_events.delay()  # a successor continues; the flag stays set
            return done
        bodies = client.lpop(MIRROR_PENDING, MIRROR_BATCH)
        if not bodies:
            client.delete(MIRROR_FLAG)
            # An event appended between the empty pop and the delete saw the flag set: schedule for it.
            if client.llen(MIRROR_PENDING) and client.set(MIRROR_FLAG, "1", nx=True, ex=MIRROR_FLAG_TTL_SECONDS):
                _publish_drain(client)
            return done
        for body in bodies:
            event = json.loads(body)
            try:
                event_mirror(event=event)
            except TransientError:
                mirror_event.apply_async((event,), countdown=30)
            except Exception:
                logger.exception("dj-stripe mirror of %s failed", event.get("id"))
            done += 1
