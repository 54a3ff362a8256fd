"""Processing stored events: claim (FOR UPDATE SKIP LOCKED), parse through the adapter, apply through
`billing.apply.apply_snapshots`, record the outcome (the summary of what the event did), then the
adapter's follow-ups after the commit. The drain takes due events in groups; `event_process` takes one
(a retry, a replay). Failed attempts are recorded by retries.py.

Whether an event is processed here and now or by a worker is decided here (`event_process_soon`,
`events_drain_soon`): in-process when tasks run eagerly (no broker), else queue.py publishes."""

import logging
import time
from dataclasses import dataclass, field

from celery.exceptions import SoftTimeLimitExceeded
from django.db import InterfaceError, OperationalError, transaction
from django.db.models import Q
from django.utils import timezone

from billing.apply import ApplyResult, apply_snapshots
from billing.db import update_rows
from billing.providers import registry
from billing.providers.base import InboundEvent, Undecodable, reads_shared_in_group, retry_may_help
from billing.snapshots import Cause, CauseKind
from operations import metrics
from operations.log_context import log_context

from . import bodies, queue, retries
from .models import WebhookEvent

logger = logging.getLogger(__name__)

Status = WebhookEvent.Status


@dataclass
class _Attempt:
    """What one processing attempt left to do after its transaction committed."""

    event_id: int
    status: str
    retry_in: float | None = None
    after_apply: list = field(default_factory=list)
    results: list[ApplyResult] = field(default_factory=list)
    failed: InboundEvent | None = None  # a failed attempt whose adapter may still have a deadline to meet
    error: BaseException | None = None  # why it failed
    event: WebhookEvent | None = None  # for the metrics: provider, type, received_at


# Failures a later attempt may get past: the store's (TransientError), our configuration's (a key the
# store refuses, a missing setting: an operator fixes it) and the database's or the worker's time limit.
def _retryable(exc: BaseException) -> bool:
    return retry_may_help(exc) or isinstance(exc, OperationalError | InterfaceError | SoftTimeLimitExceeded)


# --- Scheduling: here and now, or a worker --------------------------------------------------------

def event_process_soon(event_id: int) -> None:
    """on_commit hook of ingestion: have the new event processed (in-process: right here; else a
    drain). Never raises (the event is committed; the sweeper is the safety net)."""
    try:
        if queue.inline():
            with log_context(event_id=event_id):
                event_process(event_id)
        elif not queue.kick_drain():  # broker unreachable: due now, so the next sweep takes it at once
            WebhookEvent.objects.filter(pk=event_id, status=Status.RECEIVED, next_attempt_at__isnull=True).update(
                next_attempt_at=timezone.now())
    except Exception:  # the answer must stay 2xx: the event is stored and the sweeper will find it
        logger.exception("webhook event %s stored but not queued; the sweeper will pick it up", event_id)


def events_drain_soon(*, force: bool = False) -> bool:
    """Make sure due events get drained: right here when tasks run in-process, else a drain task
    (queue.kick_drain; `force`: even if the drain flag is set). Returns True if one ran or was published."""
    if queue.inline():
        events_drain()
        return True
    return queue.kick_drain(force=force)


# --- Claiming and the drain -------------------------------------------------------------------

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
# subscription rows it locks are released quickly: they are locked only while the group's snapshots are
# written (the store re-reads of parsing come before), ~0.1 s for 100 events. 100 rather than 25: the
# group's fixed cost (claim, commit, relay, cache refresh: ~19 queries) is then paid once per 100 events
# (in-process drain of test-adapter events: 380 → 618 events/s, 819 → 575 µs CPU per event).
DRAIN_GROUP_SIZE = 100


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


def drain_run(*, max_seconds: float = 60.0) -> int:
    """The drain task's body: process until nothing is due, then release the drain flag and look once
    more (an event committed while the flag was still set did not schedule a drain of its own)."""
    try:
        done, more = events_drain(max_seconds=max_seconds)
    except BaseException:
        queue.drain_finished()  # let the next webhook (or the sweeper) schedule a fresh drain
        raise
    if more:
        events_drain_soon(force=True)  # keep the flag: a successor drain continues
        return done
    queue.drain_finished()
    if WebhookEvent.objects.filter(status=Status.RECEIVED).filter(_due()).exists():
        events_drain_soon()
    return done


# --- Attempts: parse, apply, record -----------------------------------------------------------

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
    with reads_shared_in_group():  # a subscription several of the group's events name is read once
        for event in events:
            try:
                with log_context(event_id=event.pk):
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


def _attempt(event: WebhookEvent, *, failed: Exception | None = None) -> _Attempt:
    """One processing attempt, inside the transaction that holds the event's lock. `failed`: how its
    parse already failed in this attempt (in a drain group): recorded without asking the store again."""
    with log_context(event_id=event.pk):
        return _attempt_logged(event, failed)


def _attempt_logged(event: WebhookEvent, failed: Exception | None) -> _Attempt:
    now = timezone.now()
    event.attempts += 1
    try:
        if failed is not None:
            raise failed  # its own traceback is kept
        adapter = registry.get_adapter(event.provider)
        with transaction.atomic():  # savepoint: a failed attempt leaves only the record of it
            parsed = adapter.parse(_inbound(event))
            cause = Cause(CauseKind.WEBHOOK, ref=str(event.pk))
            with log_context(user_id=_only({s.user_id for s in parsed.snapshots})):
                results = apply_snapshots([(snapshot, cause) for snapshot in parsed.snapshots])
            _link([event], [results])
    except Exception as exc:
        if _retryable(exc):
            retry_in = retries.event_retry_or_dead(event, exc, now)
        else:  # PermanentError, an unknown provider, a bug: needs a fix, then a replay
            retries.event_fail(event, exc, now)
            retry_in = None
        deadline_work = None if event.done_while_failing else _inbound_or_none(event)
        return _Attempt(event.pk, event.status, retry_in=retry_in, failed=deadline_work, error=exc, event=event)
    return _record_outcome(event, parsed, results, now)


