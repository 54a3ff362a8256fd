"""The subscription APIs (besides the check API, in check.py): thin views over selectors and services."""

import logging

from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import CanManage, CanRead, CanVerify, acting_user_id, may_see_user
from billing import selectors
from billing.models import Subscription
from billing.store_actions import subscription_cancel, subscription_change_plan
from billing.verification import NothingToVerify, PurchaseNotProven, PurchaseOwnedByAnotherUser, purchase_verify
from config.api_errors import ApiError

from .errors import provider_errors
from .serializers import (
    ChangePlanInputSerializer,
    ErrorSerializer,
    PageQuerySerializer,
    SubscriptionItemSerializer,
    SubscriptionPageSerializer,
    VerifyInputSerializer,
)
from .throttles import VerifyThrottle, verification_budget

logger = logging.getLogger(__name__)

_ERRORS = {code: OpenApiResponse(ErrorSerializer) for code in (400, 401, 403)}


def _item(subscription_id: int) -> dict:
    return SubscriptionItemSerializer(selectors.subscription_get(subscription_id=subscription_id),
                                      context={"now": timezone.now()}).data


def _page(request, external_id: str) -> Response:
    query = PageQuerySerializer(data=request.query_params)
    query.is_valid(raise_exception=True)
    limit, offset = query.validated_data["limit"], query.validated_data["offset"]
    items, has_more = selectors.subscription_list(external_id=external_id, limit=limit, offset=offset)
    return Response({
        "items": SubscriptionItemSerializer(items, many=True, context={"now": timezone.now()}).data,
        "has_more": has_more, "limit": limit, "offset": offset,
    })


_page_params = [
    OpenApiParameter("limit", OpenApiTypes.INT, description="1 to 100 (default 15)"),
    OpenApiParameter("offset", OpenApiTypes.INT, description="default 0"),
]


class UserSubscriptionListApi(APIView):
    permission_classes = [CanRead]

    @extend_schema(operation_id="users_subscriptions_list", summary="A user's subscriptions, newest first",
                   parameters=_page_params, responses={200: SubscriptionPageSerializer, **_ERRORS},
                   tags=["subscriptions"])
    def get(self, request, user_id: str):
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
        return _page(request, request.user.user_id)


class VerifyPurchaseApi(APIView):
    permission_classes = [CanVerify]
    throttle_classes = [VerifyThrottle]  # per user and per API key (docs/security.md "Rate limits")

    @extend_schema(
        operation_id="subscriptions_verify", summary="Verify a mobile purchase with the store",
        description="Apple: `signed_transaction`, `transaction_id` or `receipt`. Google: `purchase_token` and "
                    "`product_id`. Nothing is granted before the store confirms it.",
        request=VerifyInputSerializer,
        responses={200: SubscriptionItemSerializer, **_ERRORS, 409: OpenApiResponse(ErrorSerializer),
                   429: OpenApiResponse(ErrorSerializer, description="Too many verifications (Retry-After)"),
                   502: OpenApiResponse(ErrorSerializer), 503: OpenApiResponse(ErrorSerializer)},
        tags=["subscriptions"])
    def post(self, request):
        data = VerifyInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        provider = data.validated_data["provider"]
        user_id = acting_user_id(request.user, data.validated_data.get("user_id"))
        try:
            with provider_errors(provider, not_supported_status=400), verification_budget():
                results = purchase_verify(provider=provider, purchase=dict(request.data), user_id=user_id,
                                          ref=f"verify by {request.user}")
        except PurchaseOwnedByAnotherUser as exc:
            sub = exc.subscription  # unsaved when the store says another user bought a purchase we never saw
            raise ApiError(str(exc), code="purchase_owned_by_another_user", status_code=409,
                           details={"subscription_id": str(sub.pk) if sub.pk else None, "provider": sub.provider,
                                    "provider_subscription_id": sub.provider_subscription_id,
                                    "claimed_by_store": exc.claimed_by_store}) from None
        except NothingToVerify as exc:
            raise ApiError(str(exc), code="invalid_purchase", status_code=400) from None
        except PurchaseNotProven as exc:  # the caller named a purchase the store does not tie to them
            raise ApiError(str(exc), code="purchase_not_proven", status_code=409) from None
        return Response(_item(results[0].subscription_id))


class _SubscriptionActionApi(APIView):
    permission_classes = [CanManage]

    def _subscription(self, request, subscription_id: str) -> Subscription:
        if not subscription_id.isdigit():
            raise ApiError("Not found.", code="not_found", status_code=404)
        sub = get_object_or_404(Subscription.objects.select_related("subscriber"), pk=int(subscription_id))
        owner = sub.subscriber.external_id if sub.subscriber_id else None
        if request.user.is_end_user and owner != request.user.user_id:
            # Another user's subscription is not theirs to know about.
            raise ApiError("Not found.", code="not_found", status_code=404)
        return sub

    def _run(self, request, subscription_id: str, action) -> Response:
        sub = self._subscription(request, subscription_id)
        with provider_errors(sub.provider, not_supported_status=409):
            action(sub)
        return Response(_item(sub.pk))


_action_responses = {200: SubscriptionItemSerializer, **_ERRORS, 404: OpenApiResponse(ErrorSerializer),
                     409: OpenApiResponse(ErrorSerializer, description="The store manages it (Apple, Google): "
                                                                       "the message says where"),
                     502: OpenApiResponse(ErrorSerializer)}


class CancelSubscriptionApi(_SubscriptionActionApi):
    @extend_schema(operation_id="subscriptions_cancel", summary="Cancel at period end", request=None,
                   responses=_action_responses, tags=["subscriptions"])
    def post(self, request, subscription_id: str):
        return self._run(request, subscription_id,
                         lambda sub: subscription_cancel(subscription=sub, actor=str(request.user)))


class ChangePlanApi(_SubscriptionActionApi):
    @extend_schema(operation_id="subscriptions_change_plan", summary="Change plan (price)",
                   request=ChangePlanInputSerializer, responses=_action_responses, tags=["subscriptions"])
    def post(self, request, subscription_id: str):
        data = ChangePlanInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        price_id = data.validated_data["price_id"]
        return self._run(request, subscription_id, lambda sub: subscription_change_plan(
            subscription=sub, price_id=price_id, actor=str(request.user)))
