"""Per-user cache of what the check answer is computed from: each subscription's status, product,
entitlements and when access ends. Dates are stored, not verdicts, so an expiry passing needs no
invalidation. The write path refreshes users' entries after commit (batched: one query and one
pipelined write for every user a transaction touched); a reader that misses fills it only if still absent.

Two writers must not leave the older view behind. Each refresh takes a version from a Redis counter
(INCR) BEFORE it reads the database, and its write is a compare-and-set (a Lua script) that only lands
if the entry's stored version is lower. A refresh that took a higher version started its read later,
so it saw every commit the other one saw (each PostgreSQL statement reads what was committed when it
started): whichever order the writes arrive in, the newest view stays. This replaces a per-user Redis
lock around read + write, with the same guarantee and without its two round trips per user.

Entries are signed, and one that does not check out is a miss. Whoever can write to Redis could
otherwise grant access by writing an entry (the check answer trusts it). Each entry is stored as
`v1:<written at>:<HMAC-SHA256>:<JSON>`, the MAC keyed from SECRET_KEY over the user id, the time and
the JSON: an entry cannot be forged, moved to another user, or replayed beyond CHECK_CACHE_TTL_SECONDS
(a writer to Redis can still replay a user's own entry within that window, or delete entries: the
database then answers). An entry that is unsigned, badly signed, too old, not JSON or of the wrong
shape is logged, dropped and read from the database: never a 500. Measured: see docs/security.md."""

import contextlib
import functools
import hmac
import json
import logging
import time
from datetime import datetime

import redis
from django.conf import settings

from accounts.models import Subscriber

from .entries import entries_by_subscriber
from .models import Subscription
from .redis_client import get_redis, hot_path_redis
from .statuses import Status

logger = logging.getLogger(__name__)

KEY = "billing:ent:{}"
# Own prefixes: no external id can make an entry key equal to a version key or to the counter.
VERSION_KEY = "billing:entver:{}"
VERSION_COUNTER = "billing:entver-counter"

# KEYS: entry, its version; ARGV: version, entry JSON, TTL. Writes only over an older version.
_SET_IF_NEWER = """
local current = tonumber(redis.call('GET', KEYS[2]) or '0')
if tonumber(ARGV[1]) <= current then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[3])
return 1
"""


def key_for(external_id: str) -> str:
    return KEY.format(external_id)


# --- Signed entries -----------------------------------------------------------------------------

FORMAT = "v1"


@functools.lru_cache(maxsize=4)
def _mac_key(secret_key: str) -> bytes:
    # Its own key, derived: a MAC of ours can never double as another use of SECRET_KEY.
    return hmac.digest(secret_key.encode(), b"billing.entitlement_cache.v1", "sha256")


def _mac(external_id: str, written_at: str, payload: str) -> str:
    message = f"{len(external_id)}:{external_id}\n{written_at}\n{payload}".encode()  # unambiguous
    return hmac.digest(_mac_key(settings.SECRET_KEY), message, "sha256").hex()


def encode(external_id: str, entries: list[dict]) -> str:
    """The stored form of a user's entries (see the module docstring)."""
    payload = json.dumps(entries)
    written_at = str(int(time.time()))
    return f"{FORMAT}:{written_at}:{_mac(external_id, written_at, payload)}:{payload}"


class Unreadable(ValueError):
    """A cached value that cannot be trusted or used: the database answers instead."""


def decode(external_id: str, raw: str) -> list[dict]:
    """The entries of a stored value, or Unreadable."""
    try:
        version, written_at, mac, payload = raw.split(":", 3)
        age = time.time() - int(written_at)
    except ValueError:
        raise Unreadable("not a signed entry") from None
    if version != FORMAT or not hmac.compare_digest(mac, _mac(external_id, written_at, payload)):
        raise Unreadable("bad signature")
    if age > settings.CHECK_CACHE_TTL_SECONDS:
        raise Unreadable(f"written {int(age)} s ago, beyond CHECK_CACHE_TTL_SECONDS")
    try:
        entries = json.loads(payload)
    except ValueError:
        raise Unreadable("not JSON") from None
    _check_shape(entries)
    return entries


_STATUSES = frozenset(s.value for s in Status)
_OPTIONAL_TEXT = ("provider", "product_id", "environment")
_OPTIONAL_TIMES = ("expires_at", "grace_until", "last_verified_at")


def _check_shape(entries) -> None:
    """What the check answer reads of each entry (billing/entries.py writes them)."""
    if not isinstance(entries, list):
        raise Unreadable("not a list")
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("status") not in _STATUSES:
            raise Unreadable("an entry without a known status")
        names = entry.get("entitlements")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise Unreadable("entitlements not a list of names")
        if not all(entry.get(k) is None or isinstance(entry[k], str) for k in _OPTIONAL_TEXT):
            raise Unreadable("a text field of another type")
        for k in _OPTIONAL_TIMES:
            value = entry.get(k)
            if value is not None:
                try:
                    datetime.fromisoformat(value)
                except (TypeError, ValueError):
                    raise Unreadable(f"{k} not a time") from None


