"""Ingest: what POST /webhooks/<provider> does before it answers. The size limits, authentication
through the adapter (a rejection is logged and counted), the event stored once (INSERT … ON CONFLICT)
with the headers it came with, and the answer in the store's dialect. No store API call and no
subscription write: processing follows the commit (processing.event_process_soon).

4xx only for what a retry can never fix; anything transient (database down, a dependency of
authentication down) is 503 so the store retries. An authentic body is stored whatever its bytes: one
that cannot be decoded, or whose content PostgreSQL refuses (NUL, lone surrogates, deep nesting), is
stored as received, marked failed with the reason and answered as stored (bodies.py), never a 500.
views.py turns the request into `delivery_answer`'s arguments and its `Answer` into the HTTP response."""

import hashlib
import logging

import redis
from django.conf import settings
from django.db import InterfaceError, OperationalError, transaction
from django.utils import timezone

from billing.db import insert_ignoring_conflict
from billing.providers import registry
from billing.providers.base import (
    Answer,
    NotConfigured,
    ProviderAdapter,
    Rejected,
    TransientError,
    Undecodable,
    VerifiedEvent,
    WebhookDialect,
)
from billing.redis_client import get_redis
from operations import metrics

from . import bodies, processing
from .models import WebhookEvent

logger = logging.getLogger(__name__)

_OUR_DIALECT = WebhookDialect()

# Headers never stored: credentials of the request itself (Google's OIDC bearer token, cookies).
_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie",
                             "x-pubsub-verification-token"})  # Google's shared push token


class _Refused(Exception):
    """The delivery is refused before it is stored; `answer` is what the store gets."""

    def __init__(self, answer: Answer):
        super().__init__(answer.status)
        self.answer = answer


# --- The answer path --------------------------------------------------------------------------

def delivery_answer(provider: str, *, method: str, content_length: str | None, read, headers, query,
                    remote_addr: str | None = None) -> Answer:
    """One delivery from the store, answered: adapter → size check → authenticate → store once →
    answer. `read(n)` reads up to n bytes of the body; `headers` are the request's (case-insensitive)."""
    # Looked up first so that every refusal, even before the body is read, is in the store's own
    # error shape (Xsolla: 400 INVALID_PARAMETER, which it does not retry).
    adapter = webhook_adapter(provider)
    try:
        if method != "POST":
            raise _Refused(refusal(405, "method_not_allowed", "Webhooks are delivered with POST.", adapter))
        body = _body_read(content_length, read, adapter)
        if adapter is None:
            known = ", ".join(n for n in registry.names() if n != "manual")
            raise _Refused(refusal(404, "unknown_provider",
                                   f"No webhook endpoint for provider {provider!r} (known: {known})."))
        verified, undecodable = _authenticate(provider, adapter, headers, body, query, remote_addr)
        if undecodable:
            return _store_undecodable(provider, adapter, body, headers_to_store(headers), undecodable)
        return _store_and_answer(provider, adapter, verified, body, headers_to_store(headers))
    except _Refused as refused:
        return refused.answer


def webhook_adapter(provider: str) -> ProviderAdapter | None:
    """The provider's adapter if it takes webhooks (the staff-only `manual` provider does not)."""
    try:
        adapter = registry.get_adapter(provider)
    except registry.UnknownProvider:
        return None
    return adapter if type(adapter).authenticate is not ProviderAdapter.authenticate else None


def refusal(status: int, code: str, message: str, adapter: ProviderAdapter | None = None) -> Answer:
    """An error in the store's dialect (ours when there is no adapter)."""
    dialect = adapter.dialect if adapter is not None else _OUR_DIALECT
    return dialect.error(status=status, code=code, message=message)


def _body_read(content_length: str | None, read, adapter: ProviderAdapter | None) -> bytes:
    limit = settings.WEBHOOK_MAX_BODY_BYTES
    try:
        declared = int(content_length or 0)
    except ValueError:
        raise _Refused(refusal(400, "malformed", "Content-Length is not a number.", adapter)) from None
    too_big = f"The body is larger than the limit of {limit} bytes."
    if declared > limit:
        raise _Refused(refusal(413, "too_large", too_big, adapter))  # refused before reading a byte of it
    body = read(limit + 1)
    if len(body) > limit:
        raise _Refused(refusal(413, "too_large", too_big, adapter))
    return body


def _authenticate(provider: str, adapter: ProviderAdapter, headers, body: bytes, query,
                  remote_addr: str | None) -> tuple[VerifiedEvent | None, str]:
    """The authentic event, or (None, why) for an authentic body that cannot be decoded."""
    try:
        adapter.ensure_configured()
    except NotConfigured as exc:
        raise _Refused(refusal(503, "not_configured", str(exc), adapter)) from None
    try:
        return adapter.authenticate(headers, body, query), ""
    except Undecodable as exc:
        logger.warning("webhook authentic but undecodable (stored as failed): provider=%s: %s", provider, exc.reason)
        return None, exc.reason
    except Rejected as exc:
        rejection_record(provider=provider, code=exc.code)
        metrics.WEBHOOKS_REJECTED.labels(provider, exc.code).inc()
        logger.warning("webhook rejected: provider=%s status=%s code=%s reason=%s remote=%s", provider,
                       exc.status, exc.code, exc.reason, remote_addr)
        raise _Refused(refusal(exc.status, exc.code, exc.reason, adapter)) from None
    except TransientError as exc:
        logger.warning("webhook not authenticated (transient, the store will retry): provider=%s: %s", provider, exc)
        raise _Refused(refusal(503, "unavailable", f"Authentication could not complete, retry later: {exc}",
                               adapter)) from None


