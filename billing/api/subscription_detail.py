"""`GET /api/subscriptions/<id>`: one subscription, the list item's fields plus its status in plain
language (billing/explanations.py). Read like the list: a service key with `read`, or the end user who
owns it; any other end user gets 404, as for an id that does not exist, so ids do not leak."""

from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import CanRead
from billing import selectors
from billing.explanations import explain_subscription
from config.api_errors import ApiError

from .inputs import SUBSCRIPTION_ID_SCHEMA, subscription_pk
from .serializers import ErrorSerializer, SubscriptionItemSerializer


class SubscriptionDetailSerializer(SubscriptionItemSerializer):
    status_label = serializers.SerializerMethodField(help_text="The status for people, e.g. \"In grace period\"")
    explanation = serializers.SerializerMethodField(
        help_text="One line that says why the subscription is in its status and until when, in UTC and "
                  "relative to now, e.g. \"In grace period: the renewal payment failed 3 Dec 2026 10:00 UTC "
                  "(2 days ago); Google keeps access until 10 Dec 2026 10:00 UTC (in 5 days) while it retries.\"")

    def _explanation(self, sub):
        cache = self.context.setdefault("explanations", {})
        if sub.pk not in cache:
            cache[sub.pk] = explain_subscription(sub, now=self.context["now"])
        return cache[sub.pk]

    def get_status_label(self, sub) -> str:
        return self._explanation(sub).label

    def get_explanation(self, sub) -> str:
        return self._explanation(sub).line


def _not_found() -> ApiError:
    return ApiError("Not found.", code="not_found", status_code=404)


class SubscriptionDetailApi(APIView):
    permission_classes = [CanRead]

    @extend_schema(
        operation_id="subscriptions_retrieve", summary="One subscription, with its status explained",
        description="A service key with the `read` scope, or the end user who owns the subscription. Another "
                    "user's subscription answers 404, as an unknown id does.",
        parameters=[OpenApiParameter("subscription_id", SUBSCRIPTION_ID_SCHEMA, OpenApiParameter.PATH)],
        responses={200: SubscriptionDetailSerializer,
                   **{code: OpenApiResponse(ErrorSerializer) for code in (401, 403, 404)}},
        tags=["subscriptions"])
    def get(self, request, subscription_id: str):
        pk = subscription_pk(subscription_id)
        sub = selectors.subscription_get(subscription_id=pk) if pk is not None else None
        if sub is None:
            raise _not_found()
        if request.user.is_end_user:
            owner = sub.subscriber.external_id if sub.subscriber_id else None
            if owner != request.user.user_id:
                raise _not_found()
        return Response(SubscriptionDetailSerializer(sub, context={"now": timezone.now()}).data)