def _only(values: set):
    """The one value of a set (None when empty or several): a log field only where it is unambiguous."""
    return next(iter(values)) if len(values) == 1 else None


def _inbound(event: WebhookEvent) -> InboundEvent:
    # An event stored without its decoded content is decoded again from its bytes (bodies.py).
    return bodies.inbound_event(event)


def _inbound_or_none(event: WebhookEvent) -> InboundEvent | None:
    """What `while_failing` acts on; None for a body that cannot be decoded (nothing to act on)."""
    try:
        return _inbound(event)
    except Undecodable:
        return None


def _link(events: list[WebhookEvent], results: list[list[ApplyResult]]) -> None:
    """Each event to the subscriptions it touched (one INSERT for all)."""
    through = WebhookEvent.subscriptions.through
    links = {(event.pk, r.subscription_id) for event, rs in zip(events, results, strict=True) for r in rs}
    if links:
        through.objects.bulk_create([through(webhookevent_id=e, subscription_id=s) for e, s in sorted(links)],
                                    ignore_conflicts=True)


# --- The outcome ------------------------------------------------------------------------------

_OUTCOME_FIELDS = ["status", "outcome", "processed_at", "next_attempt_at", "error", "traceback", "attempts",
                   "failing_since"]


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
    event.failing_since = None
    event.error = event.traceback = ""
    if save:
        event.save(update_fields=_OUTCOME_FIELDS)
    return _Attempt(event.pk, event.status, after_apply=list(parsed.after_apply), results=results, event=event)


def _summary(snapshots, results: list[ApplyResult]) -> str:
    """What the event did, per subscription: created, updated A → B, unchanged, stale."""
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


# --- After the commit: follow-ups, retry scheduling -------------------------------------------

def _after_commit(attempt: _Attempt) -> str:
    """Work outside the transaction (`_after_commit_work`), then the attempt counted by where it ended."""
    status = _after_commit_work(attempt)
    if attempt.event is not None:
        _count(attempt.event, status)
    return status


def _count(event: WebhookEvent, status: str) -> None:
    provider, event_type = event.provider, event.event_type
    if status in (Status.PROCESSED, Status.IGNORED):
        metrics.WEBHOOKS_PROCESSED.labels(provider, event_type, status).inc()
        if status == Status.PROCESSED:
            lag = (timezone.now() - event.received_at).total_seconds()
            metrics.WEBHOOK_LAG.labels(provider).observe(max(lag, 0.0))
    elif status == Status.DEAD:
        metrics.WEBHOOKS_FAILED.labels(provider, event_type, "none").inc()
        metrics.WEBHOOKS_DEAD.labels(provider, event_type).inc()
    else:  # received again (a retry is planned) or failed (needs a fix and a replay)
        metrics.WEBHOOKS_FAILED.labels(provider, event_type, "planned" if status == Status.RECEIVED else "none").inc()


def _after_commit_work(attempt: _Attempt) -> str:
    """Work outside the transaction: follow-ups of the adapter (may call the store), what a failed
    attempt's store still needs (`while_failing`), retry scheduling."""
    # The subscription, when the event touched exactly one (a follow-up acts on it).
    with log_context(event_id=attempt.event_id, subscription_id=_only({r.subscription_id for r in attempt.results})):
        return _after_commit_logged(attempt)


def _after_commit_logged(attempt: _Attempt) -> str:
    if attempt.after_apply:
        try:
            for follow_up in attempt.after_apply:
                follow_up(attempt.results)
        except Exception as exc:
            return _follow_up_failed(attempt.event_id, exc, transient=_retryable(exc))
    if attempt.failed is not None:
        _while_failing(attempt.failed, attempt.error, final=attempt.retry_in is None)
    if attempt.retry_in is not None:
        retries.retry_schedule(attempt.event_id, attempt.retry_in)
    return attempt.status


def _follow_up_failed(event_id: int, exc: Exception, *, transient: bool) -> str:
    """The snapshots are committed but the follow-up failed: the event goes back to `received` (retry;
    processing is idempotent) or to `failed`."""
    with transaction.atomic():
        event = WebhookEvent.objects.select_for_update().get(pk=event_id)
        now = timezone.now()
        if transient:
            retry_in = retries.event_retry_or_dead(event, exc, now, prefix="follow-up failed: ")
        else:
            retries.event_fail(event, exc, now, prefix="follow-up failed: ")
            retry_in = None
        status = event.status
    if retry_in is not None:
        retries.retry_schedule(event_id, retry_in)
    return status


def _while_failing(event: InboundEvent, error: BaseException | None, *, final: bool) -> None:
    """The adapter's deadline work for a failed event (Google: acknowledge a new purchase), recorded on
    the event once done so it is not done again. Never raises: the attempt is already recorded."""
    try:
        done = registry.get_adapter(event.provider).while_failing(event, error, final=final)
    except Exception:
        logger.exception("webhook event %s: the store's deadline work after a failed attempt failed", event.id)
        return
    if done:
        WebhookEvent.objects.filter(pk=event.id).update(done_while_failing=done[:255])
