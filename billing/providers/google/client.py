"""The ONE place the Play Developer API is called: service-account credentials (google-auth; the
library refreshes the access token), the discovery document shipped inside google-api-python-client
(no network for it), the timeout (GOOGLE_PLAY_API_TIMEOUT_SECONDS), the shared per-minute quota, and
errors mapped to ours (404/410: `common.SubscriptionNotFound`; our own budget spent: `QuotaExceeded`).
Calls made inside `verification_budget()` (an app's verify) also spend a share of their own, capped at
GOOGLE_PLAY_VERIFY_QUOTA_PERCENT of the budget, so verifies can never spend what webhook processing,
re-polls and acknowledgements need.

The service object (and its httplib2 connection) is not thread-safe: a new one is built per call
(about 15 ms); the credentials are shared per process so the access token is reused."""

import contextvars
import json
import logging
import os
import threading
import time
import uuid
from contextlib import contextmanager

import google_auth_httplib2
import httplib2
import redis
from django.conf import settings
from google.auth import exceptions as google_exceptions
from google.oauth2 import service_account
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError

from billing.providers.base import NotConfigured, PermanentError, StoreUnavailable
from billing.providers.common import SubscriptionNotFound
from billing.redis_client import get_redis
from operations.metrics import store_api

logger = logging.getLogger(__name__)

SCOPES = ["https://www.googleapis.com/auth/androidpublisher"]
DEFAULT_TIMEOUT_SECONDS = 20.0
QUOTA_KEY = "google:play:quota"
VERIFY_QUOTA_KEY = "google:play:quota:verify"
QUOTA_WINDOW_MS = 60_000
# Sliding windows (one sorted-set member per call in the last minute), so "per minute" holds over any
# 60 s, not per calendar minute. KEYS[1] is the whole budget (ARGV[3]); KEYS[2], for verify calls, their
# share (ARGV[5]): a verify call must fit in both and counts in both. A call over budget is not recorded:
# a caller retrying while refused does not keep the window full. Atomic: every process shares the keys.
_QUOTA_SCRIPT = """
local now, window = tonumber(ARGV[1]), tonumber(ARGV[2])
for i = 1, #KEYS do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - window)
end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  return 0
end
if #KEYS > 1 and redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[5]) then
  return -1
end
for i = 1, #KEYS do
  redis.call('ZADD', KEYS[i], ARGV[1], ARGV[4])
  redis.call('PEXPIRE', KEYS[i], ARGV[2])
end
return 1
"""
DEFAULT_VERIFY_QUOTA_PERCENT = 25
_verifying = contextvars.ContextVar("google_play_verifying", default=False)

_lock = threading.Lock()
_credentials: dict[tuple, service_account.Credentials] = {}


class QuotaExceeded(StoreUnavailable):
    """Our own per-minute budget (GOOGLE_PLAY_QUOTA_PER_MINUTE) is spent: try again within a minute."""


def _credentials_for(path: str) -> service_account.Credentials:
    try:
        stamp = os.stat(path).st_mtime_ns
    except OSError as exc:
        raise NotConfigured("google", [f"GOOGLE_SERVICE_ACCOUNT_FILE (unreadable: {exc})"]) from exc
    key = (path, stamp)
    with _lock:
        creds = _credentials.get(key)
        if creds is None:
            try:
                with open(path) as fh:
                    info = json.load(fh)
                creds = service_account.Credentials.from_service_account_info(info, scopes=SCOPES)
            except (ValueError, KeyError) as exc:
                missing = f"GOOGLE_SERVICE_ACCOUNT_FILE (not a service-account key: {exc})"
                raise NotConfigured("google", [missing]) from exc
            _credentials.clear()
            _credentials[key] = creds
    return creds


def timeout_seconds() -> float:
    """How long one Play API call may take (connect, then each read) before it counts as unreachable:
    a transient failure, retried, rather than a worker stuck on one webhook event."""
    return float(getattr(settings, "GOOGLE_PLAY_API_TIMEOUT_SECONDS", DEFAULT_TIMEOUT_SECONDS))


def service():
    """A fresh androidpublisher v3 service object for this call."""
    path = settings.GOOGLE_SERVICE_ACCOUNT_FILE
    if not path:
        raise NotConfigured("google", ["GOOGLE_SERVICE_ACCOUNT_FILE"])
    http = google_auth_httplib2.AuthorizedHttp(_credentials_for(path), http=httplib2.Http(timeout=timeout_seconds()))
    options = {"api_endpoint": settings.GOOGLE_PLAY_API_ENDPOINT} if settings.GOOGLE_PLAY_API_ENDPOINT else None
    return build("androidpublisher", "v3", http=http, static_discovery=True, cache_discovery=False,
                 client_options=options)


@contextmanager
def verification_budget():
    """Play API calls made inside this block (an app verifying a purchase) spend the verify share."""
    token = _verifying.set(True)
    try:
        yield
    finally:
        _verifying.reset(token)


