"""The ONE place Stripe's API is called: the stripe library configured (key, API base, pinned API
version, retries, timeouts), one function per call, and Stripe's errors translated into ours.

Every function returns plain dicts (JSON-able, as a webhook body carries them) and raises only our
errors: Stripe unreachable, 5xx, 429 or a lock conflict (409) → StoreUnavailable (a retry may fix it);
a card declined → PaymentDeclined; a read of something Stripe does not have (404) →
SubscriptionNotFound; our key or its permissions refused (401/403) → CredentialsRefused (a StoreRefused
without a code, which webhook processing retries: a rotated key is fixed by an operator); any other
refusal → StoreRefused (with Stripe's code and parameter when the request's content was refused).
dj-stripe uses the library's module-level settings instead, so `configure_library()` sets those from
the same values, and its calls are translated through `translated_errors()`."""

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from urllib.parse import quote

import requests
import stripe
from django.conf import settings

from billing.providers.base import (
    CredentialsRefused,
    NotConfigured,
    PaymentDeclined,
    StoreRateLimited,
    StoreRefused,
    StoreUnavailable,
)
from billing.providers.common import SubscriptionNotFound, retry_after_seconds
from billing.store_budgets import store_api

# The webhook payload shape follows the endpoint's API version, the responses follow this one:
# pin the dashboard endpoint to the same value (docs/providers/stripe.md).
API_VERSION = "2026-08-26.dahlia"
DEFAULT_API_BASE = "https://api.stripe.com"
MAX_NETWORK_RETRIES = 2  # the library backs off (0.5 s, 1 s) and sends idempotency keys on retried POSTs
TIMEOUT_SECONDS = (5, 20)  # (connect, read): the webhook task and the web API must not hang on Stripe
# Expanded on every subscription read: the price's product names the catalogue entry.
SUBSCRIPTION_EXPAND = ["items.data.price.product"]

_lock = threading.Lock()
_clients: dict[tuple[str, str], stripe.StripeClient] = {}


class _HttpClient(stripe.RequestsClient):
    """The library's requests client (a keep-alive session per thread), its sessions not reading the
    environment on every call: requests looks up the proxy variables (all of os.environ) twice per
    request, a tenth of a read's CPU. The proxies are read once instead, for the API base (HTTPS_PROXY,
    NO_PROXY), when the client is made; the CA bundle is the library's own either way."""

    def _request_internal(self, *args, **kwargs):
        if getattr(self._thread_local, "session", None) is None:
            session = requests.Session()
            session.trust_env = False
            self._thread_local.session = session
        return super()._request_internal(*args, **kwargs)


def _proxies_for(base: str) -> dict | None:
    """The proxies the environment sets for the API base (none when NO_PROXY names its host), as requests
    reads them: HTTPS_PROXY, HTTP_PROXY, ALL_PROXY."""
    proxies = {scheme: url for scheme, url in requests.utils.get_environ_proxies(base).items()
               if scheme in ("http", "https", "all")}
    return proxies or None


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
                http_client=_HttpClient(timeout=TIMEOUT_SECONDS, proxy=_proxies_for(base)))
            _clients[(key, base)] = client
    return client


def configure_library() -> None:
    """dj-stripe calls the library's module-level API: give it the same base, version and retries."""
    stripe.api_base = api_base()
    stripe.api_version = API_VERSION
    stripe.max_network_retries = MAX_NETWORK_RETRIES


def plain(obj) -> dict:
    """A Stripe object as JSON-able data (the library decodes `*_decimal` fields to Decimal)."""
    data = obj.to_dict() if hasattr(obj, "to_dict") else obj
    return json.loads(json.dumps(data, default=str))


def subscription_object(data: dict) -> stripe.Subscription:
    """Plain subscription data back as the library's object, for dj-stripe, which reads the lists in it
    through the library (auto-pagination)."""
    return stripe.Subscription.construct_from(data, settings.STRIPE_SECRET_KEY, stripe_version=API_VERSION)


# --- Errors ------------------------------------------------------------------------------------

def _is_transient(exc: stripe.StripeError) -> bool:
    """Stripe did not answer, or answered 5xx / 429 / a lock timeout (409): a retry may succeed."""
    if isinstance(exc, stripe.APIConnectionError | stripe.RateLimitError):
        return True
    status = getattr(exc, "http_status", None)
    if status is None:
        return isinstance(exc, stripe.APIError)
    return status >= 500 or status == 409


