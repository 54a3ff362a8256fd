"""Writes of the webhook pipeline: store an authentic event once, process it (retry, dead-letter),
sweep, replay. Processing goes through the adapter and `billing.apply.apply_snapshot` only."""

import hashlib
import logging
import secrets
import time
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta

import redis
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import InterfaceError, OperationalError, transaction
from django.db.models import Q
from django.utils import timezone

from billing.apply import ApplyResult, apply_snapshots
from billing.db import insert_ignoring_conflict, update_rows
from billing.providers import registry
from billing.providers.base import InboundEvent, TransientError, VerifiedEvent
from billing.redis_client import get_redis
from billing.snapshots import Cause, CauseKind

from . import queue
from .models import WebhookEvent

logger = logging.getLogger(__name__)

Status = WebhookEvent.Status
_random = secrets.SystemRandom()

# Headers never stored: credentials of the request itself (Google's OIDC bearer token, cookies).
_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})


# --- Ingestion --------------------------------------------------------------------------------

def headers_to_store(headers) -> dict:
    return {k: v for k, v in headers.items() if k.lower() not in _SECRET_HEADERS}


def event_store(*, provider: str, verified: VerifiedEvent, body: bytes, headers: dict,
                answered_with: int | None = None) -> int | None:
    """Store an authentic event once: INSERT … ON CONFLICT (provider, dedupe_key) DO NOTHING RETURNING id.

    Returns the new id, or None for a repeat delivery (also when two copies race: the unique
    constraint decides, the loser inserts nothing). A new `received` event is handed to the queue after
    commit. `answered_with`: the event was already answered synchronously (e.g. Xsolla's user
    validation); it is stored for the audit as ignored and not queued."""
    now = timezone.now()
    values = {
        "provider": provider,
        "dedupe_key": _fit_key(verified.dedupe_key),
        "event_type": (verified.event_type or "")[:128],
        "status": Status.RECEIVED if answered_with is None else Status.IGNORED,
        "body": bytes(body),
        "headers": headers,
        "payload": verified.payload if verified.payload is not None else {},
        "store_ids": [str(i) for i in verified.store_ids if i],
        "store_ids_text": " ".join(str(i) for i in verified.store_ids if i),
        "environment": (verified.environment or "")[:16],
        "occurred_at": verified.occurred_at,
        "received_at": now,
        "processed_at": None if answered_with is None else now,
        "attempts": 0,
        "next_attempt_at": None,
        "outcome": "" if answered_with is None else f"answered synchronously (HTTP {answered_with})",
        "error": "",
        "traceback": "",
    }
    event_id = insert_ignoring_conflict(WebhookEvent, values, conflict=("provider", "dedupe_key"))
    if event_id is not None and answered_with is None:
        transaction.on_commit(lambda: queue.event_stored(event_id))
    return event_id


def _fit_key(key: str) -> str:
    key = str(key)
    if len(key) <= 255:
        return key
    return f"{key[:190]}…sha256:{hashlib.sha256(key.encode()).hexdigest()}"


def rejection_record(*, provider: str, code: str) -> None:
    """Count a rejected request per provider and reason, in hourly Redis buckets (the admin index
    shows the last day). Best effort: a Redis outage only loses the count, the log line stays."""
    client = get_redis()
    if client is None:
        return
    key = f"webhooks:rejected:{timezone.now():%Y%m%d%H}"
    try:
        pipe = client.pipeline(transaction=False)
        pipe.hincrby(key, f"{provider}|{code}", 1)
        pipe.expire(key, 26 * 3600)
        pipe.execute()
    except redis.RedisError as exc:
        logger.warning("rejection counter unavailable: %s", exc)


# --- Processing -------------------------------------------------------------------------------

@dataclass
class _Attempt:
    """What one processing attempt left to do after its transaction committed."""

    event_id: int
    status: str
    retry_in: float | None = None
    after_apply: list = field(default_factory=list)
    results: list[ApplyResult] = field(default_factory=list)


def _due() -> Q:
    return Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=timezone.now())


