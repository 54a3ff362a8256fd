"""Per-user cache of what the check answer is computed from: each subscription's status, product,
entitlements and when access ends. Dates are stored, not verdicts, so an expiry passing needs no
invalidation. The write path refreshes a user's entry after commit, under a short per-user lock so
two writers cannot leave the older view behind; a reader that misses fills it only if still absent."""

import contextlib
import json
import logging

import redis
from django.conf import settings

from .redis_client import get_redis

logger = logging.getLogger(__name__)

KEY = "billing:ent:{}"


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


def refresh(subscriber_id: int) -> None:
    """Writer path, after commit: recompute a user's entries from the database and store them."""
    from accounts.models import Subscriber

    from .selectors import subscriber_entries  # selectors read through this module

    client = get_redis()
    if client is None:
        return
    external_id = Subscriber.objects.filter(pk=subscriber_id).values_list("external_id", flat=True).first()
    if external_id is None:
        return
    key = key_for(external_id)
    try:
        with client.lock(f"{key}:lock", timeout=5, blocking_timeout=5):
            client.set(key, json.dumps(subscriber_entries(subscriber_id)), ex=settings.CHECK_CACHE_TTL_SECONDS)
    except redis.RedisError as exc:
        # Could not refresh: drop the entry so no reader keeps a stale answer (the TTL bounds the rest).
        logger.warning("entitlement cache refresh failed for subscriber %s: %s", subscriber_id, exc)
        with contextlib.suppress(redis.RedisError):
            client.delete(key)


def forget_products(product_ids: list[int]) -> int:
    """The catalogue changed (a product's entitlements, an entitlement renamed): drop the cached
    entries of every user holding these products, so the next check reads the new mapping."""
    from .models import Subscription

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
