"""Our own budget of calls to each store's API, shared by every process (Redis), so that the stores'
quotas are never what stops a webhook from being processed.

Every call a store client makes (the functions decorated with `store_api` in
billing/providers/<store>/client.py: webhook re-reads, verification, re-polls, reconciliation, staff
actions) draws one call from its store's budget before it goes out:

- two windows per store: at most STORE_BUDGET_<STORE>_PER_MINUTE calls in any 60 s (a sliding window,
  one sorted-set member per call) and at most STORE_BUDGET_<STORE>_PER_DAY in any 24 hours (24 hourly
  buckets: any store's calendar day, e.g. Google's Pacific one, is such a window); 0 turns a window off;
- priorities, by the caller's context (`priority(...)`): webhook processing, staff actions and anything
  not marked ("urgent") may spend the whole budget; verification too, but within its own share
  (STORE_BUDGET_VERIFY_PERCENT: an app verifying in a loop cannot starve webhook processing); the beat
  re-poll only while more than STORE_BUDGET_REPOLL_RESERVE_PERCENT of both windows is left, the
  reconciliation only while more than STORE_BUDGET_RECONCILE_RESERVE_PERCENT is left;
- a store answering 429 (the client raises `StoreRateLimited`) pauses the background jobs (re-poll,
  reconciliation) of that store: a Redis key that expires after the store's Retry-After, or our
  backoff (STORE_BUDGET_PAUSE_SECONDS, doubled for each 429 in a row, at most
  STORE_BUDGET_PAUSE_MAX_SECONDS), whichever is longer. Urgent calls are not paused: their own retries
  (webhook backoff, the app's retry) handle a refusal.

A call over budget is refused before the store is asked (`QuotaExceeded`, a StoreUnavailable: webhooks
and re-polls retry later, verify answers 502) and is not counted. Without Redis the budget is not
enforced (logged), rather than stopping all calls. The check API never calls a store: untouched."""

import logging
import math
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import wraps

import redis
from django.conf import settings

from billing.providers.base import StoreRateLimited, StoreUnavailable
from billing.redis_client import get_redis
from operations import metrics

logger = logging.getLogger(__name__)

STORES = ("stripe", "apple", "google", "xsolla")

URGENT = "urgent"  # webhook processing, staff actions, anything not marked
VERIFY = "verify"  # an app's purchase verification: urgent, within its own share
REPOLL = "repoll"  # the beat re-poll
RECONCILE = "reconcile"  # the reconciliation walk
BACKGROUND = (REPOLL, RECONCILE)

_priority: ContextVar[str] = ContextVar("store_budget_priority", default=URGENT)

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
PREFIX = "store_budget:"

# KEYS: minute zset, day hash (hour → calls), verify zset, pause key.
# ARGV: now ms, member, minute ceiling, day ceiling, verify share (0: not a verify call), background (1/0),
# mode ("hit": count when allowed; "peek": only look).
# Answer {allowed, wait ms, reason}: reason 1 minute window, 2 day window, 3 verify share, 4 paused.
_SCRIPT = """
local now, member = tonumber(ARGV[1]), ARGV[2]
local minute_cap, day_cap, verify_cap = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
if ARGV[6] == '1' then
  local pause = redis.call('PTTL', KEYS[4])
  if pause > 0 then return {0, pause, 4} end
end
local function window_full(key, cap)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - 60000)
  local n = redis.call('ZCARD', key)
  if n < cap then return 0 end
  -- room opens when the entry that takes the count below the cap leaves the window
  local entry = redis.call('ZRANGE', key, n - cap, n - cap, 'WITHSCORES')
  return math.max(1, tonumber(entry[2]) + 60000 - now)
end
local wait = window_full(KEYS[1], minute_cap)
if wait > 0 then return {0, wait, 1} end
local hour = math.floor(now / 3600000)
local buckets = redis.call('HGETALL', KEYS[2])
local used, oldest = 0, hour
for i = 1, #buckets, 2 do
  local h = tonumber(buckets[i])
  if h <= hour - 24 then
    redis.call('HDEL', KEYS[2], buckets[i])
  else
    used = used + tonumber(buckets[i + 1])
    if h < oldest then oldest = h end
  end
end
if day_cap > 0 and used >= day_cap then return {0, math.max(1, (oldest + 24) * 3600000 - now), 2} end
if verify_cap > 0 then
  wait = window_full(KEYS[3], verify_cap)
  if wait > 0 then return {0, wait, 3} end
end
if ARGV[7] == 'hit' then
  redis.call('ZADD', KEYS[1], now, member)
  redis.call('PEXPIRE', KEYS[1], 60000)
  redis.call('HINCRBY', KEYS[2], tostring(hour), 1)
  redis.call('PEXPIRE', KEYS[2], 25 * 3600000)
  if verify_cap > 0 then
    redis.call('ZADD', KEYS[3], now, member)
    redis.call('PEXPIRE', KEYS[3], 60000)
  end
end
return {1, 0, 0}
"""
# Effectively unlimited, for a window that is off (0) but must still be passed as a number.
_NO_CAP = 2**53