def _store_undecodable(provider: str, adapter: ProviderAdapter, body: bytes, headers: dict, reason: str) -> Answer:
    """An authentic body that cannot be decoded: stored as received (its digest dedupes redeliveries),
    failed with the reason; answered as the store's dialect answers a stored one it cannot read."""
    verified = VerifiedEvent(dedupe_key=bodies.body_key(body), event_type="", payload={})
    try:
        event_store(provider=provider, verified=verified, body=body, headers=headers, problem=reason)
    except (OperationalError, InterfaceError):
        logger.exception("webhook not stored: database unavailable (the store will retry)")
        return refusal(503, "unavailable", "The database is unavailable; retry later.", adapter)
    metrics.WEBHOOKS_RECEIVED.labels(provider, "", "undecodable").inc()
    return adapter.dialect.stored_undecodable(reason=reason)


def _store_and_answer(provider: str, adapter: ProviderAdapter, verified: VerifiedEvent, body: bytes,
                      headers: dict) -> Answer:
    # What PostgreSQL cannot take of the decoded event is left out (the bytes keep it): stored failed.
    to_store, problem = bodies.storable(verified, body)
    try:
        synchronous = _synchronous_answer(provider, adapter, verified)
        if synchronous is not None:
            # The store needs the answer itself (Xsolla's user validation): kept for the audit only.
            try:
                event_store(provider=provider, verified=to_store, body=body, headers=headers,
                            answered_with=synchronous.status, problem=problem)
            except (OperationalError, InterfaceError):
                logger.exception("webhook answered synchronously but not stored (database unavailable)")
            metrics.WEBHOOKS_RECEIVED.labels(provider, (to_store.event_type or "")[:128], "answered").inc()
            return synchronous
        event_id = event_store(provider=provider, verified=to_store, body=body, headers=headers, problem=problem)
    except (OperationalError, InterfaceError):
        logger.exception("webhook not stored: database unavailable (the store will retry)")
        return refusal(503, "unavailable", "The database is unavailable; retry later.", adapter)
    result = "duplicate" if event_id is None else "stored"
    metrics.WEBHOOKS_RECEIVED.labels(provider, (to_store.event_type or "")[:128], result).inc()
    return adapter.dialect.success(duplicate=event_id is None)


def _synchronous_answer(provider: str, adapter: ProviderAdapter, verified: VerifiedEvent) -> Answer | None:
    try:
        return adapter.synchronous_answer(verified)
    except Rejected as exc:
        logger.warning("webhook refused synchronously: provider=%s code=%s reason=%s", provider, exc.code,
                       exc.reason)
        metrics.WEBHOOKS_REJECTED.labels(provider, exc.code).inc()
        raise _Refused(refusal(exc.status, exc.code, exc.reason, adapter)) from None
    except TransientError as exc:
        raise _Refused(refusal(503, "unavailable", f"Retry later: {exc}", adapter)) from None


# --- Storing once, counting rejections --------------------------------------------------------

def headers_to_store(headers) -> dict:
    """The request's headers as kept on the event, without its credentials."""
    return bodies.headers_storable({k: v for k, v in headers.items() if k.lower() not in _SECRET_HEADERS})


def event_store(*, provider: str, verified: VerifiedEvent, body: bytes, headers: dict,
                answered_with: int | None = None, problem: str = "") -> int | None:
    """Store an authentic event once: INSERT … ON CONFLICT (provider, dedupe_key) DO NOTHING RETURNING id.

    Returns the new id, or None for a repeat delivery (also when two copies race: the unique
    constraint decides, the loser inserts nothing). A new `received` event is handed to processing
    after commit. `answered_with`: the event was already answered synchronously (e.g. Xsolla's user
    validation); it is stored for the audit as ignored and not queued. `problem`: why its decoded
    content is not stored (bodies.py); it is stored as failed with that reason and not queued: a
    replay decodes it from the stored bytes."""
    now = timezone.now()
    status = WebhookEvent.Status.RECEIVED if answered_with is None else WebhookEvent.Status.IGNORED
    outcome = "" if answered_with is None else f"answered synchronously (HTTP {answered_with})"
    if problem:
        status = WebhookEvent.Status.FAILED
        outcome = "; ".join(filter(None, [outcome, "not processed: the body is stored as received; replay it "
                                                   "once the code can read it"]))
    values = {
        "provider": provider,
        "dedupe_key": _fit_key(verified.dedupe_key),
        "event_type": (verified.event_type or "")[:128],
        "status": status,
        "body": bytes(body),
        "headers": headers,
        "payload": verified.payload if verified.payload is not None else {},
        "payload_problem": problem,
        "store_ids": [str(i) for i in verified.store_ids if i],
        "store_ids_text": " ".join(str(i) for i in verified.store_ids if i),
        "environment": (verified.environment or "")[:16],
        "occurred_at": verified.occurred_at,
        "received_at": now,
        "processed_at": None if answered_with is None and not problem else now,
        "attempts": 0,
        "next_attempt_at": None,
        "outcome": outcome,
        "error": problem,
        "traceback": "",
    }
    event_id = insert_ignoring_conflict(WebhookEvent, values, conflict=("provider", "dedupe_key"))
    if event_id is not None and status == WebhookEvent.Status.RECEIVED:
        transaction.on_commit(lambda: processing.event_process_soon(event_id))
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
        pipe.expire(key, settings.RETENTION_REJECTED_COUNTERS_HOURS * 3600)  # docs/operations.md "Retention"
        pipe.execute()
    except redis.RedisError as exc:
        logger.warning("rejection counter unavailable: %s", exc)
