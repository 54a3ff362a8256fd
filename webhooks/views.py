"""POST /webhooks/<provider>: adapter → size check → authenticate → store once → queue → answer.

A plain Django view (no DRF: the stores send their own formats and the answer path is hot). The
answer does no store API call and no subscription write. 4xx only for what a retry can never fix;
anything transient (database down, a dependency of authentication down) is 5xx so the store retries."""

import logging

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from billing.providers import registry
from billing.providers.base import Answer, NotConfigured, ProviderAdapter, Rejected, TransientError, WebhookDialect

from . import services

logger = logging.getLogger(__name__)

_OUR_DIALECT = WebhookDialect()


def _render(answer: Answer) -> HttpResponse:
    if answer.body is None:
        return HttpResponse(status=answer.status)
    return JsonResponse(answer.body, status=answer.status)


def _error(status: int, code: str, message: str, adapter: ProviderAdapter | None = None) -> HttpResponse:
    dialect = adapter.dialect if adapter is not None else _OUR_DIALECT
    return _render(dialect.error(status=status, code=code, message=message))


def _has_webhooks(adapter: ProviderAdapter) -> bool:
    return type(adapter).authenticate is not ProviderAdapter.authenticate


def _webhook_adapter(provider: str) -> ProviderAdapter | None:
    try:
        adapter = registry.get_adapter(provider)
    except registry.UnknownProvider:
        return None
    return adapter if _has_webhooks(adapter) else None


@csrf_exempt
def webhook_receive(request, provider: str):
    # Looked up first so that every refusal, even before the body is read, is in the store's own
    # error shape (Xsolla: 400 INVALID_PARAMETER, which it does not retry).
    adapter = _webhook_adapter(provider)
    if request.method != "POST":
        response = _error(405, "method_not_allowed", "Webhooks are delivered with POST.", adapter)
        response["Allow"] = "POST"
        return response

    limit = settings.WEBHOOK_MAX_BODY_BYTES
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return _error(400, "malformed", "Content-Length is not a number.", adapter)
    too_big = f"The body is larger than the limit of {limit} bytes."
    if declared > limit:
        return _error(413, "too_large", too_big, adapter)  # refused before reading a byte of it
    body = request.read(limit + 1)
    if len(body) > limit:
        return _error(413, "too_large", too_big, adapter)

    if adapter is None:
        known = ", ".join(n for n in registry.names() if n != "manual")
        return _error(404, "unknown_provider", f"No webhook endpoint for provider {provider!r} (known: {known}).")

    try:
        adapter.ensure_configured()
    except NotConfigured as exc:
        return _error(503, "not_configured", str(exc), adapter)

    try:
        verified = adapter.authenticate(request.headers, body, request.GET)
    except Rejected as exc:
        services.rejection_record(provider=provider, code=exc.code)
        logger.warning("webhook rejected: provider=%s status=%s code=%s reason=%s remote=%s", provider,
                       exc.status, exc.code, exc.reason, request.META.get("REMOTE_ADDR"))
        return _error(exc.status, exc.code, exc.reason, adapter)
    except TransientError as exc:
        logger.warning("webhook not authenticated (transient, the store will retry): provider=%s: %s", provider, exc)
        return _error(503, "unavailable", f"Authentication could not complete, retry later: {exc}", adapter)

    headers = services.headers_to_store(request.headers)
    try:
        try:
            synchronous = adapter.synchronous_answer(verified)
        except Rejected as exc:
            logger.warning("webhook refused synchronously: provider=%s code=%s reason=%s", provider, exc.code,
                           exc.reason)
            return _error(exc.status, exc.code, exc.reason, adapter)
        except TransientError as exc:
            return _error(503, "unavailable", f"Retry later: {exc}", adapter)
        if synchronous is not None:
            # The store needs the answer itself (Xsolla's user validation): kept for the audit only.
            try:
                services.event_store(provider=provider, verified=verified, body=body, headers=headers,
                                     answered_with=synchronous.status)
            except (OperationalError, InterfaceError):
                logger.exception("webhook answered synchronously but not stored (database unavailable)")
            return _render(synchronous)
        event_id = services.event_store(provider=provider, verified=verified, body=body, headers=headers)
    except (OperationalError, InterfaceError):
        logger.exception("webhook not stored: database unavailable (the store will retry)")
        return _error(503, "unavailable", "The database is unavailable; retry later.", adapter)
    return _render(adapter.dialect.success(duplicate=event_id is None))
