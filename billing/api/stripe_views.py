"""Stripe web subscriptions (/api/stripe/...): thin views over billing.providers.stripe.services.

Callers: an end user with a Bearer JWT (for themselves; `user_id` may be omitted) or a service with
an Api-Key holding the `manage` scope (`user_id` required)."""

from functools import partial

from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import CanManage, acting_user_id
from billing import selectors
from billing.providers.stripe import services
from config.api_errors import ApiError

from .errors import provider_errors
from .serializers import ErrorSerializer, SubscriptionItemSerializer
from .throttles import payment_declines

_ERRORS = {code: OpenApiResponse(ErrorSerializer) for code in (400, 401, 402, 403, 429, 502, 503)}
# Stripe's refusals as API errors: 402 card declined (Stripe's message, code and decline_code), 400 with
# Stripe's code and the parameter at fault, 502 Stripe unavailable or refusing our key, 503 not configured;
# 429 after too many declines for the user (payment_declines: subscribe, Checkout, SetupIntents).
_stripe_errors = partial(provider_errors, "stripe", not_supported_status=409)
_LINK = inline_serializer("StripeSessionLink", {"id": serializers.CharField(), "url": serializers.URLField()})


class _UserInput(serializers.Serializer):
    user_id = serializers.CharField(required=False, max_length=255,
                                    help_text="Required for services; end users may omit it (their own)")


class _StripeApi(APIView):
    permission_classes = [CanManage]

    def _input(self, request, serializer_class) -> tuple[str, dict]:
        data = serializer_class(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        return acting_user_id(request.user, values.pop("user_id", None)), values


class SetupIntentApi(_StripeApi):
    class OutputSerializer(serializers.Serializer):
        setup_intent_id = serializers.CharField()
        client_secret = serializers.CharField()
        customer_id = serializers.CharField()
        status = serializers.CharField()
        requires_action = serializers.BooleanField()

    @extend_schema(operation_id="stripe_setup_intent_create", summary="Set up a payment method (off-session)",
                   request=_UserInput, responses={200: OutputSerializer, **_ERRORS}, tags=["stripe"])
    def post(self, request):
        user_id, _ = self._input(request, _UserInput)
        with _stripe_errors(), payment_declines(user_id):
            result = services.setup_intent_create(user_id=user_id)
        return Response(self.OutputSerializer(result).data)


class SubscriptionCreateApi(_StripeApi):
    class InputSerializer(_UserInput):
        price_id = serializers.CharField(max_length=255)
        payment_method_id = serializers.CharField(max_length=255)

    class OutputSerializer(serializers.Serializer):
        subscription = SubscriptionItemSerializer()
        requires_action = serializers.BooleanField()
        client_secret = serializers.CharField(allow_null=True)

    @extend_schema(operation_id="stripe_subscription_create", summary="Subscribe with a saved payment method",
                   request=InputSerializer, responses={201: OutputSerializer, **_ERRORS}, tags=["stripe"])
    def post(self, request):
        user_id, values = self._input(request, self.InputSerializer)
        with _stripe_errors(), payment_declines(user_id):
            started = services.subscription_start(user_id=user_id, price_id=values["price_id"],
                                                  payment_method_id=values["payment_method_id"],
                                                  actor=str(request.user))
        subscription = selectors.subscription_get(subscription_id=started.subscription.pk)
        body = {"subscription": subscription, "requires_action": started.requires_action,
                "client_secret": started.client_secret}
        return Response(self.OutputSerializer(body, context={"now": timezone.now()}).data,
                        status=status.HTTP_201_CREATED)


class CheckoutSessionApi(_StripeApi):
    class InputSerializer(_UserInput):
        price_id = serializers.CharField(max_length=255)
        success_url = serializers.URLField(max_length=2000)
        cancel_url = serializers.URLField(max_length=2000)

    @extend_schema(operation_id="stripe_checkout_session_create", summary="Start Stripe Checkout",
                   request=InputSerializer, responses={200: _LINK, **_ERRORS}, tags=["stripe"])
    def post(self, request):
        user_id, values = self._input(request, self.InputSerializer)
        with _stripe_errors(), payment_declines(user_id):
            link = services.checkout_session_create(user_id=user_id, **values)
        return Response({"id": link.id, "url": link.url})


class PortalSessionApi(_StripeApi):
    class InputSerializer(_UserInput):
        return_url = serializers.URLField(max_length=2000, required=False)

    @extend_schema(operation_id="stripe_portal_session_create", summary="A link to Stripe's customer portal",
                   request=InputSerializer, responses={200: _LINK, 404: OpenApiResponse(ErrorSerializer), **_ERRORS},
                   tags=["stripe"])
    def post(self, request):
        user_id, values = self._input(request, self.InputSerializer)
        with _stripe_errors():
            link = services.portal_session_create(user_id=user_id, return_url=values.get("return_url"))
        if link is None:
            raise ApiError("This user has no Stripe customer yet: subscribe first.", code="no_stripe_customer",
                           status_code=status.HTTP_404_NOT_FOUND)
        return Response({"id": link.id, "url": link.url})