_REASONS = {1: "minute", 2: "day", 3: "verify", 4: "paused"}


class QuotaExceeded(StoreUnavailable):
    """Our own budget for this store refuses the call (not counted, the store not asked). `reason`:
    "minute", "day", "verify" (the verify share) or "paused" (the store answered 429 lately);
    `retry_after`: seconds until a call of this priority may fit again."""

    def __init__(self, message: str, *, store: str, reason: str, retry_after: float):
        self.store = store
        self.reason = reason
        self.retry_after = retry_after
        super().__init__(message)


@dataclass(frozen=True)
class Budget:
    per_minute: int  # 0: no minute window
    per_day: int  # 0: no day window


def budget(store: str) -> Budget:
    """The store's limits, from STORE_BUDGET_<STORE>_PER_MINUTE / _PER_DAY (read at each call: tests and
    operators change them without a restart of this module)."""
    name = store.upper()
    return Budget(int(getattr(settings, f"STORE_BUDGET_{name}_PER_MINUTE", 0) or 0),
                  int(getattr(settings, f"STORE_BUDGET_{name}_PER_DAY", 0) or 0))


def share_percent(which: str) -> int:
    """The share of each window a priority may fill: 100 for urgent calls, less for the background."""
    if which == REPOLL:
        return 100 - settings.STORE_BUDGET_REPOLL_RESERVE_PERCENT
    if which == RECONCILE:
        return 100 - settings.STORE_BUDGET_RECONCILE_RESERVE_PERCENT
    return 100


