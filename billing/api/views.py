"""The subscription APIs (besides the check API, in check.py): thin views over selectors and services."""

import logging

from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import CanManage, CanRead, CanVerify, acting_user_id, may_see_user
from audit.records import record_api_call
from billing import double_payments, selectors
from billing.models import Subscription
from billing.store_actions import subscription_cancel, subscription_change_plan
from billing.verification import NothingToVerify, PurchaseNotProven, PurchaseOwnedByAnotherUser, purchase_verify
from config.api_errors import ApiError

from .errors import provider_errors
from .inputs import SUBSCRIPTION_ID_SCHEMA, USER_ID_RULE, USER_ID_SCHEMA, subscription_pk, user_id_is_valid
from .schema import RequiredBodySchema
from .serializers import (
    APPLE_VERIFY_SERIALIZERS,
    VERIFY_SERIALIZERS,
    ChangePlanInputSerializer,
    ErrorSerializer,
    GoogleVerifySerializer,
    PageQuerySerializer,
    SubscriptionItemSerializer,
    SubscriptionPageSerializer,
    VerifyRequestSerializer,
    VerifyResultSerializer,
)
from .throttles import VerifyThrottle, verification_budget

logger = logging.getLogger(__name__)

_ERRORS = {code: OpenApiResponse(ErrorSerializer) for code in (400, 401, 403)}


def _item(subscription_id: int) -> dict:
    return SubscriptionItemSerializer(selectors.subscription_get(subscription_id=subscription_id),
                                      context={"now": timezone.now()}).data


def _valid_user_id(user_id: str) -> str:
    """A path's or a token's user id, or a 400: PostgreSQL text cannot hold a NUL (once a 500)."""
    if not user_id_is_valid(user_id):
        raise ApiError(f"Not a user id: {USER_ID_RULE}.", code="invalid", status_code=400)
    return user_id


def _page(request, external_id: str) -> Response:
    # A plain dict: from a QueryDict, DRF would read `offset=` (empty) as absent, not as the non-integer it is.
    query = PageQuerySerializer(data=request.query_params.dict())
    query.is_valid(raise_exception=True)
    limit, offset = query.validated_data["limit"], query.validated_data["offset"]
    items, has_more = selectors.subscription_list(external_id=external_id, limit=limit, offset=offset)
    return Response({
        "items": SubscriptionItemSerializer(items, many=True, context={"now": timezone.now()}).data,
        "has_more": has_more, "limit": limit, "offset": offset,
    })


_page_params = [PageQuerySerializer]
_user_id_param = OpenApiParameter("user_id", USER_ID_SCHEMA, OpenApiParameter.PATH)
_subscription_id_param = OpenApiParameter("subscription_id", SUBSCRIPTION_ID_SCHEMA, OpenApiParameter.PATH)


class UserSubscriptionListApi(APIView):
    permission_classes = [CanRead]

    @extend_schema(operation_id="users_subscriptions_list", summary="A user's subscriptions, newest first",
                   parameters=[_user_id_param, *_page_params],
                   responses={200: SubscriptionPageSerializer, **_ERRORS}, tags=["subscriptions"])
    def get(self, request, user_id: str):
        _valid_user_id(user_id)
        if not may_see_user(request.user, user_id, scope="read"):
            raise ApiError("A user may list only their own subscriptions.", code="permission_denied",
                           status_code=403)
        return _page(request, user_id)


class MySubscriptionListApi(APIView):
    permission_classes = [CanRead]

    @extend_schema(operation_id="me_subscriptions_list", summary="The signed-in user's subscriptions",
                   description="Bearer token only.", parameters=_page_params,
                   responses={200: SubscriptionPageSerializer, **_ERRORS}, tags=["subscriptions"])
    def get(self, request):
        if not request.user.is_end_user:
            raise ApiError("/api/me/ needs an end user's bearer token; services use "
                           "/api/users/<user_id>/subscriptions.", code="permission_denied", status_code=403)
        return _page(request, _valid_user_id(request.user.user_id))


def _verify_input(data) -> dict:
    """The body as exactly one of the schema's `VerifyRequest` forms (`oneOf`), validated; else a 400."""
    matches = []
    for serializer_class in VERIFY_SERIALIZERS:
        serializer = serializer_class(data=data)
        if serializer.is_valid():
            matches.append(serializer.validated_data)
    if len(matches) == 1:
        return dict(matches[0])
    provider = data.get("provider") if isinstance(data, dict) else None
    apple_given = [k for k in APPLE_VERIFY_SERIALIZERS if isinstance(data, dict) and data.get(k) not in (None, "")]
    if provider == "apple" and len(apple_given) != 1:
        raise ApiError("Send exactly one of signed_transaction, transaction_id or receipt.", code="invalid")
    if provider == "apple":
        serializer = APPLE_VERIFY_SERIALIZERS[apple_given[0]](data=data)
        serializer.is_valid()
        if "transaction_id" in serializer.errors:  # the code Apple verify has always answered
            raise ApiError("transaction_id is not an App Store transaction id (1 to 32 digits).",
                           code="invalid_transaction_id", details=serializer.errors)
        raise ValidationError(serializer.errors)
    elif provider == "google":
        GoogleVerifySerializer(data=data).is_valid(raise_exception=True)
    raise ApiError('The body must be a JSON object whose "provider" is "apple" or "google".', code="invalid",
                   details={"provider": ["Not a valid choice."]})


