"""Google Play's staff actions and list filter for the subscriptions admin (collected by
billing/admin/subscriptions.py): revoke with a full or prorated refund, and defer the next renewal.
Each asks for a reason on the confirm-action page, goes to Google first, then re-reads the purchase
and applies it, recording who and why in the audit log (revoking with a refund needs
billing.refund_at_store). The filter shows purchases close to their acknowledgement deadline."""

from datetime import timedelta

from django import forms
from django.contrib import admin
from django.utils import timezone

from billing.admin.toolkit import REASON, store_action
from billing.providers.staff_changes import REFUND_PERMISSION
from billing.snapshots import Provider

from . import selectors, services


class RevokeForm(forms.Form):
    refund = forms.ChoiceField(choices=[("full", "Full refund"), ("prorated", "Prorated refund (unused time)")])
    reason = REASON()


class DeferForm(forms.Form):
    days = forms.IntegerField(min_value=1, max_value=services.MAX_DEFER_DAYS,
                              help_text="The next renewal (and the charge) moves this many days later, free.")
    reason = REASON()


def _revoke(subscription, data, staff_user) -> str:
    services.subscription_revoke_at_google(subscription=subscription, refund=data["refund"], reason=data["reason"],
                                           staff_user=staff_user)
    return f"revoked at Google with a {data['refund']} refund, and re-read"


def _defer(subscription, data, staff_user) -> str:
    services.subscription_defer_at_google(subscription=subscription, days=data["days"], reason=data["reason"],
                                          staff_user=staff_user)
    return f"next renewal deferred by {data['days']} days at Google, and re-read"


google_revoke_with_refund = store_action(
    "google_revoke_with_refund", description="Google: revoke with a refund (access ends now)",
    provider=Provider.GOOGLE, store="Google Play", run=_revoke, permission=REFUND_PERMISSION, form_class=RevokeForm,
    title="Revoke at Google Play", submit="Revoke and refund",
    intro="Google refunds the user and ends access at once. This cannot be undone.")

google_defer_renewal = store_action(
    "google_defer_renewal", description="Google: defer the next renewal (free extension)",
    provider=Provider.GOOGLE, store="Google Play", run=_defer, form_class=DeferForm,
    title="Defer renewal at Google Play", submit="Defer", intro="The user keeps access and is charged later.")


class AcknowledgementDeadlineFilter(admin.SimpleListFilter):
    """Google purchases not acknowledged yet: Google refunds them 3 days after purchase."""

    title = "Google acknowledgement"
    parameter_name = "google_ack"

    def lookups(self, request, model_admin):
        return [("24h", "due within 24 hours"), ("awaiting", "awaiting acknowledgement"),
                ("overdue", "deadline passed")]

    def queryset(self, request, queryset):
        if self.value() is None:
            return queryset
        if self.value() == "overdue":
            ids = selectors.subscriptions_awaiting_acknowledgement(include_overdue_days=30).filter(
                acknowledgement_due_at__lt=timezone.now())
        elif self.value() == "24h":
            ids = selectors.subscriptions_awaiting_acknowledgement(due_within=timedelta(hours=24))
        else:
            ids = selectors.subscriptions_awaiting_acknowledgement()
        return queryset.filter(pk__in=ids.values("pk"))


ACTIONS = (google_revoke_with_refund, google_defer_renewal)
LIST_FILTERS = (AcknowledgementDeadlineFilter,)
