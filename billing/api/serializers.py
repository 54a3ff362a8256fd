"""Input and output shapes of the subscription APIs."""

from django.utils import timezone
from drf_spectacular.utils import extend_schema_field, inline_serializer
from rest_framework import serializers

from billing.selectors import subscription_effective_status
from billing.statuses import Status


def _now(context) -> object:
    return context.setdefault("now", timezone.now())


class ProductRefSerializer(serializers.Serializer):
    id = serializers.CharField(help_text="The store's product or price id")
    name = serializers.CharField(allow_null=True, help_text="The catalogue label")


class ChargeSerializer(serializers.Serializer):
    amount = serializers.IntegerField(allow_null=True, help_text="Minor units (cents)")
    currency = serializers.CharField(allow_null=True)


class PeriodSerializer(serializers.Serializer):
    value = serializers.IntegerField(allow_null=True)
    unit = serializers.CharField(allow_null=True, help_text="day, week, month or year")


class SubscriptionItemSerializer(serializers.Serializer):
    """One subscription as apps and services see it (the fields Xsolla's own list shows, and more)."""

    id = serializers.SerializerMethodField(help_text="Our subscription id (use it for cancel / change-plan)")
    user_id = serializers.SerializerMethodField()
    provider = serializers.CharField()
    provider_subscription_id = serializers.CharField()
    status = serializers.SerializerMethodField(help_text="As it stands now (an entitled status past its end "
                                                         "reads EXPIRED)")
    is_entitled = serializers.SerializerMethodField()
    entitlements = serializers.SerializerMethodField()
    environment = serializers.CharField()
    product = serializers.SerializerMethodField()
    plan_id = serializers.SerializerMethodField()
    plan_name = serializers.SerializerMethodField()
    created = serializers.DateTimeField(source="created_at")
    started_at = serializers.DateTimeField(allow_null=True)
    next_charge_date = serializers.SerializerMethodField()
    last_charge_date = serializers.SerializerMethodField()
    charge = serializers.SerializerMethodField()
    period = serializers.SerializerMethodField()
    expires_at = serializers.DateTimeField(allow_null=True)
    grace_until = serializers.DateTimeField(allow_null=True)
    auto_renew = serializers.BooleanField(allow_null=True)
    canceled_at = serializers.DateTimeField(allow_null=True)
    ended_at = serializers.DateTimeField(allow_null=True)
    replaced_by = serializers.SerializerMethodField()
    last_confirmed_at = serializers.DateTimeField(source="last_verified_at", allow_null=True)

    def get_id(self, sub) -> str:
        return str(sub.pk)

    def get_user_id(self, sub) -> str | None:
        return sub.subscriber.external_id if sub.subscriber_id else None

    def get_status(self, sub) -> str:
        return str(subscription_effective_status(sub, _now(self.context)))

    def get_is_entitled(self, sub) -> bool:
        return sub.is_entitled(_now(self.context))

    def get_entitlements(self, sub) -> list[str]:
        return sorted(e.name for e in sub.product.entitlements.all()) if sub.product_id else []

    @extend_schema_field(ProductRefSerializer)
    def get_product(self, sub) -> dict:
        return {"id": sub.store_product_id or None, "name": self.get_plan_name(sub)}

    def get_plan_id(self, sub) -> str | None:
        return sub.store_product_id or None

    def get_plan_name(self, sub) -> str | None:
        return (sub.product.label or None) if sub.product_id else None

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_next_charge_date(self, sub):
        """The end of the current period while the store will renew; none otherwise."""
        if not sub.auto_renew or sub.status not in (Status.ACTIVE, Status.TRIAL, Status.ON_GRACE):
            return None
        when = sub.current_period_end or sub.expires_at
        if when is None or when <= _now(self.context):  # a lapsed period: the store's retry date is unknown
            return None
        return serializers.DateTimeField().to_representation(when)

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_last_charge_date(self, sub):
        when = getattr(sub, "last_charge_at", None)
        return serializers.DateTimeField().to_representation(when) if when else None

    @extend_schema_field(ChargeSerializer)
    def get_charge(self, sub) -> dict:
        amount = sub.upcoming_amount_minor if sub.upcoming_amount_minor is not None else sub.amount_minor
        return {"amount": amount, "currency": sub.currency or None}

    @extend_schema_field(PeriodSerializer)
    def get_period(self, sub) -> dict:
        if sub.period_unit:
            return {"value": sub.period_value, "unit": sub.period_unit}
        # Apple and Google do not say the period in what they send: the catalogue's product does (staff
        # set it when they map the product; Stripe and Xsolla fill their own).
        product = sub.product if sub.product_id else None
        if product is not None and product.period_unit:
            return {"value": product.period_value, "unit": product.period_unit}
        return {"value": None, "unit": None}

    def get_replaced_by(self, sub) -> str | None:
        return str(sub.replaced_by_id) if sub.replaced_by_id else None


class SubscriptionPageSerializer(serializers.Serializer):
    items = SubscriptionItemSerializer(many=True)
    has_more = serializers.BooleanField()
    limit = serializers.IntegerField()
    offset = serializers.IntegerField()


class PageQuerySerializer(serializers.Serializer):
    limit = serializers.IntegerField(min_value=1, max_value=100, default=15)
    offset = serializers.IntegerField(min_value=0, default=0)


class VerifyInputSerializer(serializers.Serializer):
    """The common fields; the rest of the body is the store's (see each store's fields below)."""

    provider = serializers.ChoiceField(choices=["apple", "google"])
    user_id = serializers.CharField(required=False, allow_blank=False, max_length=255,
                                    help_text="Required with an API key; with a bearer token, omitted or equal "
                                              "to the token's user")
    # Apple: one of these.
    signed_transaction = serializers.CharField(required=False)
    transaction_id = serializers.CharField(required=False)
    receipt = serializers.CharField(required=False)
    # Google.
    purchase_token = serializers.CharField(required=False)
    product_id = serializers.CharField(required=False)


class ChangePlanInputSerializer(serializers.Serializer):
    price_id = serializers.CharField(max_length=255)


ErrorSerializer = inline_serializer("Error", {"error": inline_serializer("ErrorBody", {
    "code": serializers.CharField(), "message": serializers.CharField()})})
