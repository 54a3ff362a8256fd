"""The App Store's own staff actions for the subscriptions admin (collected by billing/admin/subscriptions.py):
extend the renewal date, answer a CONSUMPTION_REQUEST with consumption information, and (URLS) look up
an order id from a receipt e-mail. Each action asks for a reason on the confirm-action page, goes to
Apple's App Store Server API, then re-reads Apple's state and applies it (services.py)."""

from decimal import Decimal
from urllib.parse import urlencode

from django import forms
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html

from billing.admin.toolkit import REASON, store_action
from billing.models import Subscription
from billing.providers.base import ProviderError
from billing.providers.staff_changes import StoreActionError
from billing.snapshots import Provider, TransactionKind

from . import services


class ExtendForm(forms.Form):
    days = forms.IntegerField(min_value=1, max_value=services.MAX_EXTEND_DAYS,
                              help_text="The current period ends this many days later, free (Apple: 1 to 90; at "
                                        "most two extensions per subscription a year).")
    reason_code = forms.TypedChoiceField(label="Apple's reason code", coerce=int, initial=1,
                                         choices=sorted(services.EXTEND_REASONS.items()))
    reason = REASON()


class ConsumptionForm(forms.Form):
    transaction_id = forms.CharField(required=False, max_length=32,
                                     help_text="The transaction the CONSUMPTION_REQUEST names. Empty: this "
                                               "subscription's latest payment.")
    customer_consented = forms.BooleanField(
        required=True, label="The customer consented",
        help_text="Required by Apple: the customer agreed to share consumption data (Apple refuses the answer "
                  "otherwise).")
    sample_content_provided = forms.BooleanField(required=False, label="A sample or free trial was offered")
    delivery_status = forms.ChoiceField(choices=[(s, s.replace("_", " ").capitalize())
                                                 for s in services.DELIVERY_STATUSES], initial="DELIVERED")
    consumption_percentage = forms.DecimalField(
        required=False, min_value=0, max_value=100, decimal_places=3, label="Consumed (%)",
        help_text="How much of the purchase was used, 0 to 100 (e.g. the share of the period elapsed). Optional.")
    refund_preference = forms.ChoiceField(required=False, choices=[("", "No preference (Apple decides)")] + [
        (p, p.replace("_", " ").capitalize()) for p in services.REFUND_PREFERENCES])
    reason = REASON()


def _extend(subscription, data, staff_user) -> str:
    result = services.subscription_extend_at_apple(subscription=subscription, days=data["days"],
                                                   reason_code=data["reason_code"], reason=data["reason"],
                                                   staff_user=staff_user)
    return f"renewal date extended by {data['days']} days at Apple, and re-read ({result.outcome})"


def _latest_payment(subscription) -> str:
    latest = subscription.transactions.filter(kind__in=[TransactionKind.PURCHASE, TransactionKind.RENEWAL]).order_by(
        "-occurred_at").first()
    if latest is None:
        raise StoreActionError("No payment of this subscription is recorded here: give the transaction id.")
    return latest.provider_transaction_id


def _answer(subscription, data, staff_user) -> str:
    percentage = data.get("consumption_percentage")
    answer = services.ConsumptionAnswer(
        customer_consented=data["customer_consented"], sample_content_provided=data["sample_content_provided"],
        delivery_status=data["delivery_status"], refund_preference=data.get("refund_preference") or "",
        consumption_percentage=None if percentage is None else int(Decimal(percentage) * 1000))
    transaction_id = data.get("transaction_id") or _latest_payment(subscription)
    services.consumption_answer_at_apple(subscription=subscription, transaction_id=transaction_id, answer=answer,
                                        reason=data["reason"], staff_user=staff_user)
    return f"consumption information for transaction {transaction_id} sent to Apple"


apple_extend_renewal_date = store_action(
    "apple_extend_renewal_date", description="Apple: extend the renewal date (free days)", provider=Provider.APPLE,
    store="App Store", run=_extend, form_class=ExtendForm, title="Extend the renewal date at Apple",
    submit="Extend", intro="Apple moves the end of the current period later: the user keeps access and is "
                           "charged later. Apple allows two extensions per subscription a year.")

apple_answer_consumption_request = store_action(
    "apple_answer_consumption_request", description="Apple: answer a refund request (consumption information)",
    provider=Provider.APPLE, store="App Store", run=_answer, form_class=ConsumptionForm,
    title="Answer Apple's consumption request", submit="Send to Apple",
    intro="The user asked Apple for a refund (a CONSUMPTION_REQUEST); Apple decides within 12 hours of it and "
          "weighs what you send. Nothing changes here until Apple decides (REFUND or REFUND_DECLINED).")


class OrderLookupForm(forms.Form):
    order_id = forms.CharField(label="Order ID", max_length=64,
                               help_text="From the customer's App Store receipt e-mail (e.g. MK5TTTVWJH).")


def order_lookup_view(modeladmin, request):
    """A search box: the transactions of an order and the subscriptions we hold for them (staff who may
    view subscriptions)."""
    if not modeladmin.has_view_permission(request):
        raise PermissionDenied
    form = OrderLookupForm(request.GET or None)
    found, error = None, ""
    if form.is_valid():
        try:
            found = services.order_look_up(order_id=form.cleaned_data["order_id"])
        except (StoreActionError, ProviderError) as exc:
            error = str(exc)
    context = {**modeladmin.admin_site.each_context(request), "title": "Apple: look up an order id", "form": form,
               "found": found, "error": error, "opts": modeladmin.model._meta}
    return TemplateResponse(request, "admin/billing/apple_order_lookup.html", context)


ACTIONS = (apple_extend_renewal_date, apple_answer_consumption_request)
LIST_FILTERS = ()
URLS = (("apple-order-lookup/", order_lookup_view, "apple_order_lookup"),)


def consumption_request_link(event) -> str:
    """On a CONSUMPTION_REQUEST webhook event's page: a button to answer it (the form above, for the
    subscription we hold, with the transaction filled in); "" for any other event."""
    if event.provider != Provider.APPLE or not (event.event_type or "").startswith("CONSUMPTION_REQUEST"):
        return ""
    transaction = (event.payload or {}).get("transaction") or {}
    subscription = Subscription.objects.filter(
        provider=Provider.APPLE, provider_subscription_id=str(transaction.get("originalTransactionId") or "")).first()
    if subscription is None or not transaction.get("transactionId"):
        return ""
    url = reverse("admin:billing_subscription_store_action",
                  args=[subscription.pk, apple_answer_consumption_request.__name__])
    return format_html('<a class="button" href="{}?{}">Answer this refund request at Apple</a>', url,
                       urlencode({"transaction_id": transaction["transactionId"]}))
