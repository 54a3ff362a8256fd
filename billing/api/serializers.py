"""Input and output shapes of the subscription APIs."""

from django.utils import timezone
from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema_field, inline_serializer
from rest_framework import serializers

from billing.selectors import subscription_effective_status
from billing.statuses import Status

from .inputs import USER_ID_MAX_LENGTH, USER_ID_PATTERN, USER_ID_RULE


def _now(context) -> object:
    return context.setdefault("now", timezone.now())


class ProductRefSerializer(serializers.Serializer):
    id = serializers.CharField(allow_null=True, help_text="The store's product or price id (null while the store "
                                                          "has not said it, e.g. a subscription known only by id)")
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


class WarningSubscriptionSerializer(serializers.Serializer):
    id = serializers.CharField()
    provider = serializers.CharField()
    provider_subscription_id = serializers.CharField()
    product_id = serializers.CharField(allow_null=True)
    status = serializers.CharField()


class VerifyWarningSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="`double_payment`: the user now pays twice for the same entitlement")
    message = serializers.CharField(help_text="Plain language, for the app to show or adapt")
    entitlements = serializers.ListField(child=serializers.CharField())
    subscriptions = WarningSubscriptionSerializer(many=True, help_text="The two subscriptions paying for it")


class VerifyResultSerializer(SubscriptionItemSerializer):
    """The verify API's answer: the subscription item, and what the app may want to tell the user."""

    warnings = VerifyWarningSerializer(many=True, read_only=True, help_text="Empty when there is nothing to tell")


class SubscriptionPageSerializer(serializers.Serializer):
    items = SubscriptionItemSerializer(many=True)
    has_more = serializers.BooleanField()
    limit = serializers.IntegerField()
    offset = serializers.IntegerField()


OFFSET_MAX = 10_000  # a user's history is a few dozen subscriptions; bounds the database's OFFSET too


class PageQuerySerializer(serializers.Serializer):
    limit = serializers.IntegerField(min_value=1, max_value=100, default=15, help_text="1 to 100 (default 15)")
    offset = serializers.IntegerField(min_value=0, max_value=OFFSET_MAX, default=0,
                                      help_text=f"0 to {OFFSET_MAX} (default 0)")


class UserIdField(serializers.RegexField):
    """A user id in a body: as in a path (inputs.USER_ID_PATTERN), taken as sent (no trimming)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("error_messages", {"invalid": f"Not a user id: {USER_ID_RULE}."})
        super().__init__(USER_ID_PATTERN, max_length=USER_ID_MAX_LENGTH, trim_whitespace=False, **kwargs)


# Limits on what an app sends to verify, generous for what the stores issue: a Google purchase token is
# a few hundred characters, an App Store transaction id about 16 digits, a StoreKit 2 signed transaction
# (a JWS with its certificate chain) about 6 KB; an app receipt grows with the user's purchase history.
PURCHASE_TOKEN_MAX = 4096
PRODUCT_ID_MAX = 255
TRANSACTION_ID_MAX = 32
SIGNED_TRANSACTION_MAX = 64 * 1024
RECEIPT_MAX = 1024 * 1024
# Taken as sent (no trimming): white space is for the store to refuse, as it refuses any token it never issued.


class _VerifyBase(serializers.Serializer):
    user_id = UserIdField(required=False, help_text="Required with an API key; with a bearer token, omitted or "
                                                    "equal to the token's user")


class AppleSignedTransactionVerifySerializer(_VerifyBase):
    provider = serializers.ChoiceField(choices=["apple"])
    signed_transaction = serializers.CharField(trim_whitespace=False, min_length=1, max_length=SIGNED_TRANSACTION_MAX,
                                                help_text="StoreKit 2's JWS transaction")


class AppleTransactionIdVerifySerializer(_VerifyBase):
    provider = serializers.ChoiceField(choices=["apple"])
    transaction_id = serializers.RegexField(rf"^[0-9]{{1,{TRANSACTION_ID_MAX}}}$", max_length=TRANSACTION_ID_MAX,
                                            help_text="An App Store (original) transaction id: digits")


class AppleReceiptVerifySerializer(_VerifyBase):
    provider = serializers.ChoiceField(choices=["apple"])
    receipt = serializers.CharField(trim_whitespace=False, min_length=1, max_length=RECEIPT_MAX,
                                    help_text="A base64 app receipt (legacy)")


class GoogleVerifySerializer(_VerifyBase):
    provider = serializers.ChoiceField(choices=["google"])
    purchase_token = serializers.CharField(trim_whitespace=False, min_length=1, max_length=PURCHASE_TOKEN_MAX,
                                            help_text="The token Google Play Billing returned")
    product_id = serializers.CharField(trim_whitespace=False, min_length=1, max_length=PRODUCT_ID_MAX, required=False,
                                        help_text="When given, the purchase must be for it")


# Apple takes exactly one of its three forms of a purchase: a body must match exactly one of these
# (`oneOf`; additional properties are allowed and ignored), which is also how the view reads it.
APPLE_VERIFY_SERIALIZERS = {"signed_transaction": AppleSignedTransactionVerifySerializer,
                            "transaction_id": AppleTransactionIdVerifySerializer,
                            "receipt": AppleReceiptVerifySerializer}
VERIFY_SERIALIZERS = [*APPLE_VERIFY_SERIALIZERS.values(), GoogleVerifySerializer]
VerifyRequestSerializer = PolymorphicProxySerializer(
    component_name="VerifyRequest", resource_type_field_name=None,
    serializers=VERIFY_SERIALIZERS)


class ChangePlanInputSerializer(serializers.Serializer):
    price_id = serializers.CharField(trim_whitespace=False, min_length=1, max_length=255,
                                     help_text="The Stripe price to move to")


ErrorSerializer = inline_serializer("Error", {"error": inline_serializer("ErrorBody", {
    "code": serializers.CharField(), "message": serializers.CharField()})})
