"""One error shape for the whole API: {"error": {"code": ..., "message": ..., "details"?: ...}}."""

import math

from django.core.exceptions import PermissionDenied
from django.http import Http404, JsonResponse
from django.views import defaults
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


class ApiError(exceptions.APIException):
    """Raise from a view or service with an explicit status, code and message."""

    def __init__(self, message: str, *, code: str = "error", status_code: int = status.HTTP_400_BAD_REQUEST,
                 details=None):
        self.status_code = status_code
        self.code = code
        self.details = details
        super().__init__(detail=message, code=code)


def error_body(code: str, message: str, details=None) -> dict:
    body = {"error": {"code": code, "message": message}}
    if details is not None:
        body["error"]["details"] = details
    return body


def _flatten(detail) -> str:
    if isinstance(detail, dict):
        return "; ".join(f"{k}: {_flatten(v)}" for k, v in detail.items())
    if isinstance(detail, list):
        return " ".join(_flatten(v) for v in detail)
    return str(detail)


def exception_handler(exc, context):
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # unexpected: Django's 500 handling (logged) applies
    if isinstance(exc, ApiError):
        response.data = error_body(exc.code, str(exc.detail), exc.details)
        return response
    if isinstance(exc, exceptions.Throttled):  # 429, ours or any DRF throttle: Retry-After in whole seconds
        retry_after = max(1, math.ceil(exc.wait or 1))
        response["Retry-After"] = str(retry_after)
        if isinstance(exc, RateLimited):
            response.data = rate_limited_body(str(exc.detail), retry_after=retry_after, limit=exc.limit)
        else:
            response.data = rate_limited_body(f"Too many requests; retry in {retry_after} s.",
                                              retry_after=retry_after, limit="throttle")
        return response
    if isinstance(exc, exceptions.ValidationError):
        response.data = error_body("invalid", _flatten(exc.detail), exc.detail)
        return response
    code = exc.get_codes() if isinstance(exc, exceptions.APIException) else "error"
    if not isinstance(code, str):
        code = "error"
    response.data = error_body(code, _flatten(getattr(exc, "detail", str(exc))))
    return response


def server_error_response(code: str, message: str, status_code: int) -> Response:
    return Response(error_body(code, message), status=status_code)


# Django-level errors (no DRF view reached: an unknown URL, an uncaught exception) in the same shape,
# except under /admin/, whose users are people reading pages.
def not_found(request, exception=None):
    if request.path.startswith("/admin/"):
        return defaults.page_not_found(request, exception)
    return JsonResponse(error_body("not_found", f"No such endpoint: {request.path}"), status=404)


def server_error(request):
    if request.path.startswith("/admin/"):
        return defaults.server_error(request)
    return JsonResponse(error_body("server_error", "Internal error; it has been logged."), status=500)


def bad_request(request, exception=None):
    if request.path.startswith("/admin/"):
        return defaults.bad_request(request, exception)
    return JsonResponse(error_body("bad_request", "Bad request."), status=400)


# --- 429: rate limits (billing/api/throttles.py, docs/security.md "Rate limits") --------------------

class RateLimited(exceptions.Throttled):
    """429: a rate limit (docs/security.md "Rate limits") refuses this request for `retry_after` seconds."""

    default_code = "rate_limited"

    def __init__(self, message: str, *, retry_after: int, limit: str):
        self.retry_after = max(1, int(retry_after))
        self.limit = limit
        super().__init__(detail=message, code="rate_limited")
        self.wait = self.retry_after  # DRF's handler sends it as Retry-After


def rate_limited_body(message: str, *, retry_after: int, limit: str) -> dict:
    return error_body("rate_limited", message, {"retry_after": max(1, int(retry_after)), "limit": limit})


def rate_limited_response(message: str, *, retry_after: int, limit: str) -> JsonResponse:
    """The 429 of a limit applied outside DRF's views (a middleware): the same body and Retry-After."""
    response = JsonResponse(rate_limited_body(message, retry_after=retry_after, limit=limit), status=429)
    response["Retry-After"] = str(max(1, int(retry_after)))
    return response
