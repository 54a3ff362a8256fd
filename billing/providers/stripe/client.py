"""The one place the stripe library is configured: key, API base, pinned API version, retries, timeouts.

Everything in this package talks to Stripe through `get_client()`. dj-stripe uses the library's
module-level settings instead, so `configure_library()` sets those from the same values."""

import threading
from contextlib import contextmanager

import stripe
from django.conf import settings

from billing.providers.base import NotConfigured, StoreUnavailable

# The webhook payload shape follows the endpoint's API version, the responses follow this one:
# pin the dashboard endpoint to the same value (docs/providers/stripe.md).
API_VERSION = "2026-08-26.dahlia"
DEFAULT_API_BASE = "https://api.stripe.com"
MAX_NETWORK_RETRIES = 2  # the library backs off (0.5 s, 1 s) and sends idempotency keys on retried POSTs
TIMEOUT_SECONDS = (5, 20)  # (connect, read): the webhook task and the web API must not hang on Stripe

_lock = threading.Lock()
_clients: dict[tuple[str, str], stripe.StripeClient] = {}


def api_base() -> str:
    return (settings.STRIPE_API_BASE or DEFAULT_API_BASE).rstrip("/")


def get_client() -> stripe.StripeClient:
    """A client for the configured key and base (cached: tests point STRIPE_API_BASE at a fake)."""
    key = settings.STRIPE_SECRET_KEY
    if not key:
        raise NotConfigured("stripe", ["STRIPE_SECRET_KEY"])
    base = api_base()
    with _lock:
        client = _clients.get((key, base))
        if client is None:
            client = stripe.StripeClient(
                key, stripe_version=API_VERSION, max_network_retries=MAX_NETWORK_RETRIES,
                base_addresses={"api": base, "files": base, "connect": base, "meter_events": base},
                http_client=stripe.RequestsClient(timeout=TIMEOUT_SECONDS))
            _clients[(key, base)] = client
    return client


def configure_library() -> None:
    """dj-stripe calls the library's module-level API: give it the same base, version and retries."""
    stripe.api_base = api_base()
    stripe.api_version = API_VERSION
    stripe.max_network_retries = MAX_NETWORK_RETRIES


def is_transient(exc: stripe.StripeError) -> bool:
    """Stripe did not answer, or answered 5xx / 429 / a lock timeout: a retry may succeed."""
    if isinstance(exc, stripe.APIConnectionError | stripe.RateLimitError):
        return True
    status = getattr(exc, "http_status", None)
    if status is None:
        return isinstance(exc, stripe.APIError)
    return status >= 500 or status == 409


@contextmanager
def unavailable_as_store_error():
    """Translate Stripe being unreachable into StoreUnavailable (a retry may fix it); other Stripe
    errors (bad request, card declined) pass through for the caller to answer."""
    try:
        yield
    except stripe.StripeError as exc:
        if is_transient(exc):
            raise StoreUnavailable(f"Stripe did not answer: {exc.user_message or exc}") from exc
        raise
