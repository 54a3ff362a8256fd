"""The one place the Xsolla subscriptions API (server side, merchant v2) is called, and Pay Station's
refund requests (the same merchant v2 API, addressed by merchant).

HTTP Basic auth `XSOLLA_MERCHANT_ID : XSOLLA_API_KEY` against `XSOLLA_API_BASE` (tests point it at a
local fake). Xsolla not answering, answering 5xx or rate-limiting us (429) is a StoreUnavailable (a
retry may fix it); a 404 is `common.SubscriptionNotFound`; 401/403 (our merchant id or API key refused)
is CredentialsRefused (webhook processing retries it until an operator fixes the key); any other 4xx is
a PermanentError carrying Xsolla's own message."""

import logging
import threading
from decimal import Decimal
from urllib.parse import quote

import requests
from django.conf import settings

from billing.providers.base import CredentialsRefused, NotConfigured, PermanentError, StoreRateLimited, StoreUnavailable
from billing.providers.common import SubscriptionNotFound, retry_after_seconds
from billing.store_budgets import store_api

logger = logging.getLogger(__name__)

# What the subscriptions API needs (the adapter's `api_settings`).
API_SETTINGS = ("XSOLLA_PROJECT_ID", "XSOLLA_MERCHANT_ID", "XSOLLA_API_KEY")
TIMEOUT_SECONDS = (5, 15)  # (connect, read): a webhook task or an API call must not hang on Xsolla

_local = threading.local()


def is_configured() -> bool:
    """Whether the subscriptions API can be called (a notification then re-reads the state from it)."""
    return all(getattr(settings, name, "") for name in API_SETTINGS)


@store_api("xsolla")
def subscription_get(subscription_id: str) -> dict:
    """`GET /projects/{project_id}/subscriptions/{subscription_id}`: the subscription's current state."""
    project = quote(str(settings.XSOLLA_PROJECT_ID), safe="")
    return _request("GET", f"projects/{project}/subscriptions/{quote(str(subscription_id), safe='')}")


@store_api("xsolla")
def subscription_status_update(*, user_id: str, subscription_id: str, status: str) -> dict:
    """`PUT /projects/{project_id}/users/{user_id}/subscriptions/{subscription_id}` `{"status": ...}`
    (active, canceled or non_renewing): the subscription as it is afterwards."""
    project = quote(str(settings.XSOLLA_PROJECT_ID), safe="")
    path = (f"projects/{project}/users/{quote(str(user_id), safe='')}/subscriptions/"
            f"{quote(str(subscription_id), safe='')}")
    return _request("PUT", path, json_body={"status": status})


@store_api("xsolla")
def subscription_cancel(*, user_id: str, subscription_id: str, refund_last_payment: bool) -> dict:
    """Cancel now (`status: canceled`); with `refund_last_payment`, Xsolla also refunds the last payment
    (`cancel_subscription_payment: true`, which works only together with canceled). The subscription as
    it is afterwards; the refund itself arrives as Xsolla's `refund` webhook."""
    project = quote(str(settings.XSOLLA_PROJECT_ID), safe="")
    path = (f"projects/{project}/users/{quote(str(user_id), safe='')}/subscriptions/"
            f"{quote(str(subscription_id), safe='')}")
    body = {"status": "canceled"}
    if refund_last_payment:
        body["cancel_subscription_payment"] = True
    return _request("PUT", path, json_body=body)


@store_api("xsolla")
def subscription_postpone(*, user_id: str, subscription_id: str, days: int) -> dict:
    """Billing postponement (the update's `timeshift`, in days, 1 to 366): the next charge moves later,
    the user keeps access meanwhile. The subscription as it is afterwards."""
    project = quote(str(settings.XSOLLA_PROJECT_ID), safe="")
    path = (f"projects/{project}/users/{quote(str(user_id), safe='')}/subscriptions/"
            f"{quote(str(subscription_id), safe='')}")
    return _request("PUT", path, json_body={"timeshift": {"type": "day", "value": str(days)}})


