"""The one place a Redis client is built (stream, entitlement cache, drain flag, counters), with short
timeouts and a per-process circuit breaker.

`get_redis()` is None when REDIS_URL is empty OR when Redis failed a moment ago: every caller already
treats None as "work without Redis" (the database answers, events wait in the outbox, the sweeper
enqueues), so an outage costs one short timeout per process every REDIS_CIRCUIT_BREAKER_SECONDS
instead of one per request. Failures are reported by the connections themselves (a connect or read
that fails or times out opens the breaker), so callers need not report anything; `report_failure`
is for connections not built here (the Celery broker's) and for callers that judge a failure
themselves. The breaker is keyed by server (host and port), so the broker on the same server shares it.
"""

import logging
import threading
import time
from urllib.parse import urlsplit

import redis
from django.conf import settings
from redis.backoff import NoBackoff
from redis.retry import Retry

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_clients: dict[tuple[str, bool], redis.Redis] = {}
_open_until: dict[str, float] = {}  # server → monotonic time until which it is skipped
_connection_classes: dict[tuple[type, str], type] = {}

# Failures that say the server is unreachable or not answering (a WRONGTYPE or script error does not).
OUTAGE_ERRORS = (redis.ConnectionError, redis.TimeoutError, OSError)


def server_key(url: str) -> str:
    """What the breaker is keyed by: one Redis server, whatever database number or credentials."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return f"unix:{parts.path}"
    if not parts.hostname:
        return url
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{parts.hostname}:{port or 6379}"


def circuit_open(url: str | None = None) -> bool:
    """True while the server of `url` (default REDIS_URL) is being skipped after a failure."""
    key = server_key(url or settings.REDIS_URL)
    until = _open_until.get(key)
    if until is None:
        return False
    if time.monotonic() < until:
        return True
    _open_until.pop(key, None)  # half-open: the next caller tries the server again
    return False


def report_failure(exc: BaseException | None = None, *, url: str | None = None) -> None:
    """Skip the server of `url` (default REDIS_URL) for REDIS_CIRCUIT_BREAKER_SECONDS. Only outages
    count: a command error (`exc` not a connection or timeout error) leaves the breaker closed."""
    if exc is None or isinstance(exc, OUTAGE_ERRORS):
        _trip(server_key(url or settings.REDIS_URL), exc)


def _trip(key: str, exc: BaseException | None) -> None:
    seconds = settings.REDIS_CIRCUIT_BREAKER_SECONDS
    if seconds <= 0:
        return
    if key not in _open_until:
        logger.warning("Redis at %s unavailable (%s): skipped for %ss", key, exc or "reported", seconds)
    _open_until[key] = time.monotonic() + seconds


def circuit_reset(url: str | None = None) -> None:
    """Close the breaker of `url`'s server (known to answer again), or every breaker."""
    if url is None:
        _open_until.clear()
    else:
        _open_until.pop(server_key(url), None)


def get_redis() -> redis.Redis | None:
    """The shared client (a connection pool), or None: no REDIS_URL, or Redis failed just now."""
    return _client(single_connection=False)


def hot_path_redis() -> redis.Redis | None:
    """A single-connection client for the check API's one GET: no pool checkout per command halves
    redis-py's CPU per GET (~140 → ~75 µs measured). Thread-safe: redis-py serializes commands on it
    with a lock. None as for get_redis()."""
    return _client(single_connection=True)


def ping(url: str) -> bool:
    """Whether the Redis at `url` answers now (another server than REDIS_URL, e.g. the broker's), with
    the same short timeouts and no retries; a failure opens that server's breaker."""
    if circuit_open(url):
        return False
    try:
        client = _build(url, single_connection=False)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except redis.RedisError:
        return False


def _client(*, single_connection: bool) -> redis.Redis | None:
    url = settings.REDIS_URL
    if not url or circuit_open(url):
        return None
    client = _clients.get((url, single_connection))
    if client is not None:
        return client
    with _lock:
        client = _clients.get((url, single_connection))
        if client is None:
            try:
                client = _build(url, single_connection=single_connection)
            except redis.RedisError as exc:  # a single-connection client connects at once
                report_failure(exc, url=url)
                return None
            _clients[(url, single_connection)] = client
    return client


def _build(url: str, *, single_connection: bool) -> redis.Redis:
    pool = redis.ConnectionPool.from_url(
        url, decode_responses=True, socket_connect_timeout=settings.REDIS_CONNECT_TIMEOUT_SECONDS,
        socket_timeout=settings.REDIS_SOCKET_TIMEOUT_SECONDS, health_check_interval=30,
        # No retries: redis-py's default (10, with backoff) turns one dead server into seconds per call.
        retry=Retry(NoBackoff(), 0))
    pool.connection_class = _breaker_connection_class(pool.connection_class, server_key(url))
    return redis.Redis(connection_pool=pool, single_connection_client=single_connection)


def _breaker_connection_class(base: type, key: str) -> type:
    """`base` (TCP, TLS or Unix socket connection) that opens the breaker of `key` when it fails."""
    cls = _connection_classes.get((base, key))
    if cls is None:
        cls = _connection_classes[(base, key)] = type(f"Breaker{base.__name__}", (_BreakerMixin, base),
                                                      {"breaker_key": key})
    return cls


class _BreakerMixin:
    breaker_key = ""

    def _tripping(self, call, *args, **kwargs):
        try:
            return call(*args, **kwargs)
        except OUTAGE_ERRORS as exc:
            _trip(self.breaker_key, exc)
            raise

    def connect(self):
        return self._tripping(super().connect)

    def send_packed_command(self, command, check_health=True):
        return self._tripping(super().send_packed_command, command, check_health)

    def read_response(self, *args, **kwargs):
        return self._tripping(super().read_response, *args, **kwargs)
