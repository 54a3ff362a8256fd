"""Failed authentication per client address: a caller outside the trusted networks whose requests to
/api/ failed authentication (401) RATE_LIMIT_AUTH_FAILURES_PER_ADDRESS times is answered 429 for a while,
before its credentials are looked at (no key guessing, no database query per guess).

The failures are counted in Redis (one round trip per failure, none per success). A process refuses an
address before authentication once it has seen that address's counter full (it remembers until the
window frees up): trusted callers and successful calls pay nothing, and an address over the limit gets
at most one more answer per process. An expired end-user token (`token_expired`) is not a failure:
apps refresh it, and thousands of users behind one carrier address must not lock each other out."""

import json
import threading
import time

from django.core.signals import setting_changed
from django.dispatch import receiver

from accounts.networks import is_trusted_request
from billing import ratelimit
from config.api_errors import rate_limited_response

from .throttles import client_address

PATH_PREFIX = "/api/"
NOT_FAILURES = {"token_expired"}
_MAX_REMEMBERED = 10_000

# address -> refused until (time.time()); per process.
_refused: dict[str, float] = {}
_lock = threading.Lock()


def forget_refused_addresses() -> None:
    with _lock:
        _refused.clear()


@receiver(setting_changed)
def _reset_on_setting_change(setting, **kwargs):
    if setting in ("RATE_LIMIT_AUTH_FAILURES_PER_ADDRESS", "CHECK_API_TRUSTED_NETWORKS", "REDIS_URL"):
        forget_refused_addresses()


def refusing_any() -> bool:
    """Whether this process refuses any address now (the check API's fast path then leaves callers
    from outside the trusted networks to this middleware)."""
    return bool(_refused)


def _error_code(response) -> str | None:
    try:
        return json.loads(response.content)["error"]["code"]
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def _refused_for(address: str) -> int:
    until = _refused.get(address)
    if until is None:
        return 0
    remaining = until - time.time()
    if remaining > 0:
        return int(remaining) + 1
    with _lock:
        _refused.pop(address, None)
    return 0


def _failed(address: str) -> None:
    verdict = ratelimit.add(ratelimit.limit("auth_failures_per_address", "RATE_LIMIT_AUTH_FAILURES_PER_ADDRESS",
                                            address))
    if not verdict.allowed:
        with _lock:
            if len(_refused) >= _MAX_REMEMBERED:  # bounded: many addresses cannot grow it
                _refused.clear()
            _refused[address] = time.time() + verdict.retry_after


class FailedAuthenticationLimitMiddleware:
    """First in MIDDLEWARE (before the check API's fast path): for trusted addresses it is one cached
    lookup and nothing else."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not request.path_info.startswith(PATH_PREFIX):
            return self.get_response(request)
        if is_trusted_request(request.META):
            return self.get_response(request)
        address = client_address(request) or ""
        wait = _refused_for(address)
        if wait:
            return rate_limited_response(
                f"Too many failed authentication attempts from this address. Retry in {wait} s.",
                retry_after=wait, limit="auth_failures_per_address")
        response = self.get_response(request)
        if response.status_code == 401 and _error_code(response) not in NOT_FAILURES:
            _failed(address)
        return response
