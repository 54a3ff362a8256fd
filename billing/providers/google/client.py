"""The ONE place the Play Developer API is called: service-account credentials (google-auth; the
library refreshes the access token), the discovery document shipped inside google-api-python-client
(no network for it), the timeout (GOOGLE_PLAY_API_TIMEOUT_SECONDS), and errors mapped to ours
(404/410: `common.SubscriptionNotFound`; 429: `StoreRateLimited`). Every call draws from Google's budget
of calls (billing/store_budgets.py, through the `store_api` decorator): per minute, per day, with
priorities (webhooks and verification first, reconciliation last).

The service object (and its httplib2 connection) is not thread-safe: a new one is built per call
(about 15 ms); the credentials are shared per process so the access token is reused."""

import json
import logging
import os
import threading

import google_auth_httplib2
import httplib2
from django.conf import settings
from google.auth import exceptions as google_exceptions
from google.oauth2 import service_account
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError

from billing.providers.base import NotConfigured, PermanentError, StoreRateLimited, StoreUnavailable
from billing.providers.common import SubscriptionNotFound, retry_after_seconds
from billing.store_budgets import QuotaExceeded, store_api  # noqa: F401 (services.py stops its run on QuotaExceeded)

logger = logging.getLogger(__name__)

SCOPES = ["https://www.googleapis.com/auth/androidpublisher"]
DEFAULT_TIMEOUT_SECONDS = 20.0
_lock = threading.Lock()
_credentials: dict[tuple, service_account.Credentials] = {}


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


def execute(request, what: str):
    """Run a prepared API request (the budget was drawn by `store_api`), errors mapped."""
    try:
        return request.execute(num_retries=0)
    except HttpError as exc:
        status = exc.status_code or getattr(exc.resp, "status", 0)
        reason = exc.reason or str(exc)
        if status in (404, 410):  # the token is unknown to Google, or too old (60 days after expiry)
            raise SubscriptionNotFound(f"{what}: Google answered {status} ({reason})", status=status) from exc
        if status == 429:
            raise StoreRateLimited(f"{what}: Google answered 429 ({reason})",
                                   retry_after=retry_after_seconds(exc.resp.get("retry-after"))) from exc
        if status >= 500:
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