def ceiling(limit: int, which: str) -> int:
    """How many calls of the window a priority may see spent before it is refused (0: window off)."""
    if not limit:
        return 0
    return max(1, limit * share_percent(which) // 100)


def verify_share(limit: int) -> int:
    return max(1, limit * settings.STORE_BUDGET_VERIFY_PERCENT // 100) if limit else 0


def current_priority() -> str:
    return _priority.get()


@contextmanager
def priority(which: str) -> Iterator[None]:
    """Store calls made in the block draw with this priority (URGENT, VERIFY, REPOLL, RECONCILE)."""
    token = _priority.set(which)
    try:
        yield
    finally:
        _priority.reset(token)


def _keys(store: str) -> list[str]:
    return [f"{PREFIX}{store}:minute", f"{PREFIX}{store}:day", f"{PREFIX}{store}:verify", f"{PREFIX}{store}:paused"]


def _run(store: str, which: str, mode: str) -> tuple[bool, float, str]:
    limits = budget(store)
    client = get_redis()
    if client is None:
        return True, 0.0, ""
    minute_cap = ceiling(limits.per_minute, which) or _NO_CAP
    day_cap = ceiling(limits.per_day, which)
    verify_cap = verify_share(limits.per_minute) if which == VERIFY else 0
    now_ms = int(time.time() * 1000)
    try:
        allowed, wait_ms, reason = client.register_script(_SCRIPT)(
            keys=_keys(store),
            args=[now_ms, f"{now_ms}:{uuid.uuid4().hex}", minute_cap, day_cap, verify_cap,
                  1 if which in BACKGROUND else 0, mode])
    except redis.RedisError as exc:
        logger.warning("%s API budget counters unavailable, not enforced: %s", store, exc)
        return True, 0.0, ""
    return bool(allowed), int(wait_ms) / 1000, _REASONS.get(int(reason), "")


def take(store: str) -> None:
    """Draw one call from the store's budget at the caller's priority, or raise QuotaExceeded."""
    which = _priority.get()
    allowed, wait, reason = _run(store, which, "hit")
    if allowed:
        return
    limits = budget(store)
    text = {
        "minute": f"the {which} share of {limits.per_minute} calls/minute is spent",
        "day": f"the {which} share of {limits.per_day} calls/day is spent",
        "verify": f"the share of {verify_share(limits.per_minute)} calls/minute for verifying purchases is spent",
        "paused": "background calls are paused after the store answered 429",
    }[reason]
    raise QuotaExceeded(f"{store} API budget: {text}; retry in {math.ceil(wait)} s", store=store, reason=reason,
                        retry_after=wait)


def room(store: str, which: str) -> tuple[bool, float, str]:
    """Whether a call of this priority would be allowed now (nothing counted): (allowed, wait s, reason)."""
    return _run(store, which, "peek")


# --- 429: pausing the background jobs ----------------------------------------------------------

def pause(store: str, retry_after: float | None = None) -> float:
    """The store answered 429: pause its background calls. Returns the pause in seconds: the store's
    Retry-After or our backoff (doubled per 429 in a row), whichever is longer."""
    client = get_redis()
    if client is None:
        return 0.0
    base, longest = settings.STORE_BUDGET_PAUSE_SECONDS, settings.STORE_BUDGET_PAUSE_MAX_SECONDS
    key_pause, key_strikes = _keys(store)[3], f"{PREFIX}{store}:strikes"
    try:
        strikes = client.incr(key_strikes)
        client.expire(key_strikes, 2 * longest)  # a quiet spell of twice the longest pause: backoff starts over
        seconds = min(longest, max(float(retry_after or 0), base * 2 ** (int(strikes) - 1)))
        client.set(key_pause, str(time.time() + seconds), px=max(1, int(seconds * 1000)))
    except redis.RedisError as exc:
        logger.warning("%s answered 429; the pause could not be recorded: %s", store, exc)
        return 0.0
    logger.warning("%s answered 429 (Retry-After %s): background calls paused for %.0f s", store, retry_after,
                   seconds)
    return seconds


def paused_until(store: str) -> datetime | None:
    client = get_redis()
    if client is None:
        return None
    value = client.get(_keys(store)[3])
    return datetime.fromtimestamp(float(value), tz=UTC) if value else None


# --- what is spent: /health, the admin, /metrics ---------------------------------------------------

def usage(stores=STORES, *, limits_only: bool = False) -> dict[str, dict]:
    """Per store: {"minute": {"used", "limit"}, "day": {"used", "limit"}, "paused_until": ISO or None}.
    One pipelined round trip for all stores. Raises redis errors (/metrics reports them); "used" is None
    without Redis (or with `limits_only`)."""
    client = get_redis()
    now_ms = int(time.time() * 1000)
    hour = now_ms // HOUR_MS
    answers: list = []
    if client is not None and not limits_only:
        pipe = client.pipeline(transaction=False)
        for store in stores:
            minute, day, _, paused = _keys(store)
            pipe.zcount(minute, f"({now_ms - MINUTE_MS}", "+inf")
            pipe.hgetall(day)
            pipe.get(paused)
        answers = pipe.execute()
    result = {}
    for i, store in enumerate(stores):
        limits = budget(store)
        minute_used = day_used = until = None
        if answers:
            minute_used = int(answers[3 * i])
            day_used = sum(int(n) for h, n in answers[3 * i + 1].items() if int(h) > hour - 24)
            raw = answers[3 * i + 2]
            until = datetime.fromtimestamp(float(raw), tz=UTC).isoformat() if raw else None
        result[store] = {"minute": {"used": minute_used, "limit": limits.per_minute},
                         "day": {"used": day_used, "limit": limits.per_day}, "paused_until": until}
    return result


# --- the hook every store call goes through ------------------------------------------------------

def store_api(store: str):
    """Decorator of a store client's call (`<entity>_<action>`): counted and timed
    (operations.metrics.store_api), drawn from the store's budget before it goes out, and a 429 from
    the store pauses the store's background jobs. One decorator per call, so a new call is budgeted by
    being declared like the others."""
    def decorate(function):
        @wraps(function)
        def call(*args, **kwargs):
            take(store)
            try:
                return function(*args, **kwargs)
            except StoreRateLimited as exc:
                pause(store, exc.retry_after)
                raise
        return metrics.store_api(store)(call)
    return decorate


def usage_or_limits(stores=STORES) -> dict[str, dict]:
    """usage(), or the limits alone ("used" None) when Redis fails: for /health and the admin."""
    try:
        return usage(stores)
    except redis.RedisError as exc:
        logger.warning("store budgets unreadable: %s", exc)
        return usage(stores, limits_only=True)
