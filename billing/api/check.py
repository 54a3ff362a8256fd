"""GET /api/subscriptions/check/<user_id>: the hot path.

A plain Django view, not DRF dispatch: its own lean authentication (trusted network, API key with the
`check` scope from a per-process cache, or the user's own JWT), one Redis GET for the user's cached
entries (the database when Redis is absent or down), no session or CSRF work. `CheckFastPathMiddleware`
(first in MIDDLEWARE) answers it before the rest of the middleware chain runs.

`CheckSubscriptionView` is a DRF class only for the OpenAPI schema: its `as_view()` hands the URL conf the
lean function, with the class attached the way DRF does, so drf-spectacular documents it."""

import json
import re
from time import perf_counter

from django.http import HttpResponse
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.views import APIView

from accounts.authentication import (
    ApiKeyAuthentication,
    AuthFailed,
    JWTAuthentication,
    authenticate_header,
)
from accounts.networks import is_trusted_request
from billing.selectors import check_answer
from config.api_errors import error_body
from operations.metrics import check_record

from .inputs import USER_ID_RULE, USER_ID_SCHEMA, user_id_is_valid
from .serializers import ErrorSerializer

CHECK_PATH = re.compile(r"^/api/subscriptions/check/(?P<user_id>[^/]{1,255})/?$")
_WWW_AUTHENTICATE = 'Api-Key realm="billing", Bearer realm="billing"'


def _json(body: dict, status: int = 200) -> HttpResponse:
    response = HttpResponse(json.dumps(body), content_type="application/json", status=status)
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "no-store"
    return response


def _error(status: int, code: str, message: str) -> HttpResponse:
    response = _json(error_body(code, message), status)
    if status == 401:
        response["WWW-Authenticate"] = _WWW_AUTHENTICATE
    return response


def _refusal(request, user_id: str) -> HttpResponse | None:
    """None when the caller may read `user_id`'s check answer, else the error response.
    Credentials, when sent, are what count (a bad key from a trusted address is still refused)."""
    try:
        principal = authenticate_header(request.META.get("HTTP_AUTHORIZATION", ""))
    except AuthFailed as exc:
        return _error(401, exc.code, exc.message)
    if principal is None:
        if is_trusted_request(request.META):
            return None
        return _error(401, "not_authenticated", "Send 'Authorization: Api-Key <key>' or 'Bearer <token>'; "
                                                "anonymous calls are accepted only from trusted networks.")
    if principal.is_service:
        if principal.has_scope("check"):
            return None
        return _error(403, "permission_denied", "This API key lacks the 'check' scope.")
    if principal.user_id == user_id:
        return None
    return _error(403, "permission_denied", "A user may check only their own subscription.")


@csrf_exempt
def check_view(request, user_id: str) -> HttpResponse:
    started = perf_counter()
    response = _check(request, user_id)
    check_record(response.status_code, perf_counter() - started)
    return response


def _check(request, user_id: str) -> HttpResponse:
    if request.method not in ("GET", "HEAD"):
        response = _error(405, "method_not_allowed", f"Method {request.method} is not allowed.")
        response["Allow"] = "GET, HEAD"
        return response
    refusal = _refusal(request, user_id)
    if refusal is not None:
        return refusal
    if not user_id_is_valid(user_id):  # e.g. a NUL, which PostgreSQL text cannot hold
        return _error(400, "invalid", f"Not a user id: {USER_ID_RULE}.")
    entitlement = request.GET.get("entitlement") or None
    return _json(check_answer(user_id, entitlement=entitlement))


class CheckFastPathMiddleware:
    """Answers the check API before the rest of the middleware chain (sessions, CSRF, auth, messages):
    that work is for browsers and costs the hot path a fifth of its throughput. Host validation stays."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        match = CHECK_PATH.match(request.path_info)
        if match is None:
            return self.get_response(request)
        request.get_host()  # ALLOWED_HOSTS, as CommonMiddleware would (DisallowedHost → 400)
        return check_view(request, match["user_id"])


# --- OpenAPI ----------------------------------------------------------------------------------

class CheckAnswerSerializer(serializers.Serializer):
    user_id = serializers.CharField()
    is_subscribed = serializers.BooleanField(help_text="Any of the user's subscriptions is entitled now")
    status = serializers.CharField(help_text="Of the subscription shown; INACTIVE when the user has none")
    provider = serializers.CharField(allow_null=True)
    product_id = serializers.CharField(allow_null=True, help_text="The store's product or price id")
    expires_at = serializers.DateTimeField(allow_null=True)
    entitlements = serializers.ListField(child=serializers.CharField(),
                                         help_text="What the entitled subscriptions grant")
    as_of = serializers.DateTimeField(help_text="When this answer was computed")
    last_confirmed_at = serializers.DateTimeField(
        allow_null=True, help_text="When the store last confirmed the subscription shown")


class CheckSubscriptionView(APIView):
    authentication_classes = [ApiKeyAuthentication, JWTAuthentication]

    @classmethod
    def as_view(cls, **initkwargs):
        view = check_view
        view.cls = cls  # what DRF's as_view() attaches; drf-spectacular finds the class through it
        view.initkwargs = initkwargs
        return view

    @extend_schema(
        operation_id="subscriptions_check",
        summary="Is this user subscribed (entitled) now?",
        description="Allowed: anonymous callers from CHECK_API_TRUSTED_NETWORKS, an API key with the "
                    "`check` scope, or the user's own bearer token. An unknown user is 200 with "
                    "`is_subscribed: false`.",
        parameters=[OpenApiParameter("user_id", USER_ID_SCHEMA, OpenApiParameter.PATH),
                    OpenApiParameter("entitlement", OpenApiTypes.STR, OpenApiParameter.QUERY,
                                     description="Narrow the answer to this entitlement")],
        responses={200: CheckAnswerSerializer, 400: OpenApiResponse(ErrorSerializer),
                   401: OpenApiResponse(ErrorSerializer),
                   403: OpenApiResponse(ErrorSerializer)},
        auth=[{"ApiKey": []}, {"BearerJWT": []}, {}],  # {}: anonymous, from a trusted network
        tags=["subscriptions"],
    )
    def get(self, request, user_id):  # pragma: no cover - requests are served by check_view
        return check_view(request._request, user_id)
