"""Per-user cache of what the check answer is computed from: each subscription's status, product,
entitlements and when access ends. Dates are stored, not verdicts, so an expiry passing needs no
invalidation. The write path refreshes users' entries after commit (batched: one query and one
pipelined write for every user a transaction touched); a reader that misses fills it only if still absent.

Two writers must not leave the older view behind. Each refresh takes a version from a Redis counter
(INCR) BEFORE it reads the database, and its write is a compare-and-set (a Lua script) that only lands
if the entry's stored version is lower. A refresh that took a higher version started its read later,
so it saw every commit the other one saw (each PostgreSQL statement reads what was committed when it
started): whichever order the writes arrive in, the newest view stays. This replaces a per-user Redis
lock around read + write, with the same guarantee and without its two round trips per user."""

import contextlib
import json
import logging

import redis
from django.conf import settings

from accounts.models import Subscriber

from .entries import entries_by_subscriber
from .models import Subscription
from .redis_client import get_redis

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


def get(external_id: str) -> list[dict] | None:
    """The cached entries, or None on a miss or when Redis is absent/unreachable."""
    client = get_redis()
    if client is None:
        return None
    try:
        raw = client.get(key_for(external_id))
    except redis.RedisError:
        return None
    return None if raw is None else json.loads(raw)


def fill(external_id: str, entries: list[dict]) -> None:
    """Reader path: store what was read from the database, unless a writer got there first."""
    client = get_redis()
    if client is None:
        return
    with contextlib.suppress(redis.RedisError):
        client.set(key_for(external_id), json.dumps(entries), nx=True, ex=settings.CHECK_CACHE_TTL_SECONDS)


def refresh_many(subscriber_ids: list[int]) -> None:
    """Writer path, after commit: recompute these users' entries (one query) and store them (one
    pipeline of compare-and-set writes, see the module docstring)."""
    client = get_redis()
    if client is None or not subscriber_ids:
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
                      json.dumps(entries.get(subscriber_id, [])), settings.CHECK_CACHE_TTL_SECONDS)
        pipe.execute()
    except redis.RedisError as exc:
        # Could not refresh: drop the entries so no reader keeps a stale answer (the TTL bounds the rest).
        logger.warning("entitlement cache refresh failed for subscribers %s: %s", sorted(external_ids), exc)
        with contextlib.suppress(redis.RedisError):
            client.delete(*keys)


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