def verify_quota_per_minute(limit: int) -> int:
    """The verify share of a budget of `limit` calls a minute (at least one call)."""
    percent = getattr(settings, "GOOGLE_PLAY_VERIFY_QUOTA_PERCENT", DEFAULT_VERIFY_QUOTA_PERCENT)
    return max(1, limit * percent // 100)


def take_quota() -> None:
    """One call against the budget shared by every process: at most GOOGLE_PLAY_QUOTA_PER_MINUTE calls
    in any 60 seconds (a Redis sliding window); verify calls at most their share of it besides. Over
    budget → QuotaExceeded (transient: webhooks and re-polls retry later, verify answers 502). Without
    Redis the budget is not enforced (logged), rather than stopping all calls."""
    limit = settings.GOOGLE_PLAY_QUOTA_PER_MINUTE
    client = get_redis()
    if not limit or client is None:
        return
    keys, share = [QUOTA_KEY], verify_quota_per_minute(limit)
    if _verifying.get():
        keys.append(VERIFY_QUOTA_KEY)
    now_ms = int(time.time() * 1000)
    try:
        allowed = client.register_script(_QUOTA_SCRIPT)(
            keys=keys, args=[now_ms, QUOTA_WINDOW_MS, limit, f"{now_ms}:{uuid.uuid4().hex}", share])
    except redis.RedisError as exc:
        logger.warning("Google Play quota counter unavailable, not enforced: %s", exc)
        return
    if allowed == 0:
        raise QuotaExceeded(f"Google Play API budget of {limit} calls/minute is spent; retry within a minute")
    if allowed == -1:
        raise QuotaExceeded(f"Google Play API budget for verifying purchases ({share} calls/minute) is spent; "
                            "retry within a minute")


def quota_used() -> dict[str, tuple[int, int]] | None:
    """The budget spent in the last 60 s, for /metrics: {"all": (calls, limit), "verify": (calls, share)};
    None without a budget or Redis (a Redis error propagates: the scrape reports it)."""
    limit = settings.GOOGLE_PLAY_QUOTA_PER_MINUTE
    client = get_redis()
    if not limit or client is None:
        return None
    since = int(time.time() * 1000) - QUOTA_WINDOW_MS
    pipe = client.pipeline(transaction=False)
    for key in (QUOTA_KEY, VERIFY_QUOTA_KEY):
        pipe.zcount(key, f"({since}", "+inf")
    used, verify_used = pipe.execute()
    return {"all": (used, limit), "verify": (verify_used, verify_quota_per_minute(limit))}


def execute(request, what: str):
    """Run a prepared API request: quota first, then the call, errors mapped."""
    take_quota()
    try:
        return request.execute(num_retries=0)
    except HttpError as exc:
        status = exc.status_code or getattr(exc.resp, "status", 0)
        reason = exc.reason or str(exc)
        if status in (404, 410):  # the token is unknown to Google, or too old (60 days after expiry)
            raise SubscriptionNotFound(f"{what}: Google answered {status} ({reason})", status=status) from exc
        if status in (429,) or status >= 500:
            raise StoreUnavailable(f"{what}: Google answered {status} ({reason})") from exc
        if status in (401, 403):
            # Our service account lacks access: fixable by an operator, so retried meanwhile.
            raise StoreUnavailable(f"{what}: Google refused our service account ({status}: {reason}); check its "
                                   "permissions in the Play Console (docs/providers/google.md)") from exc
        raise PermanentError(f"{what}: Google answered {status} ({reason})") from exc
    except (OSError, httplib2.HttpLib2Error) as exc:  # timeouts, refused connections, TLS
        raise StoreUnavailable(f"{what}: Google Play API unreachable ({type(exc).__name__}: {exc})") from exc
    except google_exceptions.TransportError as exc:
        raise StoreUnavailable(f"{what}: token endpoint unreachable ({exc})") from exc
    except google_exceptions.RefreshError as exc:
        raise StoreUnavailable(f"{what}: the service account could not get an access token ({exc})") from exc


def _package() -> str:
    if not settings.GOOGLE_PLAY_PACKAGE_NAME:
        raise NotConfigured("google", ["GOOGLE_PLAY_PACKAGE_NAME"])
    return settings.GOOGLE_PLAY_PACKAGE_NAME


# --- the calls we make --------------------------------------------------------------------------

@store_api("google")
def subscription_get(token: str) -> dict:
    return execute(service().purchases().subscriptionsv2().get(packageName=_package(), token=token),
                   "subscriptionsv2.get")


@store_api("google")
def subscription_acknowledge(token: str, product_id: str) -> None:
    # subscriptionId is still a required path parameter in this client (PROVIDERS.md §2.4)
    execute(service().purchases().subscriptions().acknowledge(packageName=_package(), subscriptionId=product_id,
                                                               token=token, body={}),
            "subscriptions.acknowledge")


@store_api("google")
def subscription_cancel(token: str) -> None:
    body = {"cancellationContext": {"cancellationType": "USER_REQUESTED_STOP_RENEWALS"}}
    execute(service().purchases().subscriptionsv2().cancel(packageName=_package(), token=token, body=body),
            "subscriptionsv2.cancel")


@store_api("google")
def subscription_revoke(token: str, *, refund: str) -> None:
    """refund: "full" or "prorated"."""
    context = {"full": {"fullRefund": {}}, "prorated": {"proratedRefund": {}}}[refund]
    execute(service().purchases().subscriptionsv2().revoke(packageName=_package(), token=token,
                                                           body={"revocationContext": context}),
            "subscriptionsv2.revoke")


@store_api("google")
def subscription_defer(token: str, *, seconds: int, etag: str) -> dict:
    body = {"deferralContext": {"deferDuration": f"{int(seconds)}s", "etag": etag, "validateOnly": False}}
    return execute(service().purchases().subscriptionsv2().defer(packageName=_package(), token=token, body=body),
                   "subscriptionsv2.defer")


@store_api("google")
def voided_purchases_list(*, start_time_ms: int, page_token: str | None = None) -> dict:
    """One page of voidedpurchases.list: the in-app and subscription orders (type=1) Google saw voided
    since `start_time_ms` (at most 30 days back), oldest first, and `tokenPagination.nextPageToken`.
    Needs the service account's "View financial data" permission in the Play Console."""
    params = {"packageName": _package(), "type": 1, "startTime": str(int(start_time_ms)), "maxResults": 1000}
    if page_token:
        params["token"] = page_token
    return execute(service().purchases().voidedpurchases().list(**params), "voidedpurchases.list")
