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


# What a declined card means, in our words (the store's own text never reaches a body): by Stripe's code.
_DECLINED = {
    "expired_card": "The card has expired; use another payment method.",
    "incorrect_cvc": "The card's security code is incorrect.",
    "incorrect_number": "The card number is incorrect.",
    "processing_error": "The card could not be processed; try again shortly.",
    "authentication_required": "The card issuer requires authentication; confirm the payment in the app.",
}
_DECLINED_DEFAULT = "The card was declined; use another payment method or contact the card issuer."


def provider_error(exc: Exception, provider: str, *, not_supported_status: int) -> ApiError:
    """One of PROVIDER_ERRORS as an ApiError (anything else is raised again). A body never carries an
    exception's text from a store or a library (it may name hosts, keys or internals): messages written
    here, the store's codes kept (apps branch on them), the text logged for operators."""
    if isinstance(exc, PaymentDeclined):  # the payer must act: another card, or their bank
        return ApiError(_DECLINED.get(exc.code, _DECLINED_DEFAULT), code=exc.code, status_code=402,
                        details={"decline_code": exc.decline_code})
    if isinstance(exc, InvalidPurchase):  # messages our adapters compose for the caller
        return ApiError(str(exc), code=exc.code, status_code=400, details=getattr(exc, "details", None))
    if isinstance(exc, NotSupported):
        return ApiError(str(exc), code="not_supported", status_code=not_supported_status)
    if isinstance(exc, NotConfigured):
        return ApiError(str(exc), code="provider_not_configured", status_code=503,
                        details={"provider": exc.provider, "missing_settings": exc.missing})
    if isinstance(exc, UnknownProvider):
        return ApiError(f"The {provider} provider is not available in this deployment.",
                        code="provider_not_configured", status_code=503)
    if isinstance(exc, TransientError):  # StoreUnavailable and other retryable failures
        logger.warning("%s did not answer: %s", provider, exc)
        return ApiError(f"The {provider} store did not answer; try again shortly.",
                        code="store_unavailable", status_code=502)
    if isinstance(exc, StoreRefused):
        if exc.code:  # the request's content: the caller's to fix
            logger.info("%s refused the request (%s): %s", provider, exc.code, exc)
            at = f" (parameter {exc.param})" if exc.param else ""
            return ApiError(f"The {provider} store refused the request: {exc.code}{at}.", code=exc.code,
                            status_code=400, details={"param": exc.param})
        # A bad key or a permission the store refuses: our configuration, not the caller's request.
        logger.error("%s refused our request: %s", provider, exc)
        return ApiError(f"The {provider} store refused this service's credentials or permissions; "
                        "an operator must fix its configuration (logged).", code=f"{provider}_error", status_code=502)
    if isinstance(exc, PermanentError):
        logger.warning("%s refused the request for good: %s", provider, exc)
        return ApiError(f"The {provider} store refused the request; it cannot succeed as sent.",
                        code="invalid_purchase", status_code=400)
    raise exc


@contextmanager
def provider_errors(provider: str, *, not_supported_status: int):
    """Raise the store's errors in the block as ApiErrors (`provider_error`)."""
    try:
        yield
    except PROVIDER_ERRORS as exc:
        raise provider_error(exc, provider, not_supported_status=not_supported_status) from None