@contextmanager
def translated_errors(*, missing: str | None = None):
    """Stripe's errors as ours (the module docstring has the table). `missing`: the message of the
    SubscriptionNotFound a 404 means for this call (a read of one object); without it a 404 is a
    refusal like any other (a payment method Stripe does not have is the caller's to fix)."""
    try:
        yield
    except stripe.CardError as exc:
        raise PaymentDeclined(exc.user_message or str(exc), code=exc.code or "card_error",
                              decline_code=getattr(exc.error, "decline_code", None)) from exc
    except stripe.StripeError as exc:
        message = exc.user_message or str(exc)
        if isinstance(exc, stripe.RateLimitError) or getattr(exc, "http_status", None) == 429:
            headers = getattr(exc, "headers", None) or {}
            raise StoreRateLimited(f"Stripe did not answer: rate-limited (429): {message}",
                                   retry_after=retry_after_seconds(headers.get("Retry-After"))) from exc
        if _is_transient(exc):
            raise StoreUnavailable(f"Stripe did not answer: {message}") from exc
        if isinstance(exc, stripe.AuthenticationError | stripe.PermissionError) or \
                getattr(exc, "http_status", None) in (401, 403):
            raise CredentialsRefused(f"Stripe refused the request: {message}") from exc
        if isinstance(exc, stripe.InvalidRequestError):
            if missing and exc.http_status == 404:
                raise SubscriptionNotFound(missing, status=404) from exc
            raise StoreRefused(message, code=exc.code or "invalid_request",
                               param=getattr(exc, "param", None)) from exc
        raise StoreRefused(f"Stripe refused the request: {message}") from exc


def _call(request: Callable[[stripe.StripeClient], object], *, missing: str | None = None) -> dict:
    with translated_errors(missing=missing):
        return plain(request(get_client()))


def _get(path: str, params: dict | None = None, *, missing: str | None = None) -> dict:
    """A read as Stripe's JSON, decoded once: the webhook path's reads (several per event) skip the
    library's objects (a StripeObject per nested dict, then `plain` back to dicts: half of a read's
    CPU). Same request, retries and errors as the typed calls."""
    with translated_errors(missing=missing):
        # .body, not .data: the library decodes into OrderedDicts; ours are plain (JSON-able) dicts
        return json.loads(get_client().raw_request("get", path, **(params or {})).body)


def _path(*parts: str) -> str:
    """An API path with the ids quoted (an id from an event must not reach another endpoint)."""
    return "/v1/" + "/".join(quote(part, safe="") for part in parts)


def _each(request: Callable[[stripe.StripeClient], object]) -> Iterator[dict]:
    """Every object of a list, page after page (the library follows `has_more`)."""
    with translated_errors():
        for obj in request(get_client()).auto_paging_iter():
            yield plain(obj)


# --- Subscriptions -----------------------------------------------------------------------------

@store_api("stripe")
def subscription_get(subscription_id: str) -> dict:
    return _get(_path("subscriptions", subscription_id), {"expand": SUBSCRIPTION_EXPAND},
                missing=f"Stripe has no subscription {subscription_id}")


@store_api("stripe")
def subscription_get_with_latest_invoice(subscription_id: str) -> tuple[dict, dict | None]:
    """The subscription (as `subscription_get` gives it: `latest_invoice` an id) and its latest invoice
    with the invoice's payments, in one request: `payments` is an invoice field Stripe includes only when
    expanded, here through the subscription. The webhook path's read: the payment of the invoice an
    invoice event is about usually comes with it (no list call)."""
    sub = _get(_path("subscriptions", subscription_id), {"expand": [*SUBSCRIPTION_EXPAND, "latest_invoice.payments"]},
               missing=f"Stripe has no subscription {subscription_id}")
    latest = sub.get("latest_invoice")
    if not isinstance(latest, dict):
        return sub, None
    sub["latest_invoice"] = latest.get("id")
    return sub, latest


@store_api("stripe")
def subscription_update(subscription_id: str, params: dict) -> dict:
    return _call(lambda c: c.v1.subscriptions.update(subscription_id, {**params, "expand": SUBSCRIPTION_EXPAND}),
                 missing=f"Stripe has no subscription {subscription_id}")


@store_api("stripe")
def subscription_create(params: dict) -> dict:
    return _call(lambda c: c.v1.subscriptions.create({**params, "expand": SUBSCRIPTION_EXPAND}))


@store_api("stripe")
def subscription_cancel(subscription_id: str) -> dict:
    """Cancel now (DELETE): Stripe ends the subscription at once (status canceled)."""
    return _call(lambda c: c.v1.subscriptions.cancel(subscription_id, {"expand": SUBSCRIPTION_EXPAND}),
                 missing=f"Stripe has no subscription {subscription_id}")