def _claim(queryset, limit: int = 1) -> list[WebhookEvent]:
    """Lock up to `limit` due `received` events for this transaction, oldest first. SKIP LOCKED: an
    event another worker holds is left to it; the lock dies with the worker's connection, so a killed
    worker frees it at once (its transaction rolls back: nothing of the attempt remains, and it is
    processed again)."""
    return list(queryset.filter(status=Status.RECEIVED).filter(_due())
                .select_for_update(skip_locked=True).order_by("received_at", "id")[:limit])


def event_process(event_id: int) -> str:
    """Process one stored event if it is `received` and due. Returns its status afterwards, or
    "skipped" (already done, not due, or being processed by another worker)."""
    with transaction.atomic():
        claimed = _claim(WebhookEvent.objects.filter(pk=event_id))
        if not claimed:
            return "skipped"
        attempt = _attempt(claimed[0])
    return _after_commit(attempt)


# A drain commits events in groups: the group's events are parsed, then their snapshots applied in one
# batch of the write path (its reads and writes shared) and their outcomes recorded, all in one
# savepoint. If anything in it fails, the savepoint is rolled back and the group's events are processed
# one by one, each in its own savepoint, so a failure touches only its own event. One commit (a disk
# flush) and one round of after-commit work (stream, cache) for the group. A group is bounded so the
# subscription rows it locks are released quickly.
DRAIN_GROUP_SIZE = 25


def events_drain(*, max_events: int | None = None, max_seconds: float | None = None) -> tuple[int, bool]:
    """Process due `received` events, oldest first, until none is left (or a limit is reached).
    Returns (how many attempts, whether events may remain)."""
    done = 0
    deadline = time.monotonic() + max_seconds if max_seconds else None
    while True:
        if (max_events is not None and done >= max_events) or (deadline and time.monotonic() > deadline):
            return done, True
        size = DRAIN_GROUP_SIZE if max_events is None else min(DRAIN_GROUP_SIZE, max_events - done)
        with transaction.atomic():
            events = _claim(WebhookEvent.objects.all(), size)
            attempts = _attempt_group(events) if events else []
        if not attempts:
            return done, False
        for attempt in attempts:  # follow-ups may put an event back to `received`: the loop sees it
            _after_commit(attempt)
        done += len(attempts)


def _attempt_group(events: list[WebhookEvent]) -> list[_Attempt]:
    """Process claimed events together; on any failure, one by one (see DRAIN_GROUP_SIZE)."""
    failed: _ParseFailed | None = None
    if len(events) > 1:
        tried = [event.attempts for event in events]
        try:
            with transaction.atomic():
                return _attempt_together(events)
        except _ParseFailed as exc:  # that event's attempt failed: recorded as such, its store not asked again
            failed = exc
        except Exception as exc:  # the one-by-one pass finds which event failed, and records why
            logger.info("a drain group of %d events failed together (%s: %s); processing them one by one",
                        len(events), type(exc).__name__, exc)
        for event, attempts in zip(events, tried, strict=True):
            event.attempts = attempts
    return [_attempt(event, failed=failed.error if failed and failed.event is event else None) for event in events]


class _ParseFailed(Exception):
    def __init__(self, event: WebhookEvent, error: Exception):
        super().__init__(f"event {event.pk}: {type(error).__name__}: {error}")
        self.event, self.error = event, error


def _attempt_together(events: list[WebhookEvent]) -> list[_Attempt]:
    now = timezone.now()
    parsed = []
    for event in events:
        try:
            parsed.append(registry.get_adapter(event.provider).parse(_inbound(event)))
        except Exception as exc:
            raise _ParseFailed(event, exc) from exc
    results = iter(apply_snapshots([(snapshot, Cause(CauseKind.WEBHOOK, ref=str(event.pk)))
                                    for event, p in zip(events, parsed, strict=True) for snapshot in p.snapshots]))
    attempts = []
    for event, p in zip(events, parsed, strict=True):
        event.attempts += 1
        attempts.append(_record_outcome(event, p, [next(results) for _ in p.snapshots], now, save=False))
    update_rows(WebhookEvent, events, _OUTCOME_FIELDS)
    _link(events, [a.results for a in attempts])
    return attempts


