"""The ONE place the App Store Server API is called (app-store-server-library's client), and where its
errors become ours: `subscription_get`, `notification_history_get`, and for the staff actions
`subscription_extend_renewal_date`, `consumption_send`, `order_look_up`.

The library hard-codes Apple's base URLs; APPLE_API_BASE_URL (a local fake in tests, a proxy) replaces
them through a small subclass. Each request carries an ES256 JWT signed with the In-App Purchase key
(APPLE_KEY_ID, APPLE_ISSUER_ID, APPLE_PRIVATE_KEY_FILE). The answers' signed data is verified by
auth.py, not here."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import lru_cache
from pathlib import Path

import requests
from appstoreserverlibrary.api_client import APIError, APIException, AppStoreServerAPIClient
from appstoreserverlibrary.models.ConsumptionRequest import ConsumptionRequest
from appstoreserverlibrary.models.Environment import Environment as AppleEnvironment
from appstoreserverlibrary.models.ExtendReasonCode import ExtendReasonCode
from appstoreserverlibrary.models.ExtendRenewalDateRequest import ExtendRenewalDateRequest
from appstoreserverlibrary.models.ExtendRenewalDateResponse import ExtendRenewalDateResponse
from appstoreserverlibrary.models.NotificationHistoryRequest import NotificationHistoryRequest
from appstoreserverlibrary.models.NotificationHistoryResponse import NotificationHistoryResponse
from appstoreserverlibrary.models.OrderLookupResponse import OrderLookupResponse
from appstoreserverlibrary.models.StatusResponse import StatusResponse
from django.conf import settings

from billing.providers.base import NotConfigured, PermanentError, StoreRateLimited, StoreUnavailable
from billing.providers.common import SubscriptionNotFound, retry_after_seconds
from billing.store_budgets import store_api

from .auth import unsigned_environments_allowed

logger = logging.getLogger(__name__)

REQUEST_TIMEOUT_SECONDS = 15
API_SETTINGS = ("APPLE_KEY_ID", "APPLE_ISSUER_ID", "APPLE_PRIVATE_KEY_FILE", "APPLE_BUNDLE_ID")

# Apple's "not found yet, try again" errors and its general retryable error.
_RETRYABLE = {APIError.ACCOUNT_NOT_FOUND_RETRYABLE, APIError.APP_NOT_FOUND_RETRYABLE,
              APIError.ORIGINAL_TRANSACTION_ID_NOT_FOUND_RETRYABLE, APIError.GENERAL_INTERNAL_RETRYABLE}
_NOT_FOUND = {APIError.TRANSACTION_ID_NOT_FOUND, APIError.ORIGINAL_TRANSACTION_ID_NOT_FOUND,
              APIError.INVALID_TRANSACTION_ID, APIError.INVALID_ORIGINAL_TRANSACTION_ID}

_last_retry_after = threading.local()


class _Client(AppStoreServerAPIClient):
    def __init__(self, *, base_url: str, **kwargs):
        super().__init__(**kwargs)
        if base_url:
            self._base_url = base_url.rstrip("/")

    def _execute_request(self, method, url, params, headers, json, data):
        # The library waits 30 s; a webhook retry or the app's retry is better than a stuck worker.
        response = requests.request(method, url, params=params, headers=headers, json=json, data=data,
                                    timeout=REQUEST_TIMEOUT_SECONDS)
        # The library drops the headers of an error: keep a 429's Retry-After (a Unix time in ms) for _store_errors.
        _last_retry_after.value = response.headers.get("Retry-After") if response.status_code == 429 else None
        return response


@lru_cache(maxsize=8)
def _build(apple_environment: str, key_id: str, issuer_id: str, key_file: str, bundle_id: str,
           base_url: str) -> AppStoreServerAPIClient:
    try:
        key = Path(key_file).read_bytes()
    except OSError as exc:
        raise NotConfigured("apple", ["APPLE_PRIVATE_KEY_FILE"]) from exc
    env = {"Production": AppleEnvironment.PRODUCTION, "Sandbox": AppleEnvironment.SANDBOX,
           "LocalTesting": AppleEnvironment.LOCAL_TESTING}[apple_environment]
    return _Client(base_url=base_url, signing_key=key, key_id=key_id, issuer_id=issuer_id, bundle_id=bundle_id,
                   environment=env)


@store_api("apple")
def subscription_get(transaction_id: str, *, apple_environment: str) -> StatusResponse:
    """get_all_subscription_statuses: every subscription of the Apple account that made this transaction
    (any of its transaction ids), each with its last transactions and renewal info as signed JWS.
    SubscriptionNotFound when that environment's App Store knows no such transaction."""
    client = _api_client(apple_environment)
    with _store_errors(apple_environment):
        return client.get_all_subscription_statuses(transaction_id)


