"""`X-Request-ID` on every answer, and on every log line of the request.

The caller's id is kept when it is sane (1-128 characters of letters, digits and `-_.:/+=@`: a proxy's
or a client's correlation id, a UUID in any spelling), else a new one is made (uuid4, 32 hex digits):
an id that could forge log lines (newlines) or bloat every line is never repeated. First in MIDDLEWARE,
so the check API's fast path (billing/api/check.py) and every error answer of Django carry it too.

The id stays in the log context until the response is closed (`request_finished`): Django logs a
4xx/5xx answer ("Bad Request: /webhooks/stripe") after the middleware chain has returned."""

import re
import uuid

from django.core.signals import request_finished

from .log_context import bind, clear

HEADER = "X-Request-ID"
_META_KEY = "HTTP_X_REQUEST_ID"
_SANE = re.compile(r"[A-Za-z0-9\-_.:/+=@]{1,128}")


def request_id_from(meta: dict) -> str:
    """The request's id: the caller's `X-Request-ID` if sane, else a fresh one."""
    given = meta.get(_META_KEY)
    if given and _SANE.fullmatch(given):
        return given
    return uuid.uuid4().hex


class RequestIdMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request_id = request.request_id = request_id_from(request.META)
        clear()
        bind(request_id=request_id)
        response = self.get_response(request)
        response[HEADER] = request_id
        return response


def _request_finished(**kwargs):
    clear()


request_finished.connect(_request_finished, dispatch_uid="operations.request_id.clear")
