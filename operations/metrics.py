"""The metrics the processes count as things happen (docs/operations.md "Metrics" lists them all), and
the small helpers that record them. Scrape-time gauges read from the database are in collectors.py.

Anything may import this module; it imports nothing of the project (it sits below `accounts`). With
PROMETHEUS_MULTIPROC_DIR set in the environment before the process starts (the web workers, the Celery
worker), prometheus-client keeps every value in a file of that directory per process, and /metrics
sums them; without it (make run, tests) the values live in this process's default registry.

Label values are bounded: providers and event types come from authentic events only, outcomes and
operations are names from our code, never user input."""

import inspect
import re
import time
from functools import wraps

from prometheus_client import Counter, Histogram

# --- Webhooks ---------------------------------------------------------------------------------

WEBHOOKS_RECEIVED = Counter(
    "billing_webhooks_received_total", "Authentic webhook deliveries answered, by what became of them",
    ["provider", "event_type", "result"])  # result: stored, duplicate, undecodable, answered
WEBHOOKS_REJECTED = Counter(
    "billing_webhooks_rejected_total", "Webhook requests refused by authentication, by reason",
    ["provider", "code"])
WEBHOOKS_PROCESSED = Counter(
    "billing_webhooks_processed_total", "Webhook events processed successfully (applied or ignored)",
    ["provider", "event_type", "outcome"])  # outcome: processed, ignored
WEBHOOKS_FAILED = Counter(
    "billing_webhooks_failed_total", "Failed processing attempts of webhook events",
    ["provider", "event_type", "retry"])  # retry: planned, none (failed for good: needs a fix and a replay)
WEBHOOKS_DEAD = Counter(
    "billing_webhooks_dead_total", "Webhook events given up on after every retry (dead letters)",
    ["provider", "event_type"])
WEBHOOK_LAG = Histogram(
    "billing_webhook_processing_lag_seconds", "From a webhook's receipt to its effect committed",
    ["provider"], buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 4 * 3600, 24 * 3600))

# --- The check API (the hot path: children bound once, ~1 µs per increment) --------------------

CHECK_REQUESTS = Counter("billing_check_requests_total", "Check API requests, by HTTP status", ["status"])
CHECK_LATENCY = Histogram(
    "billing_check_latency_seconds", "Check API time in the view (authentication, cache or database, JSON)",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1))
CHECK_CACHE = Counter("billing_check_cache_total", "Check answers read from the Redis entitlement cache "
                                                   "(hit) or computed from PostgreSQL (miss)", ["result"])
CHECK_CACHE_HIT = CHECK_CACHE.labels("hit")
CHECK_CACHE_MISS = CHECK_CACHE.labels("miss")
_CHECK_BY_STATUS = {status: CHECK_REQUESTS.labels(str(status)) for status in (200, 400, 401, 403, 405)}


def check_record(status: int, seconds: float) -> None:
    """One check API answer."""
    child = _CHECK_BY_STATUS.get(status) or CHECK_REQUESTS.labels(str(status))
    child.inc()
    CHECK_LATENCY.observe(seconds)


# --- Store APIs -------------------------------------------------------------------------------

STORE_CALLS = Counter("billing_store_api_calls_total", "Calls to a store's API, by outcome",
                      ["store", "operation", "outcome"])
STORE_CALL_SECONDS = Histogram("billing_store_api_call_seconds", "Duration of calls to a store's API",
                               ["store", "operation"], buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))

_SNAKE = re.compile(r"(?<!^)(?=[A-Z])")


def outcome_of(exc: BaseException | None) -> str:
    """`ok`, or the error class in snake case (store_unavailable, subscription_not_found, quota_exceeded,
    permanent_error, credentials_refused, payment_declined, store_refused, not_configured, …)."""
    return "ok" if exc is None else _SNAKE.sub("_", type(exc).__name__).lower()


def store_call_record(store: str, operation: str, seconds: float, exc: BaseException | None = None) -> None:
    STORE_CALLS.labels(store, operation, outcome_of(exc)).inc()
    STORE_CALL_SECONDS.labels(store, operation).observe(seconds)


def store_api(store: str):
    """Decorator of a store client's call (`<entity>_<action>`): counted by its name and outcome, timed.
    A call that returns a generator (a paged list) is counted when the pages are exhausted or fail."""
    def decorate(function):
        operation = function.__name__

        @wraps(function)
        def call(*args, **kwargs):
            started = time.perf_counter()
            try:
                result = function(*args, **kwargs)
            except Exception as exc:
                store_call_record(store, operation, time.perf_counter() - started, exc)
                raise
            if inspect.isgenerator(result):
                return _pages(result, store, operation, started)
            store_call_record(store, operation, time.perf_counter() - started)
            return result
        return call
    return decorate


def _pages(pages, store: str, operation: str, started: float):
    try:
        yield from pages
    except Exception as exc:
        store_call_record(store, operation, time.perf_counter() - started, exc)
        raise
    store_call_record(store, operation, time.perf_counter() - started)