def drain_run(*, max_seconds: float = 60.0) -> int:
    """The drain task's body: process until nothing is due, then release the drain flag and look once
    more (an event committed while the flag was still set did not schedule a drain of its own)."""
    try:
        done, more = events_drain(max_seconds=max_seconds)
    except BaseException:
        queue.drain_finished()  # let the next webhook (or the sweeper) schedule a fresh drain
        raise
    if more:
        queue.kick_drain(force=True)  # keep the flag: a successor drain continues
        return done
    queue.drain_finished()
    if WebhookEvent.objects.filter(status=Status.RECEIVED).filter(_due()).exists():
        queue.kick_drain()
    return done


def _attempt(event: WebhookEvent, *, failed: Exception | None = None) -> _Attempt:
    """One processing attempt, inside the transaction that holds the event's lock. `failed`: how its
    parse already failed in this attempt (in a drain group): recorded without asking the store again."""
    now = timezone.now()
    event.attempts += 1
    try:
        if failed is not None:
            raise failed  # its own traceback is kept
        adapter = registry.get_adapter(event.provider)
        with transaction.atomic():  # savepoint: a failed attempt leaves only the record of it
            parsed = adapter.parse(_inbound(event))
            cause = Cause(CauseKind.WEBHOOK, ref=str(event.pk))
            results = apply_snapshots([(snapshot, cause) for snapshot in parsed.snapshots])
            _link([event], [results])
    except (TransientError, OperationalError, InterfaceError, SoftTimeLimitExceeded) as exc:  # a retry can help
        return _retry_or_dead(event, exc, now)
    except Exception as exc:  # PermanentError, an unknown provider, a bug: needs a fix, then a replay
        _fail(event, exc, now)
        return _Attempt(event.pk, Status.FAILED)
    return _record_outcome(event, parsed, results, now)


_OUTCOME_FIELDS = ["status", "outcome", "processed_at", "next_attempt_at", "error", "traceback", "attempts"]


def _record_outcome(event: WebhookEvent, parsed, results: list[ApplyResult], now, *, save: bool = True) -> _Attempt:
    if not parsed.snapshots:
        event.status = Status.IGNORED
        event.outcome = f"ignored: {parsed.ignored_reason or 'nothing to apply'}"
    elif all(r.outcome == "stale" for r in results):
        event.status = Status.IGNORED
        event.outcome = "ignored: stale; " + _summary(parsed.snapshots, results)
    else:
        event.status = Status.PROCESSED
        event.outcome = _summary(parsed.snapshots, results)
    event.processed_at = now
    event.next_attempt_at = None
    event.error = event.traceback = ""
    if save:
        event.save(update_fields=_OUTCOME_FIELDS)
    return _Attempt(event.pk, event.status, after_apply=list(parsed.after_apply), results=results)


def _after_commit(attempt: _Attempt) -> str:
    """Work outside the transaction: follow-ups of the adapter (may call the store), retry scheduling."""
    if attempt.after_apply:
        try:
            for follow_up in attempt.after_apply:
                follow_up(attempt.results)
        except (TransientError, OperationalError, InterfaceError) as exc:
            return _follow_up_failed(attempt.event_id, exc, transient=True)
        except Exception as exc:
            return _follow_up_failed(attempt.event_id, exc, transient=False)
    if attempt.retry_in is not None:
        queue.schedule_retry(attempt.event_id, attempt.retry_in)
    return attempt.status


def _follow_up_failed(event_id: int, exc: Exception, *, transient: bool) -> str:
    """The snapshots are committed but the follow-up failed: the event goes back to `received` (retry;
    processing is idempotent) or to `failed`."""
    with transaction.atomic():
        event = WebhookEvent.objects.select_for_update().get(pk=event_id)
        now = timezone.now()
        if transient:
            attempt = _retry_or_dead(event, exc, now, prefix="follow-up failed: ")
        else:
            _fail(event, exc, now, prefix="follow-up failed: ")
            attempt = _Attempt(event_id, Status.FAILED)
    if attempt.retry_in is not None:
        queue.schedule_retry(event_id, attempt.retry_in)
    return attempt.status