@store_api("xsolla")
def transaction_refund(transaction_id: str, *, description: str) -> dict:
    """Pay Station's "Request refund" (`PUT /merchants/{merchant_id}/reports/transactions/{id}/refund`): the
    whole payment back to the user. A request: Xsolla may complete it at once or by hand (its message
    says which); the `refund` webhook follows. Needs an API key valid for all the company's projects."""
    return _request("PUT", f"{_merchant_transactions()}/{quote(str(transaction_id), safe='')}/refund",
                    json_body={"description": description[:4000]})


@store_api("xsolla")
def transaction_refund_partial(transaction_id: str, *, amount: Decimal, description: str) -> dict:
    """Pay Station's "Request partial refund" (`.../partial_refund`): `amount` in the payment's currency.
    Only some payment methods support it (Xsolla answers 422 otherwise)."""
    # Xsolla takes the amount as a JSON number; a decimal of two or three places survives the float.
    return _request("PUT", f"{_merchant_transactions()}/{quote(str(transaction_id), safe='')}/partial_refund",
                    json_body={"refund_amount": float(amount), "description": description[:4000]})


def _merchant_transactions() -> str:
    return f"merchants/{quote(str(settings.XSOLLA_MERCHANT_ID), safe='')}/reports/transactions"


def _timeout():
    # XSOLLA_API_TIMEOUT_SECONDS is optional (not an environment contract): tests shorten it.
    return getattr(settings, "XSOLLA_API_TIMEOUT_SECONDS", None) or TIMEOUT_SECONDS


def _session() -> requests.Session:
    """One keep-alive session per thread (requests.Session is not guaranteed thread-safe), rebuilt
    when the credentials change (tests switch them)."""
    auth = (str(settings.XSOLLA_MERCHANT_ID), settings.XSOLLA_API_KEY)
    session = getattr(_local, "session", None)
    if session is None or session.auth != auth:
        session = requests.Session()
        session.auth = auth
        session.headers.update({"Accept": "application/json", "User-Agent": "billing-service"})
        _local.session = session
    return session


def _url(path: str) -> str:
    return f"{settings.XSOLLA_API_BASE.rstrip('/')}/{path.lstrip('/')}"


def _request(method: str, path: str, *, json_body: dict | None = None) -> dict:
    missing = [name for name in API_SETTINGS if not getattr(settings, name, "")]
    if missing:
        raise NotConfigured("xsolla", missing)
    try:
        response = _session().request(method, _url(path), json=json_body, timeout=_timeout())
    except requests.RequestException as exc:  # connection refused, DNS, timeouts
        raise StoreUnavailable(f"Xsolla did not answer: {exc}") from exc
    if response.status_code == 429:
        raise StoreRateLimited(f"Xsolla answered 429 to {method} {path}",
                               retry_after=retry_after_seconds(response.headers.get("Retry-After")))
    if response.status_code >= 500:
        raise StoreUnavailable(f"Xsolla answered {response.status_code} to {method} {path}")
    if response.status_code >= 400:
        message = _error_message(response)
        if response.status_code == 404:
            raise SubscriptionNotFound(f"Xsolla: {method} {path}: not found ({message})", status=404)
        if response.status_code in (401, 403):
            logger.error("Xsolla refused our credentials: check XSOLLA_MERCHANT_ID and XSOLLA_API_KEY (%s)", message)
            raise CredentialsRefused(f"Xsolla answered {response.status_code} to {method} {path}: {message}")
        raise PermanentError(f"Xsolla answered {response.status_code} to {method} {path}: {message}")
    if response.status_code == 204 or not response.content:  # a refund request accepted without a message
        return {}
    try:
        data = response.json()
    except ValueError as exc:
        raise StoreUnavailable(f"Xsolla answered {method} {path} with a body that is not JSON") from exc
    if not isinstance(data, dict):
        raise StoreUnavailable(f"Xsolla answered {method} {path} with unexpected JSON")
    return data


def _error_message(response: requests.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(data, dict):
        error = data.get("error") if isinstance(data.get("error"), dict) else data
        return str(error.get("message") or error.get("code") or data)[:200]
    return str(data)[:200]
