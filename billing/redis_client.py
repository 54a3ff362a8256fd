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

import contextlib
import functools
import logging
import os
import socket
import struct
import threading
import time
from urllib.parse import unquote, urlsplit

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


@functools.lru_cache(maxsize=64)  # pure, and asked on every Redis call (circuit_open)
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


# --- The check API's one GET, without a client library ----------------------------------------

class HotGetUnavailable(Exception):
    """The raw GET cannot answer (no REDIS_URL, breaker open, an outage, an error reply): the caller
    takes the full path, which judges and reports it the usual way."""


class _RawConnection(threading.local):
    sock = None
    pid = 0
    url = ""
    buffer = b""


_raw = _RawConnection()


def hot_get(key: str) -> bytes | None:
    """GET `key` over one plain socket per thread (RESP written and read here): the check API's cache
    hit is one round trip and a few µs of Python instead of redis-py's ~60 µs of command packing,
    pool and parser. Only `redis://` URLs (TCP, optional password and database number); anything
    else, and any failure, raises HotGetUnavailable. An outage (connect, send or read failing or timing
    out) opens the breaker as redis-py's connections do. None: the key does not exist."""
    url = settings.REDIS_URL
    if not url or circuit_open(url):
        raise HotGetUnavailable("Redis absent or skipped")
    try:
        sock = _raw_socket(url)
        encoded = key.encode()
        sock.sendall(b"*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n" % (len(encoded), encoded))
        return _read_bulk(sock)
    except OSError as exc:  # socket.timeout is an OSError
        _raw_close()
        _trip(server_key(url), exc)
        raise HotGetUnavailable(str(exc)) from None


def _raw_socket(url: str):
    if _raw.sock is not None and _raw.pid == os.getpid() and _raw.url == url:
        return _raw.sock
    _raw_close()
    parts = urlsplit(url)
    if parts.scheme != "redis" or not parts.hostname:
        raise HotGetUnavailable(f"{parts.scheme} URLs are served by redis-py")
    sock = socket.create_connection((parts.hostname, parts.port or 6379),
                                    timeout=settings.REDIS_CONNECT_TIMEOUT_SECONDS)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    # The read/write timeout kept by the kernel (SO_RCVTIMEO/SO_SNDTIMEO) on a blocking socket: a Python
    # timeout would poll() before every send and recv (two more system calls per GET, ~1 µs measured).
    # A timeout then fails the call with EAGAIN (BlockingIOError, an OSError), as socket.timeout did.
    sock.settimeout(None)
    seconds = max(settings.REDIS_SOCKET_TIMEOUT_SECONDS, 0.001)  # a zeroed timeval would wait forever
    timeval = struct.pack("ll", int(seconds), int(seconds % 1 * 1e6))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
    _raw.sock, _raw.pid, _raw.url, _raw.buffer = sock, os.getpid(), url, b""
    try:
        if parts.password is not None:
            args = [unquote(parts.username), unquote(parts.password)] if parts.username else [unquote(parts.password)]
            _raw_command(sock, b"AUTH", *(a.encode() for a in args))
        db = parts.path.strip("/")
        if db and db != "0":
            _raw_command(sock, b"SELECT", db.encode())
    except BaseException:
        _raw_close()
        raise
    return sock


def _raw_command(sock, *args: bytes) -> None:
    sock.sendall(b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args))
    line = _read_line(sock)
    if not line.startswith(b"+"):
        raise HotGetUnavailable(f"Redis refused {args[0].decode()}: {line[:200]!r}")


def _read_line(sock) -> bytes:
    while (end := _raw.buffer.find(b"\r\n")) < 0:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("Redis closed the connection")
        _raw.buffer += chunk
    line, _raw.buffer = _raw.buffer[:end], _raw.buffer[end + 2:]
    return line


def _read_bulk(sock) -> bytes | None:
    line = _read_line(sock)
    if not line.startswith(b"$"):
        _raw_close()  # an error reply (WRONGTYPE) or a protocol surprise: start afresh next time
        raise HotGetUnavailable(f"unexpected reply {line[:200]!r}")
    size = int(line[1:])
    if size < 0:
        return None
    while len(_raw.buffer) < size + 2:
        chunk = sock.recv(max(65536, size + 2 - len(_raw.buffer)))
        if not chunk:
            raise ConnectionError("Redis closed the connection")
        _raw.buffer += chunk
    value, _raw.buffer = _raw.buffer[:size], _raw.buffer[size + 2:]
    return value


def _raw_close() -> None:
    sock, _raw.sock, _raw.buffer = _raw.sock, None, b""
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.close()
