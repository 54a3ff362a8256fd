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
from audit.records import record_api_call
from billing import selectors
from billing.providers.stripe import services
from config.api_errors import ApiError

from .errors import provider_errors
from .serializers import ErrorSerializer, SubscriptionItemSerializer, UserIdField
from .throttles import payment_declines

_ERRORS = {code: OpenApiResponse(ErrorSerializer) for code in (400, 401, 402, 403, 429, 502, 503)}
# Stripe's refusals as API errors: 402 card declined (Stripe's code and decline_code), 400 with Stripe's code and
# the parameter at fault, or ours (price_not_offered, return_url_not_allowed), 502 Stripe unavailable or
# refusing our key, 503 not configured; 429 after too many declines for the user (payment_declines: subscribe,
# Checkout, SetupIntents).
_stripe_errors = partial(provider_errors, "stripe", not_supported_status=409)
_RETURN_URL_HELP = "On a host in STRIPE_RETURN_URL_ALLOWED_HOSTS (else 400 return_url_not_allowed)"
_LINK = inline_serializer("StripeSessionLink", {"id": serializers.CharField(), "url": serializers.URLField()})


def _return_url(**kwargs) -> serializers.CharField:
    # Any text up to the limit: whether it is an http(s) URL on our hosts is one check in the service
    # (400 return_url_not_allowed for every bad URL, malformed or foreign).
    return serializers.CharField(trim_whitespace=False, min_length=1, max_length=2000, help_text=_RETURN_URL_HELP,
                                 **kwargs)


def _price_id() -> serializers.CharField:
    return serializers.CharField(trim_whitespace=False, min_length=1, max_length=255,
                                 help_text="An offered price (else 400 price_not_offered)")


# Distinct top-level names: the schema's components are named after the classes (no two `Input`s).
class StripeUserInputSerializer(serializers.Serializer):
    user_id = UserIdField(required=False, help_text="Required for services; end users may omit it (their own)")


class _StripeApi(APIView):
    permission_classes = [CanManage]

    def _input(self, request, serializer_class) -> tuple[str, dict]:
        data = serializer_class(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        return acting_user_id(request.user, values.pop("user_id", None)), values


class StripeSetupIntentSerializer(serializers.Serializer):
    setup_intent_id = serializers.CharField()
    client_secret = serializers.CharField()
    customer_id = serializers.CharField()
    status = serializers.CharField()
    requires_action = serializers.BooleanField()


class StripeSubscriptionCreateInputSerializer(StripeUserInputSerializer):
    price_id = _price_id()
    payment_method_id = serializers.CharField(trim_whitespace=False, min_length=1, max_length=255)


class StripeSubscriptionCreatedSerializer(serializers.Serializer):
    subscription = SubscriptionItemSerializer()
    requires_action = serializers.BooleanField()
    client_secret = serializers.CharField(allow_null=True)


class StripeCheckoutSessionInputSerializer(StripeUserInputSerializer):
    price_id = _price_id()
    success_url = _return_url()
    cancel_url = _return_url()


class StripePortalSessionInputSerializer(StripeUserInputSerializer):
    return_url = _return_url(required=False)


class SetupIntentApi(_StripeApi):
    @extend_schema(operation_id="stripe_setup_intent_create", summary="Set up a payment method (off-session)",
                   request=StripeUserInputSerializer, responses={200: StripeSetupIntentSerializer, **_ERRORS},
                   tags=["stripe"])
    def post(self, request):
        user_id, _ = self._input(request, StripeUserInputSerializer)
        with _stripe_errors(), payment_declines(user_id):
            result = services.setup_intent_create(user_id=user_id)
        return Response(StripeSetupIntentSerializer(result).data)


class SubscriptionCreateApi(_StripeApi):
    @extend_schema(operation_id="stripe_subscription_create", summary="Subscribe with a saved payment method",
                   request=StripeSubscriptionCreateInputSerializer,
                   responses={201: StripeSubscriptionCreatedSerializer, **_ERRORS}, tags=["stripe"])
    def post(self, request):
        user_id, values = self._input(request, StripeSubscriptionCreateInputSerializer)
        with _stripe_errors(), payment_declines(user_id):
            started = services.subscription_start(user_id=user_id, price_id=values["price_id"],
                                                  payment_method_id=values["payment_method_id"],
                                                  actor=str(request.user))
        record_api_call(actor=request.user, action="api_stripe_subscribe", user_id=user_id,
                        subscription_id=started.subscription.pk,
                        details={"price_id": values["price_id"], "status": started.subscription.status,
                                 "requires_action": started.requires_action})
        subscription = selectors.subscription_get(subscription_id=started.subscription.pk)
        body = {"subscription": subscription, "requires_action": started.requires_action,
                "client_secret": started.client_secret}
        return Response(StripeSubscriptionCreatedSerializer(body, context={"now": timezone.now()}).data,
                        status=status.HTTP_201_CREATED)


class CheckoutSessionApi(_StripeApi):
    @extend_schema(operation_id="stripe_checkout_session_create", summary="Start Stripe Checkout",
                   request=StripeCheckoutSessionInputSerializer, responses={200: _LINK, **_ERRORS}, tags=["stripe"])
    def post(self, request):
        user_id, values = self._input(request, StripeCheckoutSessionInputSerializer)
        with _stripe_errors(), payment_declines(user_id):
            link = services.checkout_session_create(user_id=user_id, **values)
        return Response({"id": link.id, "url": link.url})


class PortalSessionApi(_StripeApi):
    @extend_schema(operation_id="stripe_portal_session_create", summary="A link to Stripe's customer portal",
                   request=StripePortalSessionInputSerializer,
                   responses={200: _LINK, 404: OpenApiResponse(ErrorSerializer), **_ERRORS}, tags=["stripe"])
    def post(self, request):
        user_id, values = self._input(request, StripePortalSessionInputSerializer)
        with _stripe_errors():
            link = services.portal_session_create(user_id=user_id, return_url=values.get("return_url"))
        if link is None:
            raise ApiError("This user has no Stripe customer yet: subscribe first.", code="no_stripe_customer",
                           status_code=status.HTTP_404_NOT_FOUND)
        return Response({"id": link.id, "url": link.url})