def _retry_or_dead(event: WebhookEvent, exc: BaseException, now, *, prefix: str = "") -> _Attempt:
    event.error = f"{prefix}{type(exc).__name__}: {exc}"[:4000]
    event.traceback = traceback.format_exc()
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
    return _Attempt(event.pk, event.status, retry_in=retry_in)


def _fail(event: WebhookEvent, exc: BaseException, now, *, prefix: str = "") -> None:
    event.status = Status.FAILED
    event.error = f"{prefix}{type(exc).__name__}: {exc}"[:4000]
    event.traceback = traceback.format_exc()
    event.processed_at = now
    event.next_attempt_at = None
    event.outcome = "failed: needs a fix, then a replay"
    event.save(update_fields=["status", "error", "traceback", "processed_at", "next_attempt_at", "outcome",
                              "attempts"])
    logger.error("webhook event %s failed: %s", event.pk, event.error)


def backoff_seconds(attempt: int) -> float:
    """Exponential backoff with jitter ("equal jitter": half fixed, half random), capped."""
    ceiling = min(settings.WEBHOOK_RETRY_MAX_SECONDS, settings.WEBHOOK_RETRY_BASE_SECONDS * 2 ** (attempt - 1))
    return ceiling / 2 + _random.uniform(0, ceiling / 2)


def _inbound(event: WebhookEvent) -> InboundEvent:
    return InboundEvent(id=event.pk, provider=event.provider, dedupe_key=event.dedupe_key,
                        event_type=event.event_type, payload=event.payload, body=bytes(event.body),
                        headers=event.headers or {}, received_at=event.received_at, occurred_at=event.occurred_at)


def _link(events: list[WebhookEvent], results: list[list[ApplyResult]]) -> None:
    """Each event to the subscriptions it touched (one INSERT for all)."""
    through = WebhookEvent.subscriptions.through
    links = {(event.pk, r.subscription_id) for event, rs in zip(events, results, strict=True) for r in rs}
    if links:
        through.objects.bulk_create([through(webhookevent_id=e, subscription_id=s) for e, s in sorted(links)],
                                    ignore_conflicts=True)


def _summary(snapshots, results: list[ApplyResult]) -> str:
    parts = []
    for snapshot, r in zip(snapshots, results, strict=True):
        name = f"{snapshot.provider}:{snapshot.provider_subscription_id}"
        if r.outcome == "stale":
            parts.append(f"{name} stale: {snapshot.status} ignored, kept {r.old_status}")
        elif r.outcome == "created":
            parts.append(f"{name} created: {r.new_status}")
        elif r.outcome == "updated":
            parts.append(f"{name} updated: {r.old_status} → {r.new_status}")
        else:
            parts.append(f"{name} unchanged: {r.new_status}")
        if r.transactions_added:
            parts[-1] += f" (+{r.transactions_added} transactions)"
    return "; ".join(parts)


# --- Sweeper and replay -----------------------------------------------------------------------

def events_stuck():
    """Events the queue lost: still `received` a while after arrival with no retry planned, or whose
    retry is due."""
    now = timezone.now()
    cutoff = now - timedelta(seconds=settings.WEBHOOK_SWEEP_AFTER_SECONDS)
    return WebhookEvent.objects.filter(status=Status.RECEIVED).filter(
        Q(next_attempt_at__isnull=True, received_at__lte=cutoff) | Q(next_attempt_at__lte=now))


def events_sweep() -> int:
    """Beat: if any event is stuck, schedule a drain (it takes every due event). Returns how many."""
    count = events_stuck().count()
    if count:
        logger.info("sweeper: %d webhook events waiting; scheduling a drain", count)
        queue.kick_drain(force=True)
    return count


def events_reset_for_replay(ids: Iterable[int]) -> int:
    """Put events back to `received` with their attempts reset (a fix was deployed). Returns how many."""
    return WebhookEvent.objects.filter(pk__in=list(ids)).update(
        status=Status.RECEIVED, attempts=0, next_attempt_at=None, processed_at=None, error="", traceback="",
        outcome="replay requested")


def events_replay(ids: Iterable[int]) -> int:
    """Admin action: reset the events and queue them (processed by the workers)."""
    count = events_reset_for_replay(ids)
    if count:
        transaction.on_commit(queue.kick_drain)
    return count
