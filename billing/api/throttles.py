"""The API's rate limits (docs/security.md "Rate limits"): which requests count against which
counter (billing/ratelimit.py, in Redis), and the 429 with Retry-After they answer.

- verify: per end user and per API key (`VerifyThrottle`), and its own share of the store budget
  (`verification_budget`);
- Stripe subscription, Checkout and SetupIntent creation: a few payment declines per user, then 429
  for that user before Stripe is asked again (`payment_declines`): no card-testing oracle;
- failed authentication per client address outside the trusted networks (`auth_failures.py`)."""

import logging
from contextlib import contextmanager

from rest_framework.throttling import BaseThrottle

from accounts import networks
from accounts.principals import Principal
from billing import ratelimit, store_budgets
from billing.providers.base import PaymentDeclined
from config.api_errors import RateLimited

logger = logging.getLogger(__name__)


def client_address(request) -> str | None:
    """The address the limits (and django-axes, AXES_CLIENT_IP_CALLABLE) count a caller by: the client a
    trusted proxy reports (accounts.networks), else the socket's peer (forged proxy headers cannot move a
    caller to a fresh counter); None when there is none (axes records logins without a request, e.g. a
    test's force_login)."""
    meta = getattr(request, "META", None) or {}
    return networks.client_address(meta) or meta.get("REMOTE_ADDR") or None


def refuse(verdict: ratelimit.Verdict, message: str) -> None:
    if not verdict.allowed:
        raise RateLimited(f"{message} Retry in {verdict.retry_after} s.", retry_after=verdict.retry_after,
                          limit=verdict.limit.name)


# --- verify -----------------------------------------------------------------------------------

def _verified_user(request, principal: Principal) -> str | None:
    """The user a verify is for: the end user's own id, or the `user_id` a service names in the body
    (read before validation; the view refuses a body without one)."""
    if principal.is_end_user:
        return principal.user_id
    data = request.data
    given = data.get("user_id") if isinstance(data, dict) else None
    return None if given in (None, "") or isinstance(given, (dict, list)) else str(given)


class VerifyThrottle(BaseThrottle):
    """At most RATE_LIMIT_VERIFY_PER_USER verifies per user and RATE_LIMIT_VERIFY_PER_API_KEY per API
    key, checked and counted in one Redis round trip. A verify costs a store API call: the limits keep one
    user, or one leaked key, from spending the budget everybody shares."""

    def allow_request(self, request, view) -> bool:
        principal = request.user
        if not isinstance(principal, Principal):
            return True
        user_id = _verified_user(request, principal)
        limits = [ratelimit.limit("verify_per_user", "RATE_LIMIT_VERIFY_PER_USER", user_id)
                  if user_id is not None else None]
        if principal.api_key_id is not None:
            limits.append(ratelimit.limit("verify_per_api_key", "RATE_LIMIT_VERIFY_PER_API_KEY",
                                          principal.api_key_id))
        verdict = ratelimit.hit(*limits)
        what = "this API key" if verdict.limit and verdict.limit.name == "verify_per_api_key" else "this user"
        refuse(verdict, f"Too many purchase verifications for {what}.")
        return True


@contextmanager
def verification_budget():
    """Store API calls made in the block draw from the verify share of the store's budget
    (STORE_BUDGET_VERIFY_PERCENT, billing/store_budgets.py), never the part webhook processing needs."""
    with store_budgets.priority(store_budgets.VERIFY):
        yield


# --- Stripe: declines -------------------------------------------------------------------------

def _declines(user_id: str) -> ratelimit.Limit | None:
    return ratelimit.limit("payment_declines_per_user", "RATE_LIMIT_PAYMENT_DECLINES_PER_USER", user_id)


@contextmanager
def payment_declines(user_id: str):
    """Refuse (429) a user whose payments were declined RATE_LIMIT_PAYMENT_DECLINES_PER_USER times, before
    the store is asked; count a decline (the adapter's PaymentDeclined) raised in the block. Card testers
    try card after card: after a few declines the endpoint stops answering which cards work."""
    refuse(ratelimit.peek(_declines(user_id)),
           "Too many declined payments for this user; use another payment method later.")
    try:
        yield
    except PaymentDeclined:
        if not ratelimit.add(_declines(user_id)).allowed:
            logger.warning("payment attempts of user %s refused for a while: declines limit reached", user_id)
        raise
