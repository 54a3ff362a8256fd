"""The check API's cache hit, answered before Django builds a request (config/wsgi.py wraps the app).

For GET /api/subscriptions/check/<user_id> without a query string, from a caller that may read the answer
without any database work (a trusted network without credentials, an API key with the `check` scope that
this process has in its key cache, or the user's own JWT), on an allowed Host, the answer is one raw
Redis GET (redis_client.hot_get), the signed entry verified as the full path does
(entitlement_cache.decode), the answer computed by the same function (selectors.answer_from_entries),
and the same headers plus X-Request-ID. Anything else (a miss, Redis down, an unreadable entry, any
refusal, an address the failed-authentication limit refuses, HEAD, `?entitlement=`, a non-ASCII id) goes
to the full path unchanged, which answers, refuses, counts failures and logs exactly as before: this
path only ever answers 200, so it needs no error handling of its own. A cache hit whose signed entry this
process has verified before is answered from its memo (`_answers`: the answer's JSON around `as_of`, good
until the entry's age limit or the next expiry in it), without verifying, parsing and encoding it again.
Measured: docs/performance.md."""

import itertools
import json
import logging
import os
import threading
import time
import weakref
from datetime import UTC, datetime
from time import perf_counter

import psycopg
from django.conf import settings
from django.core.signals import setting_changed
from django.db import DEFAULT_DB_ALIAS, connections
from django.dispatch import receiver
from django.http.request import split_domain_port, validate_host
from django.utils import timezone
from psycopg import pq

from accounts.authentication import AuthFailed, authenticate_jwt, cached_api_key_principal
from accounts.networks import is_trusted_request
from billing import entitlement_cache
from billing.entries import entries_from_rows, entries_query
from billing.models import Subscription
from billing.redis_client import HotGetUnavailable, hot_get
from billing.selectors import answer_from_entries
from billing.statuses import access_ends_at, grants_access
from billing.times import isoformat_z
from operations.metrics import CHECK_CACHE_HIT, CHECK_CACHE_MISS, check_record
from operations.request_id import HEADER, request_id_from

from . import auth_failures
from .check import CHECK_PATH
from .inputs import user_id_is_valid

logger = logging.getLogger(__name__)

_MAX_HOSTS = 256
_hosts: dict[str, bool] = {}
_hosts_lock = threading.Lock()


class CheckWSGIFastPath:
    """WSGI middleware: the cached check answer, or the wrapped application."""

    def __init__(self, application):
        self.application = application

    def __call__(self, environ, start_response):
        if environ.get("REQUEST_METHOD") == "GET" and not environ.get("QUERY_STRING"):
            match = CHECK_PATH.match(environ.get("PATH_INFO", ""))
            if match is not None:
                started = perf_counter()
                try:
                    body = cached_answer(environ, match["user_id"])
                except Exception:  # a bug here must not cost the answer (or its X-Request-ID): the full path
                    logger.exception("check API fast path failed; answered by the full path")
                    body = None
                if body is not None:
                    check_record(200, perf_counter() - started)
                    given = "HTTP_X_REQUEST_ID" in environ  # the caller's, if sane (request_id_from judges)
                    request_id = request_id_from(environ) if given else fresh_request_id()
                    start_response("200 OK", [*_HEADERS, ("Content-Length", str(len(body))), (HEADER, request_id)])
                    return [body]
        return self.application(environ, start_response)


_HEADERS = (("Content-Type", "application/json"), ("X-Content-Type-Options", "nosniff"),
            ("Cache-Control", "no-store"))


class _RequestIds:
    """New X-Request-IDs: 32 hex digits as the middleware's uuid4 spelling, unique without asking the
    kernel for randomness per answer (uuid4 is ~1.6 µs, this ~0.3): 16 random hex digits drawn once per
    process (again after a fork: gunicorn forks its workers; a forked process must not repeat ids) and a
    64-bit counter."""

    def __init__(self):
        self.reset()
        os.register_at_fork(after_in_child=self.reset)

    def reset(self):
        self.prefix, self.counter = os.urandom(8).hex(), itertools.count()


_ids = _RequestIds()


def fresh_request_id() -> str:
    return f"{_ids.prefix}{next(_ids.counter) & 0xFFFFFFFFFFFFFFFF:016x}"


def cached_answer(environ, user_id: str) -> bytes | None:
    """The 200 answer's body from the cache, or None: the full path answers."""
    # A WSGI PATH_INFO is bytes spelled as latin-1: only ASCII ids read the same here as in Django.
    if not user_id.isascii() or not user_id_is_valid(user_id):
        return None
    if not host_allowed(environ) or not _may_read(environ, user_id):
        return None
    try:
        raw = hot_get(entitlement_cache.key_for(user_id))
    except HotGetUnavailable:  # Redis absent or down: one query (a miss goes to the full path, which fills)
        entries = database_entries(user_id)
        if entries is None:
            return None
        CHECK_CACHE_MISS.inc()
        return _body(user_id, entries)
    if raw is None:
        return None
    body = _remembered_answer(user_id, raw)
    if body is None:
        try:
            entries = entitlement_cache.decode(user_id, raw.decode())
        except (entitlement_cache.Unreadable, UnicodeDecodeError):  # the full path logs and drops it
            return None
        body = _remember_answer(user_id, raw, entries)
    CHECK_CACHE_HIT.inc()
    return body