@store_api("stripe")
def subscriptions_list_all(*, page_size: int) -> Iterator[dict]:
    """Every subscription, whatever its status."""
    return _each(lambda c: c.v1.subscriptions.list({
        "status": "all", "limit": page_size, "expand": [f"data.{path}" for path in SUBSCRIPTION_EXPAND]}))


# --- Invoices, charges, refunds ----------------------------------------------------------------

@store_api("stripe")
def invoice_get(invoice_id: str) -> dict:
    return _get(_path("invoices", invoice_id), missing=f"Stripe has no invoice {invoice_id}")


@store_api("stripe")
def invoice_payments_list(*, invoice: str | None = None, payment_intent: str | None = None,
                          expand: tuple[str, ...] = ()) -> dict:
    """The (first) payment of an invoice, or the invoice a payment intent paid."""
    params: dict = {"limit": 1}
    if invoice:
        params["invoice"] = invoice
    if payment_intent:
        params["payment"] = {"type": "payment_intent", "payment_intent": payment_intent}
    if expand:
        params["expand"] = list(expand)
    return _get(_path("invoice_payments"), params)


@store_api("stripe")
def charge_get(charge_id: str, *, expand: tuple[str, ...] = ()) -> dict:
    params = {"expand": list(expand)} if expand else None
    return _get(_path("charges", charge_id), params, missing=f"Stripe has no charge {charge_id}")


@store_api("stripe")
def payment_intent_get(payment_intent_id: str, *, expand: tuple[str, ...] = ()) -> dict:
    params = {"expand": list(expand)} if expand else None
    return _get(_path("payment_intents", payment_intent_id), params,
                missing=f"Stripe has no payment intent {payment_intent_id}")


@store_api("stripe")
def refunds_list(*, charge: str) -> dict:
    """A charge's refunds, each with its balance transaction (fee and net, for the ledger)."""
    return _get(_path("refunds"), {"charge": charge, "limit": 100, "expand": ["data.balance_transaction"]})


@store_api("stripe")
def invoices_list(*, subscription: str, status: str, limit: int = 1) -> dict:
    """A subscription's invoices in one status (`paid`: the latest paid first)."""
    return _get(_path("invoices"), {"subscription": subscription, "status": status, "limit": limit})


@store_api("stripe")
def refund_create(*, charge: str, amount: int, metadata: dict, idempotency_key: str) -> dict:
    """Refund `amount` (minor units) of a charge, to the payer's card (reason requested_by_customer)."""
    return _call(lambda c: c.v1.refunds.create(
        {"charge": charge, "amount": amount, "reason": "requested_by_customer", "metadata": metadata},
        {"idempotency_key": idempotency_key}))


# --- Catalogue ---------------------------------------------------------------------------------

@store_api("stripe")
def price_get(price_id: str) -> dict:
    return _get(_path("prices", price_id), {"expand": ["product"]}, missing=f"Stripe has no price {price_id}")


@store_api("stripe")
def prices_list(*, product: str) -> dict:
    return _get(_path("prices"), {"product": product, "limit": 100})


@store_api("stripe")
def prices_list_all(*, page_size: int) -> Iterator[dict]:
    """Every price, with its product (for the label)."""
    return _each(lambda c: c.v1.prices.list({"limit": page_size, "expand": ["data.product"]}))


# --- Customers and payments (the web API) ------------------------------------------------------

@store_api("stripe")
def customer_create(params: dict, *, idempotency_key: str) -> dict:
    return _call(lambda c: c.v1.customers.create(params, {"idempotency_key": idempotency_key}))


@store_api("stripe")
def customer_update(customer_id: str, params: dict) -> dict:
    return _call(lambda c: c.v1.customers.update(customer_id, params))


@store_api("stripe")
def payment_method_attach(payment_method_id: str, *, customer: str) -> dict:
    return _call(lambda c: c.v1.payment_methods.attach(payment_method_id, {"customer": customer}))


@store_api("stripe")
def setup_intent_create(params: dict) -> dict:
    return _call(lambda c: c.v1.setup_intents.create(params))


@store_api("stripe")
def checkout_session_create(params: dict) -> dict:
    return _call(lambda c: c.v1.checkout.sessions.create(params))


@store_api("stripe")
def portal_session_create(params: dict) -> dict:
    return _call(lambda c: c.v1.billing_portal.sessions.create(params))