class VerifyPurchaseApi(APIView):
    permission_classes = [CanVerify]
    throttle_classes = [VerifyThrottle]  # per user and per API key (docs/security.md "Rate limits")
    schema = RequiredBodySchema()

    @extend_schema(
        operation_id="subscriptions_verify", summary="Verify a mobile purchase with the store",
        description="Apple: `signed_transaction`, `transaction_id` or `receipt`. Google: `purchase_token` and "
                    "`product_id`. Nothing is granted before the store confirms it.",
        request=VerifyRequestSerializer,
        responses={200: VerifyResultSerializer, **_ERRORS, 409: OpenApiResponse(ErrorSerializer),
                   429: OpenApiResponse(ErrorSerializer, description="Too many verifications (Retry-After)"),
                   502: OpenApiResponse(ErrorSerializer), 503: OpenApiResponse(ErrorSerializer)},
        tags=["subscriptions"])
    def post(self, request):
        purchase = _verify_input(request.data)
        provider = purchase["provider"]
        user_id = _valid_user_id(acting_user_id(request.user, purchase.pop("user_id", None)))
        try:
            with provider_errors(provider, not_supported_status=400), verification_budget():
                results = purchase_verify(provider=provider, purchase=purchase, user_id=user_id,
                                          ref=f"verify by {request.user}")
        except PurchaseOwnedByAnotherUser as exc:
            # The caller learns what they sent and whose it is not; never our id of another user's row.
            sub = exc.subscription
            raise ApiError(str(exc), code="purchase_owned_by_another_user", status_code=409,
                           details={"provider": sub.provider, "provider_subscription_id": sub.provider_subscription_id,
                                    "claimed_by_store": exc.claimed_by_store}) from None
        except NothingToVerify as exc:
            raise ApiError(str(exc), code="invalid_purchase", status_code=400) from None
        except PurchaseNotProven as exc:  # the caller named a purchase the store does not tie to them
            raise ApiError(str(exc), code="purchase_not_proven", status_code=409) from None
        changed = [r for r in results if r.outcome in ("created", "updated")]
        if changed:  # a verify that only confirms what we hold is not an action worth a row
            record_api_call(actor=request.user, action="api_verify", user_id=user_id,
                            subscription_id=changed[0].subscription_id,
                            details={"provider": provider, "changes": [
                                {"subscription_id": r.subscription_id, "outcome": r.outcome,
                                 "old_status": r.old_status, "new_status": r.new_status} for r in changed]})
        # After the commit: the user may now pay twice for one entitlement (docs/api.md "Warnings").
        warnings = []
        for result in results:
            warnings += [w for w in double_payments.warnings_for(result.subscription_id) if w not in warnings]
        return Response({**_item(results[0].subscription_id), "warnings": warnings})


class _SubscriptionActionApi(APIView):
    permission_classes = [CanManage]

    def _subscription(self, request, subscription_id: str) -> Subscription:
        pk = subscription_pk(subscription_id)
        if pk is None:
            raise ApiError("Not found.", code="not_found", status_code=404)
        sub = get_object_or_404(Subscription.objects.select_related("subscriber"), pk=pk)
        owner = sub.subscriber.external_id if sub.subscriber_id else None
        if request.user.is_end_user and owner != request.user.user_id:
            # Another user's subscription is not theirs to know about.
            raise ApiError("Not found.", code="not_found", status_code=404)
        return sub

    def _run(self, request, subscription_id: str, action, *, name: str, details: dict | None = None) -> Response:
        sub = self._subscription(request, subscription_id)
        before = {"status": sub.status, "auto_renew": sub.auto_renew, "product": sub.store_product_id}
        with provider_errors(sub.provider, not_supported_status=409):
            action(sub)
        item = _item(sub.pk)
        after = Subscription.objects.values("status", "auto_renew", "store_product_id").get(pk=sub.pk)
        record_api_call(actor=request.user, action=name, user_id=sub.subscriber.external_id if sub.subscriber_id
                        else None, subscription_id=sub.pk,
                        details={**(details or {}), "before": before,
                                 "after": {**after, "product": after.pop("store_product_id")}})
        return Response(item)


_action_responses = {200: SubscriptionItemSerializer, **_ERRORS, 404: OpenApiResponse(ErrorSerializer),
                     409: OpenApiResponse(ErrorSerializer, description="The store manages it (Apple, Google): "
                                                                       "the message says where"),
                     502: OpenApiResponse(ErrorSerializer)}


class CancelSubscriptionApi(_SubscriptionActionApi):
    @extend_schema(operation_id="subscriptions_cancel", summary="Cancel at period end", request=None,
                   parameters=[_subscription_id_param], responses=_action_responses, tags=["subscriptions"])
    def post(self, request, subscription_id: str):
        return self._run(request, subscription_id,
                         lambda sub: subscription_cancel(subscription=sub, actor=str(request.user)), name="api_cancel")


class ChangePlanApi(_SubscriptionActionApi):
    @extend_schema(operation_id="subscriptions_change_plan", summary="Change plan (price)",
                   request=ChangePlanInputSerializer, parameters=[_subscription_id_param],
                   responses=_action_responses, tags=["subscriptions"])
    def post(self, request, subscription_id: str):
        data = ChangePlanInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        price_id = data.validated_data["price_id"]
        return self._run(request, subscription_id, lambda sub: subscription_change_plan(
            subscription=sub, price_id=price_id, actor=str(request.user)), name="api_change_plan",
            details={"price_id": price_id})
