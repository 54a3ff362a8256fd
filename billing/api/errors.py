"""The stores' errors (billing.providers.base) in the API's shape: one translation for every view that
calls a store (verify, cancel, change plan, Stripe's web subscriptions)."""

import logging
from contextlib import contextmanager

from billing.providers.base import (
    InvalidPurchase,
    NotConfigured,
    NotSupported,
    PaymentDeclined,
    PermanentError,
    StoreRefused,
    TransientError,
)
from billing.providers.registry import UnknownProvider
from config.api_errors import ApiError

logger = logging.getLogger(__name__)

PROVIDER_ERRORS = (InvalidPurchase, NotSupported, NotConfigured, UnknownProvider, TransientError, PermanentError)


def provider_error(exc: Exception, provider: str, *, not_supported_status: int) -> ApiError:
    """One of PROVIDER_ERRORS as an ApiError (anything else is raised again)."""
    if isinstance(exc, PaymentDeclined):  # the payer must act: another card, or their bank
        return ApiError(str(exc), code=exc.code, status_code=402, details={"decline_code": exc.decline_code})
    if isinstance(exc, InvalidPurchase):
        return ApiError(str(exc), code=exc.code, status_code=400)
    if isinstance(exc, NotSupported):
        return ApiError(str(exc), code="not_supported", status_code=not_supported_status)
    if isinstance(exc, NotConfigured):
        return ApiError(str(exc), code="provider_not_configured", status_code=503,
                        details={"provider": exc.provider, "missing_settings": exc.missing})
    if isinstance(exc, UnknownProvider):
        return ApiError(f"The {provider} provider is not available in this deployment.",
                        code="provider_not_configured", status_code=503)
    if isinstance(exc, TransientError):  # StoreUnavailable and other retryable failures
        return ApiError(f"The {provider} store did not answer; try again shortly. ({exc})",
                        code="store_unavailable", status_code=502)
    if isinstance(exc, StoreRefused):
        if exc.code:  # the request's content: the caller's to fix
            return ApiError(str(exc), code=exc.code, status_code=400, details={"param": exc.param})
        # A bad key or a permission the store refuses: our configuration, not the caller's request.
        logger.error("%s refused our request: %s", provider, exc)
        return ApiError(str(exc), code=f"{provider}_error", status_code=502)
    if isinstance(exc, PermanentError):
        return ApiError(str(exc), code="invalid_purchase", status_code=400)
    raise exc


@contextmanager
def provider_errors(provider: str, *, not_supported_status: int):
    """Raise the store's errors in the block as ApiErrors (`provider_error`)."""
    try:
        yield
    except PROVIDER_ERRORS as exc:
        raise provider_error(exc, provider, not_supported_status=not_supported_status) from None
