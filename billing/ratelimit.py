"""Rate-limit counters in Redis, shared by every process: sliding windows ("at most N in any W
seconds", one sorted-set member per counted event), checked and counted in ONE round trip (a Lua
script) however many counters a request touches.

Fail open: without Redis (REDIS_URL empty, or `get_redis()` None while it is unavailable) or when a
call fails, nothing is counted and everything is allowed; a limit must never take the service down
with Redis. The HTTP side (429, Retry-After, which requests count) is billing/api/throttles.py."""

import hashlib
import logging
import math
import time
import uuid
from dataclasses import dataclass
from functools import lru_cache

import redis
from django.conf import settings

from billing.redis_client import get_redis
from config.rates import Rate, parse_rate

logger = logging.getLogger(__name__)

PREFIX = "ratelimit:"

# KEYS: the counters. ARGV: now (ms), mode, member, then (limit, window ms) per key.
# mode "hit": refuse when any counter is full, else count in all. "peek": only look. "add": count in all,
# then report whether any is now full (the caller refuses the NEXT attempt).
# Answer {allowed, wait ms, 1-based index of the counter that refused (0: none)}. Refused hits are not
# counted: a client retrying while refused does not keep its window full.
_SCRIPT = """
local now, mode, member = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local function over(i)
  local key, limit, window = KEYS[i], tonumber(ARGV[2 + 2 * i]), tonumber(ARGV[3 + 2 * i])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  if redis.call('ZCARD', key) < limit then return 0 end
  -- room opens when the entry `limit` places from the newest leaves the window
  local entry = redis.call('ZRANGE', key, -limit, -limit, 'WITHSCORES')
  return math.max(1, tonumber(entry[2]) + window - now)
end
local function count()
  for i = 1, #KEYS do
    redis.call('ZADD', KEYS[i], now, member)
    redis.call('PEXPIRE', KEYS[i], tonumber(ARGV[3 + 2 * i]))
  end
end
if mode == 'add' then count() end
local wait, which = 0, 0
for i = 1, #KEYS do
  local w = over(i)
  if w > wait then wait, which = w, i end
end
if which > 0 then return {0, wait, which} end
if mode == 'hit' then count() end
return {1, 0, 0}
"""


@dataclass(frozen=True)
class Limit:
    """One counter: its name in answers and docs (`verify_per_user`), its Redis key, its rate."""

    name: str
    key: str
    rate: Rate


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after: int = 0  # whole seconds, at least 1 when refused
    limit: Limit | None = None  # the counter that refused


ALLOWED = Verdict(True)


@lru_cache(maxsize=64)
def _rate(text: str, name: str) -> Rate | None:
    return parse_rate(text, name=name)


def configured_rate(setting: str) -> Rate | None:
    """The rate of a RATE_LIMIT_* setting (None: that limit is off)."""
    return _rate(getattr(settings, setting), setting)


def ident(value) -> str:
    """A user id, key id or address as a key part: itself when short and printable (operators can find
    and delete it), else a digest (a 1 MB user id must not become a 1 MB key)."""
    value = str(value)
    if len(value) <= 100 and value.isprintable() and " " not in value:
        return value
    return "sha256:" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def limit(name: str, setting: str, *parts) -> Limit | None:
    """The counter `name` for these key parts, at the rate of `setting`; None when that limit is off."""
    rate = configured_rate(setting)
    if rate is None:
        return None
    return Limit(name, PREFIX + ":".join([name, *(ident(p) for p in parts)]), rate)


def _run(mode: str, limits: list[Limit | None]) -> Verdict:
    limits = [lim for lim in limits if lim is not None]
    client = get_redis()
    if not limits or client is None:
        return ALLOWED
    args: list = [int(time.time() * 1000), mode, uuid.uuid4().hex]
    for lim in limits:
        args += [lim.rate.limit, lim.rate.window_seconds * 1000]
    try:
        allowed, wait_ms, which = client.register_script(_SCRIPT)(keys=[lim.key for lim in limits], args=args)
    except redis.RedisError as exc:
        logger.warning("rate-limit counters unavailable, not enforced: %s", exc)
        return ALLOWED
    if allowed:
        return ALLOWED
    return Verdict(False, max(1, math.ceil(int(wait_ms) / 1000)), limits[int(which) - 1])


def hit(*limits: Limit | None) -> Verdict:
    """Count one attempt against every limit, unless one of them is full (then nothing is counted)."""
    return _run("hit", list(limits))


def peek(*limits: Limit | None) -> Verdict:
    """Whether an attempt would be refused now, counting nothing."""
    return _run("peek", list(limits))


def add(*limits: Limit | None) -> Verdict:
    """Count one event (a failure, a decline) in every limit; refused when one is now full."""
    return _run("add", list(limits))
