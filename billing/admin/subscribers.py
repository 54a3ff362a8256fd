"""Subscribers (the apps' users), found by any of their ids at any store, with their subscriptions
and a staff grant."""

from functools import partial

from django import forms
from django.contrib import admin
from django.utils import timezone

from accounts.models import Subscriber
from audit.records import record
from billing.explanations import explain_subscription
from billing.models import Subscription

from . import search
from .labels import status_label
from .subscriptions import GrantForm, do_grant
from .toolkit import REASON, ReadOnlyInline, admin_link, confirm_action


class SubscriptionInline(ReadOnlyInline):
    model = Subscription
    fk_name = "subscriber"
    fields = ("link", "provider", "status_label", "explained", "product", "expires_at", "environment", "entitled_now",
              "superseded")
    readonly_fields = fields
    ordering = ("-created_at",)
    verbose_name_plural = "subscriptions (newest first)"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("product")

    @admin.display(description="subscription")
    def link(self, obj):
        return admin_link(obj, obj.provider_subscription_id)

    @admin.display(boolean=True, description="entitled now")
    def entitled_now(self, obj):
        return obj.is_entitled(timezone.now())

    @admin.display(description="in plain language")
    def explained(self, obj):
        return explain_subscription(obj, now=timezone.now()).line

    @admin.display(description="status")
    def status_label(self, obj):
        return status_label(obj.status)

    @admin.display(boolean=True, description="superseded")
    def superseded(self, obj):
        return obj.replaced_by_id is not None


class SubscriberForm(forms.ModelForm):
    """The subscriber's identities, edited only with a reason (kept in the audit log with before/after)."""

    reason = REASON(help_text="Required. Why these identities change; kept in the audit log with your name.")

    class Meta:
        model = Subscriber
        fields = ("external_id", "email", *Subscriber.IDENTITY_FIELDS)


def _plain(value):
    return str(value) if value is not None else None


@admin.register(Subscriber)
class SubscriberAdmin(admin.ModelAdmin):
    form = SubscriberForm
    list_display = ("external_id", "email", "stripe_customer_id", "apple_app_account_token",
                    "google_obfuscated_account_id", "xsolla_user_id", "created_at")
    # What the search box and the pickers search; the matching (exact ids on indexes first, also their purchases'
    # ids, then the e-mail) is billing/admin/search.py's, through get_search_results.
    search_fields = ("=external_id", "email", "=stripe_customer_id", "=google_obfuscated_account_id",
                     "=xsolla_user_id")
    search_help_text = ("User id, e-mail, a store's customer id / account token, or any store id of their "
                        "purchases: subscription, Apple transaction id, Google order id, Stripe invoice")
    fieldsets = (
        (None, {"fields": ("external_id", "email")}),
        ("Store identities", {"fields": ("stripe_customer_id", "apple_app_account_token",
                                         "google_obfuscated_account_id", "xsolla_user_id"),
                              "description": "How each store's events find this user. Each belongs to one user."}),
        ("Why", {"fields": ("reason",)}),
        (None, {"fields": ("created_at", "updated_at")}),
    )
    readonly_fields = ("created_at", "updated_at")
    inlines = (SubscriptionInline,)
    actions = ("grant_access",)
    change_form_template = "support/change_form_with_timeline.html"  # the timeline and the note form below

    def has_fix_permission(self, request):
        return request.user.has_perm("billing.change_subscription")  # as for the subscriptions' own actions

    def get_readonly_fields(self, request, obj=None):
        # The app's user id is the key everything (events, cache, API) is addressed by: fixed once made.
        return self.readonly_fields + (("external_id",) if obj is not None else ())

    def save_model(self, request, obj, form, change):
        """Saved and recorded together (the admin's change view runs in one transaction): who, why,
        and each changed field's value before and after."""
        changed = [name for name in form.changed_data if name != "reason"]
        before = {name: _plain(form.initial.get(name)) for name in changed} if change else {}
        super().save_model(request, obj, form, change)
        if change and not changed:
            return  # saved as it was: nothing to record
        record(actor=request.user, action="identity_edit" if change else "subscriber_add",
               reason=form.cleaned_data["reason"], subscriber=obj, target=f"accounts.subscriber:{obj.pk}",
               details={"changed": changed, "before": before,
                        "after": {name: _plain(getattr(obj, name)) for name in changed}})

    def get_search_results(self, request, queryset, search_term):
        return search.subscribers(queryset, search_term), False  # ids first, indexed (billing/admin/search.py)

    @admin.action(description="Grant access (a staff grant)", permissions=["fix"])
    def grant_access(self, request, queryset):
        return confirm_action(self, request, queryset, form_class=GrantForm, title="Grant access",
                             intro="Each selected user gets a new staff grant (provider: manual).", submit="Grant",
                             do=partial(do_grant, lambda subscriber: subscriber, request))