def _body(user_id: str, entries: list[dict]) -> bytes:
    return json.dumps(answer_from_entries(user_id, entries, entitlement=None, now=timezone.now())).encode()


# Answers of verified cache entries, per process. Decoding a hit (HMAC, JSON, shape check), computing the
# answer and encoding it, with the garbage collections their allocations set off, were most of a hit's
# CPU (51-67 µs in-process; 15-18 with this memo: docs/performance.md); the same user's entry is read again
# and again while it stays in Redis. Keyed by the user and the entry's signed
# head (`v1:<written_at>:<mac>`: the MAC covers the user, the time and the payload, so the same head is the
# same verified entry; a value rewritten in Redis has another MAC and is verified afresh). The answer is
# the same until the entry's age limit or the next moment an entitlement in it ends (both kept as
# `good_until`), except `as_of`, which is written in afresh: the bytes equal json.dumps of the full
# computation (tests/billing/test_check_fast_path.py). Bounded: emptied when full.
_MAX_ANSWERS = 16_384
_answers: dict[tuple[str, bytes], tuple[bytes, bytes, float]] = {}
_AS_OF = f"as-of-{os.urandom(8).hex()}"  # stands for as_of in a remembered answer's JSON


def _moment(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _signed_head(raw: bytes) -> bytes | None:
    written_at = raw.find(b":", 3)
    mac = raw.find(b":", written_at + 1) if written_at > 0 else -1
    return raw[:mac] if mac > 0 else None


def _remembered_answer(user_id: str, raw: bytes) -> bytes | None:
    head = _signed_head(raw)
    remembered = _answers.get((user_id, head)) if head is not None else None
    if remembered is None:
        return None
    before, after, good_until = remembered
    now = time.time()
    if now >= good_until:
        return None
    return b"%s\"%s\"%s" % (before, isoformat_z(datetime.fromtimestamp(now, UTC)).encode(), after)


def _remember_answer(user_id: str, raw: bytes, entries: list[dict]) -> bytes:
    """The answer now, and its JSON around `as_of` remembered until it could change."""
    now = timezone.now()
    answer = answer_from_entries(user_id, entries, entitlement=None, now=now)
    head = _signed_head(raw)
    parts = json.dumps(answer | {"as_of": _AS_OF}).encode().split(b'"%s"' % _AS_OF.encode())
    if head is None or len(parts) != 2:
        return json.dumps(answer).encode()
    body = b"%s%s%s" % (parts[0], json.dumps(answer["as_of"]).encode(), parts[1])  # = json.dumps(answer)
    good_until = int(head.split(b":")[1]) + settings.CHECK_CACHE_TTL_SECONDS  # decode's age limit
    for entry in entries:  # the next moment an entitlement ends changes the answer
        if grants_access(entry["status"]):
            ends = access_ends_at(entry["status"], _moment(entry["expires_at"]), _moment(entry["grace_until"]))
            if ends is not None and ends > now:
                good_until = min(good_until, ends.timestamp())
    if len(_answers) >= _MAX_ANSWERS:
        _answers.clear()
    _answers[(user_id, head)] = (parts[0], parts[1], good_until)
    return body


# The full path's query (billing/entries.py), compiled once: the ORM's ~150 µs of building and compiling it
# per request is most of the no-Redis path's Python. Prepared once per connection (PREPARE, then EXECUTE):
# planning its joins costs PostgreSQL more than running them (measured ~400 → ~50 µs per query). Django
# leaves psycopg's automatic preparing off for connection poolers' sake, hence the explicit statement and
# CHECK_API_PREPARED_QUERY (off behind a pooler in transaction mode, which cannot keep a prepared statement:
# then one unnamed extended-protocol query, which poolers pass through). Run through the connection's libpq
# wrapper (psycopg's documented `pgconn`): psycopg's cursor machinery (quoting, the wait loop, its type
# adapters) cost ~100 of the path's ~160 µs in-process; here the values come back as text and are read
# by _row below into what the ORM's row would hold.
_compiled: list[bytes] = []
_PROBE = "\x00probe"  # never a user id (user_id_is_valid refuses control characters)
_prepared: "weakref.WeakKeyDictionary[object, bytes]" = weakref.WeakKeyDictionary()  # connection → name
_names = itertools.count(1)


def _entries_sql() -> bytes | None:
    if not _compiled:
        queryset = entries_query(Subscription.objects.filter(subscriber__external_id=_PROBE))
        sql, params = queryset.query.sql_with_params()
        if params != (_PROBE,) or sql.count("%s") != 1 or "%%" in sql or "$1" in sql:  # its shape changed
            return None
        _compiled.append(sql.replace("%s", "$1").encode())
    return _compiled[0]


def _moment_of(text: bytes | None) -> datetime | None:
    return datetime.fromisoformat(text.decode()) if text is not None else None


def _text(value: bytes | None) -> str | None:
    return value.decode() if value is not None else None


def _row(result, i: int) -> tuple:
    """Row i as entries_query's values_list gives it (billing/entries.py _ENTRY_COLUMNS)."""
    value = result.get_value
    return (int(value(i, 0)), _text(value(i, 1)), _text(value(i, 2)), _text(value(i, 3)), _moment_of(value(i, 4)),
            _moment_of(value(i, 5)), _text(value(i, 6)), _moment_of(value(i, 7)), _text(value(i, 8)))


def database_entries(user_id: str) -> list[dict] | None:
    """The user's entries in one query on this thread's open PostgreSQL connection, without Django's
    per-request health check (a failure here hands the request to the full path, whose health check then
    reconnects). None: the full path answers (no open connection yet, one due to be closed, a transaction
    open, or any database error)."""
    connection = connections[DEFAULT_DB_ALIAS]
    raw = connection.connection
    if (connection.vendor != "postgresql" or raw is None or connection.in_atomic_block or connection.errors_occurred
            or not raw.autocommit or (connection.close_at is not None and time.monotonic() >= connection.close_at)):
        return None
    sql = _entries_sql()
    if sql is None:
        return None
    pgconn = raw.pgconn
    if pgconn.status != pq.ConnStatus.OK:  # closed or broken (PostgreSQL restarted)
        connection.errors_occurred = True  # the next request's start checks the connection
        return None
    if pgconn.transaction_status != pq.TransactionStatus.IDLE:
        return None
    try:
        if not settings.CHECK_API_PREPARED_QUERY:
            result = pgconn.exec_params(sql, [user_id.encode()])
        else:
            name = _prepared.get(raw)
            if name is None:
                name = f"billing_check_entries_{next(_names)}".encode()
                if pgconn.prepare(name, sql).status != pq.ExecStatus.COMMAND_OK:
                    raise psycopg.OperationalError(pgconn.get_error_message())
                _prepared[raw] = name
            result = pgconn.exec_prepared(name, [user_id.encode()])
        if result.status != pq.ExecStatus.TUPLES_OK:
            raise psycopg.OperationalError(pgconn.get_error_message())
        rows = [_row(result, i) for i in range(result.ntuples)]
    except (psycopg.Error, ValueError):
        _prepared.pop(raw, None)
        connection.errors_occurred = True  # the next request's start checks the connection, as after any error
        return None
    return entries_from_rows(rows)


def _may_read(environ, user_id: str) -> bool:
    """True only when check.py's _refusal would let the caller through without a database query."""
    header = environ.get("HTTP_AUTHORIZATION", "")
    trusted = is_trusted_request(environ)
    if not header:
        return trusted
    if not trusted and auth_failures.refusing_any():  # the middleware may answer 429: let it judge
        return False
    scheme, _, credentials = header.strip().partition(" ")
    scheme, credentials = scheme.lower(), credentials.strip()
    if not credentials:
        return False
    if scheme == "api-key":
        principal = cached_api_key_principal(credentials)
        return principal is not None and principal.is_service and principal.has_scope("check")
    if scheme == "bearer":
        try:
            principal = authenticate_jwt(credentials)
        except AuthFailed:
            return False
        return not principal.is_service and principal.user_id == user_id
    return False


def host_allowed(environ) -> bool:
    """HttpRequest.get_host()'s verdict for the common case (a Host header, no X-Forwarded-Host to
    honour); False (the full path judges) otherwise. Both WSGI fast paths ask it (webhooks/wsgi.py too)."""
    host = environ.get("HTTP_HOST")
    if not host or (settings.USE_X_FORWARDED_HOST and "HTTP_X_FORWARDED_HOST" in environ):
        return False
    verdict = _hosts.get(host)
    if verdict is None:
        allowed = settings.ALLOWED_HOSTS
        if settings.DEBUG and not allowed:
            allowed = [".localhost", "127.0.0.1", "[::1]"]
        domain, _port = split_domain_port(host)
        verdict = bool(domain) and validate_host(domain, allowed)
        with _hosts_lock:
            if len(_hosts) >= _MAX_HOSTS:  # bounded: random Host headers cannot grow it
                _hosts.clear()
            _hosts[host] = verdict
    return verdict


@receiver(setting_changed)
def _reset_on_setting_change(setting, **kwargs):
    if setting in ("ALLOWED_HOSTS", "DEBUG", "USE_X_FORWARDED_HOST"):
        _hosts.clear()
    if setting in ("SECRET_KEY", "CHECK_CACHE_TTL_SECONDS"):
        _answers.clear()