# --- Reading and filling ------------------------------------------------------------------------

def get(external_id: str, *, client: redis.Redis | None = None) -> list[dict] | None:
    """The cached entries, or None on a miss, when Redis is absent, unreachable or being skipped
    (redis_client's breaker), or when the entry is unreadable (it is then dropped)."""
    if client is None:
        client = get_redis()
    if client is None:
        return None
    key = key_for(external_id)
    try:
        raw = client.get(key)
        if raw is None:
            return None
        entries = decode(external_id, raw)
    except (Unreadable, UnicodeDecodeError, redis.ResponseError) as exc:  # UTF-8 decoding; WRONGTYPE
        logger.warning("cached entitlements of user %r unreadable (%s): dropped, read from the database",
                       external_id, exc)
        with contextlib.suppress(redis.RedisError):
            client.delete(key)
        return None
    except redis.RedisError:
        return None
    return entries


def get_for_check(external_id: str) -> list[dict] | None:
    """get() on the check API's own single-connection client (redis_client.hot_path_redis)."""
    client = hot_path_redis()
    return None if client is None else get(external_id, client=client)


def fill(external_id: str, entries: list[dict]) -> None:
    """Reader path: store what was read from the database, unless a writer got there first."""
    client = get_redis()
    if client is None:
        return
    with contextlib.suppress(redis.RedisError):
        client.set(key_for(external_id), encode(external_id, entries), nx=True, ex=settings.CHECK_CACHE_TTL_SECONDS)


# Users whose refresh could not run in this process (Redis skipped or failed): refreshed by the next
# refresh that reaches Redis, so a short blip does not leave their old entry for the whole TTL.
_missed: set[int] = set()
_MISSED_MAX = 100_000  # beyond this the TTL bounds the staleness (logged)


def refresh_many(subscriber_ids: list[int]) -> None:
    """Writer path, after commit: recompute these users' entries (one query) and store them (one
    pipeline of compare-and-set writes, see the module docstring)."""
    client = get_redis()
    if client is None:
        if settings.REDIS_URL:  # configured but being skipped after a failure
            _remember_missed(subscriber_ids)
        return
    if _missed:
        subscriber_ids = [*subscriber_ids, *_take_missed()]
    if not subscriber_ids:
        return
    external_ids = dict(Subscriber.objects.filter(pk__in=subscriber_ids).values_list("pk", "external_id"))
    if not external_ids:
        return
    keys = [key_for(e) for e in external_ids.values()]
    try:
        version = client.incr(VERSION_COUNTER)  # before the read: see the module docstring
        entries = entries_by_subscriber(list(external_ids))
        pipe = client.pipeline(transaction=False)
        for subscriber_id, external_id in external_ids.items():
            # EVAL, not a registered script: redis-py adds a SCRIPT EXISTS round trip to every pipeline
            # holding one; Redis caches the compiled script by its hash anyway.
            pipe.eval(_SET_IF_NEWER, 2, key_for(external_id), VERSION_KEY.format(external_id), version,
                      encode(external_id, entries.get(subscriber_id, [])), settings.CHECK_CACHE_TTL_SECONDS)
        pipe.execute()
    except redis.RedisError as exc:
        # Could not refresh: drop the entries so no reader keeps a stale answer, and try again later.
        logger.warning("entitlement cache refresh failed for subscribers %s: %s", sorted(external_ids), exc)
        _remember_missed(external_ids)
        with contextlib.suppress(redis.RedisError):
            client.delete(*keys)


def _remember_missed(subscriber_ids) -> None:
    if len(_missed) >= _MISSED_MAX:
        logger.warning("entitlement cache: %d refreshes missed; the TTL bounds the rest", len(_missed))
        return
    _missed.update(subscriber_ids)


def _take_missed() -> list[int]:
    taken = list(_missed)
    _missed.difference_update(taken)
    return taken


def forget_products(product_ids: list[int]) -> int:
    """The catalogue changed (a product's entitlements, an entitlement renamed): drop the cached
    entries of every user holding these products, so the next check reads the new mapping."""
    client = get_redis()
    if client is None or not product_ids:
        return 0
    external_ids = (Subscription.objects.filter(product_id__in=product_ids, subscriber__isnull=False)
                    .values_list("subscriber__external_id", flat=True).distinct().iterator(chunk_size=2000))
    forgotten, batch = 0, []
    try:
        for external_id in external_ids:
            batch.append(key_for(external_id))
            if len(batch) == 1000:
                forgotten += client.delete(*batch)
                batch = []
        if batch:
            forgotten += client.delete(*batch)
    except redis.RedisError as exc:  # the TTL bounds how long an old mapping can be served
        logger.warning("could not drop cached entitlements after a catalogue change: %s", exc)
    return forgotten