@store_api("apple")
def notification_history_get(*, since: datetime, until: datetime, only_failures: bool,
                             pagination_token: str | None, apple_environment: str) -> NotificationHistoryResponse:
    """One page of get_notification_history: the notifications Apple sent (or, `only_failures`, failed to
    deliver) in [since, until), and the token of the next page (`hasMore`, `paginationToken`)."""
    client = _api_client(apple_environment)
    request = NotificationHistoryRequest(startDate=int(since.timestamp() * 1000), endDate=int(until.timestamp() * 1000),
                                         onlyFailures=True if only_failures else None)
    with _store_errors(apple_environment):
        return client.get_notification_history(pagination_token, request)


@store_api("apple")
def subscription_extend_renewal_date(original_transaction_id: str, *, days: int, reason_code: int,
                                     request_identifier: str, apple_environment: str) -> ExtendRenewalDateResponse:
    """Extend a Subscription Renewal Date: the subscription's current period ends `days` (1 to 90) later,
    free for the user. Apple allows two extensions per subscription a year."""
    client = _api_client(apple_environment)
    request = ExtendRenewalDateRequest(extendByDays=days, extendReasonCode=ExtendReasonCode(reason_code),
                                       requestIdentifier=request_identifier)
    with _store_errors(apple_environment):
        return client.extend_subscription_renewal_date(original_transaction_id, request)


@store_api("apple")
def consumption_send(transaction_id: str, *, request: ConsumptionRequest, apple_environment: str) -> None:
    """Send Consumption Information (v2) for the transaction a CONSUMPTION_REQUEST named: what Apple
    weighs when it decides the user's refund request. Apple answers 202 with no body."""
    client = _api_client(apple_environment)
    with _store_errors(apple_environment):
        client.send_consumption_information(transaction_id, request)


@store_api("apple")
def order_look_up(order_id: str, *, apple_environment: str) -> OrderLookupResponse:
    """Look Up Order ID: the signed transactions of the order an App Store receipt e-mail names (status 1:
    no such order for this app)."""
    client = _api_client(apple_environment)
    with _store_errors(apple_environment):
        return client.look_up_order_id(order_id)


def _api_client(apple_environment: str) -> AppStoreServerAPIClient:
    """The client for "Production" or "Sandbox" (or "LocalTesting" when unsigned data is allowed: development)."""
    missing = [name for name in API_SETTINGS if not getattr(settings, name, "")]
    if missing:
        raise NotConfigured("apple", missing)
    if apple_environment == "LocalTesting" and not unsigned_environments_allowed():
        raise NotConfigured("apple", ["APPLE_ALLOW_UNSIGNED_ENVIRONMENTS (with DEBUG)"])
    if apple_environment not in ("Production", "Sandbox", "LocalTesting"):
        raise PermanentError(f"The App Store Server API has no {apple_environment} environment.")
    return _build(apple_environment, settings.APPLE_KEY_ID, settings.APPLE_ISSUER_ID,
                  settings.APPLE_PRIVATE_KEY_FILE, settings.APPLE_BUNDLE_ID, settings.APPLE_API_BASE_URL)


@contextmanager
def _store_errors(apple_environment: str) -> Iterator[None]:
    """The store's failures become SubscriptionNotFound (the id is unknown there), StoreUnavailable
    (retry: network, 429, 5xx, Apple's retryable errors, our credentials refused) or PermanentError (a
    request Apple will never accept)."""
    try:
        yield
    except requests.RequestException as exc:
        raise StoreUnavailable(f"App Store Server API ({apple_environment}) unreachable: {exc}") from exc
    except APIException as exc:
        status, code = exc.http_status_code, exc.api_error
        detail = f"HTTP {status}" + (f", error {exc.raw_api_error}" if exc.raw_api_error else "") + (
            f": {exc.error_message}" if exc.error_message else "")
        if code in _NOT_FOUND or (status == 404 and code not in _RETRYABLE):
            raise SubscriptionNotFound(f"App Store ({apple_environment}): {detail}", status=status) from exc
        # A 403 with an error code is Apple refusing this request (4030004: not eligible for an extension),
        # not our credentials.
        if status == 401 or (status == 403 and exc.raw_api_error is None):
            logger.error("App Store Server API refused our credentials: check APPLE_KEY_ID, APPLE_ISSUER_ID, "
                         "APPLE_PRIVATE_KEY_FILE, APPLE_BUNDLE_ID (%s)", detail)
            raise StoreUnavailable(f"App Store Server API refused our credentials ({detail})") from exc
        if status == 429:
            retry_after = retry_after_seconds(getattr(_last_retry_after, "value", None), unix_millis=True)
            raise StoreRateLimited(f"App Store Server API ({apple_environment}) failed: {detail} (rate-limited)",
                                   retry_after=retry_after) from exc
        if code in _RETRYABLE or status >= 500:
            raise StoreUnavailable(f"App Store Server API ({apple_environment}) failed: {detail}") from exc
        raise PermanentError(f"App Store Server API ({apple_environment}) refused the request: {detail}") from exc
