"""The operations console for subscriptions. Provider-synced rows are read-only: every change goes
through an action that calls a service (the one write path underneath), recording who and why. Each
store adds its own actions and list filters in billing/providers/<store>/admin.py."""

from contextlib import suppress
from contextvars import ContextVar
from datetime import timedelta
from functools import partial
from importlib import import_module

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html_join

from accounts.services import subscriber_get_or_create
from billing import staff, sweeps
from billing.explanations import explain_subscription
from billing.models import Entitlement, Product, StatusChange, Subscription, Transaction
from billing.providers import registry
from billing.providers.base import NotConfigured, NotSupported, ProviderError
from billing.providers.common import store_adapters

from . import search
from .changelist_tools import ChangelistToolsMixin
from .labels import short_time, status_filter, status_label
from .toolkit import (
    REASON,
    ReadOnlyInline,
    ReasonForm,
    UntilField,
    admin_link,
    confirm_action,
    danger,
    money,
    period,
    pretty_json,
)


def store_admin_modules() -> list:
    """billing/providers/<store>/admin.py of each store: its ACTIONS, LIST_FILTERS and (optional) URLS."""
    return [import_module(type(adapter).__module__.rpartition(".")[0] + ".admin")
            for _name, adapter in store_adapters() if adapter is not None]


_viewer: ContextVar = ContextVar("subscription_admin_viewer")


def store_actions(user=None) -> list:
    """Every store's actions (toolkit.store_action), or those `user` holds the permission of."""
    return [func for module in store_admin_modules() for func in module.ACTIONS
            if user is None or user.has_perm(func.store_action.permission)]


# --- subscriptions -------------------------------------------------------------------------------

class OrphanFilter(admin.SimpleListFilter):
    title = "user"
    parameter_name = "orphan"

    def lookups(self, request, model_admin):
        return [("yes", "orphans (no user)"), ("no", "linked to a user")]

    def queryset(self, request, queryset):
        if self.value() in ("yes", "no"):
            return queryset.filter(subscriber__isnull=self.value() == "yes")
        return queryset


class SupersededFilter(admin.SimpleListFilter):
    title = "superseded"
    parameter_name = "superseded"

    def lookups(self, request, model_admin):
        return [("yes", "superseded (replaced by another)"), ("no", "current")]

    def queryset(self, request, queryset):
        if self.value() in ("yes", "no"):
            return queryset.filter(replaced_by__isnull=self.value() == "no")
        return queryset


class EntitledNowFilter(admin.SimpleListFilter):
    title = "entitled now"
    parameter_name = "entitled"

    def lookups(self, request, model_admin):
        return [("yes", "yes"), ("no", "no"), ("lapsed", "status says entitled, but past its end")]

    def queryset(self, request, queryset):
        now = timezone.now()
        lapsed = sweeps.lapsed_subscriptions(now).values("pk")
        entitled = queryset.filter(status__in=["TRIAL", "ACTIVE", "CANCELED", "ON_GRACE"],
                                   replaced_by__isnull=True).exclude(pk__in=lapsed)
        if self.value() == "yes":
            return entitled
        if self.value() == "no":
            return queryset.exclude(pk__in=entitled.values("pk"))
        if self.value() == "lapsed":
            return queryset.filter(pk__in=lapsed)
        return queryset


class StatusChangeInline(ReadOnlyInline):
    model = StatusChange
    fields = ("recorded_at", "occurred_at", "old", "new", "ignored", "cause", "cause_ref", "staff_user", "note")
    readonly_fields = fields
    ordering = ("-recorded_at", "-id")
    verbose_name_plural = "status history (newest first)"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("staff_user")

    @admin.display(description="old status")
    def old(self, obj):
        return status_label(obj.old_status)

    @admin.display(description="new status")
    def new(self, obj):
        return status_label(obj.new_status)


class TransactionInline(ReadOnlyInline):
    model = Transaction
    fields = ("occurred_at", "kind", "provider_transaction_id", "amount", "environment")
    readonly_fields = fields

    @admin.display(description="amount")
    def amount(self, obj):
        return money(obj.amount_minor, obj.currency)


class GrantForm(forms.Form):
    entitlement = forms.ModelChoiceField(Entitlement.objects.all(), required=False,
                                         help_text="What to grant: an entitlement…")
    product = forms.ModelChoiceField(Product.objects.all(), required=False,
                                     help_text="…or a product (its entitlements).")
    until = UntilField(required=False, help_text="UTC. Empty: open-ended (until revoked).")
    reason = REASON()

    def clean(self):
        data = super().clean()
        if bool(data.get("entitlement")) == bool(data.get("product")):
            raise forms.ValidationError("Choose an entitlement or a product (one of them).")
        return data


class ExtendForm(forms.Form):
    until = UntilField(help_text="The new end, UTC.")
    reason = REASON()


class LinkForm(forms.Form):
    user_id = forms.CharField(label="User id", max_length=255, help_text="The app's user id (e.g. 1001).")
    move = forms.BooleanField(required=False, label="Move even if linked to another user",
                              help_text="Both users are told on the event stream.")
    reason = REASON()


def do_grant(user_of, request, obj, data):
    subscriber = user_of(obj)
    if subscriber is None:
        raise staff.StaffActionError("has no user: link it first")
    sub = staff.manual_grant(subscriber=subscriber, entitlement=data["entitlement"], product=data["product"],
                             until=data["until"], reason=data["reason"], staff_user=request.user)
    return f"granted to user {subscriber} until {sub.expires_at or 'revoked'} ({sub.provider_subscription_id})"


@admin.register(Subscription)
class SubscriptionAdmin(ChangelistToolsMixin, admin.ModelAdmin):
    changelist_tools = []  # finance's "Export CSV" (finance/admin_subscription_exports.py)
    list_display = ("__str__", "user", "provider", "status_label", "product", "expires", "env",
                    "entitled_now", "last_verified", "acknowledge_by")
    list_filter = ("provider", status_filter("status"), "environment", EntitledNowFilter, OrphanFilter,
                   SupersededFilter, ("product", admin.RelatedOnlyFieldListFilter))
    # What the search box and the pickers search; the matching (exact ids on indexes first, then the e-mail)
    # is billing/admin/search.py's, through get_search_results.
    search_fields = ("=subscriber__external_id", "subscriber__email", "=provider_subscription_id",
                     "=subscriber__stripe_customer_id", "=subscriber__google_obfuscated_account_id",
                     "=subscriber__xsolla_user_id")
    search_help_text = ("User id, e-mail, store subscription id, Apple transaction id, Google order id, Stripe "
                        "invoice or customer id, or a store's account token")
    list_select_related = ("subscriber", "product")
    autocomplete_fields = ("subscriber", "product", "replaced_by")
    inlines = (StatusChangeInline, TransactionInline)
    ordering = ("-created_at",)
    fieldsets = (
        (None, {"fields": ("provider", "provider_subscription_id", "user", "status_label", "status_explained",
                           "entitled_now",
                           "product_link", "store_product_id", "environment", "replaced_by_link",
                           "store_action_buttons")}),
        ("Period and price", {"fields": ("period", "amount", "upcoming_amount", "auto_renew", "started_at",
                                         "current_period_start", "current_period_end", "expires_at",
                                         "grace_until", "canceled_at", "ended_at")}),
        ("Freshness", {"fields": ("last_event_at", "last_verified_at", "acknowledgement_due_at",
                                  "acknowledged_at", "created_at", "updated_at")}),
        ("Latest raw snapshot from the store", {"classes": ("collapse",), "fields": ("raw_snapshot_pretty",)}),
    )
    readonly_fields = ("provider", "provider_subscription_id", "user", "status_label", "status_explained",
                       "entitled_now", "product_link",
                       "store_product_id", "environment", "replaced_by_link", "period", "amount",
                       "upcoming_amount", "auto_renew", "started_at", "current_period_start", "current_period_end",
                       "expires_at", "grace_until", "canceled_at", "ended_at", "last_event_at", "last_verified_at",
                       "acknowledgement_due_at", "acknowledged_at", "created_at", "updated_at",
                       "raw_snapshot_pretty", "store_action_buttons")
    actions = ("grant_access", "extend_grant", "revoke", "resync_from_store", "link_to_user")
    change_form_template = "support/change_form_with_timeline.html"  # the support timeline below the page

    # Provider-synced rows: no add, no delete, no edit form (actions only).
    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_fix_permission(self, request):
        """Grant, extend, revoke, re-sync, link: staff allowed to change subscriptions, not viewers."""
        return request.user.has_perm("billing.change_subscription")

    def get_list_filter(self, request):
        filters = list(super().get_list_filter(request))
        for module in store_admin_modules():
            filters += module.LIST_FILTERS
        return filters

    def get_actions(self, request):
        actions = super().get_actions(request)
        # The stores' own operations (e.g. Google: revoke with refund, defer), from their admin.py, each
        # offered only to staff holding its permission (refunds have their own).
        for func in store_actions(request.user):
            actions[func.__name__] = (func, func.__name__, func.short_description)
        return actions

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        own = [path("<path:object_id>/store-action/<str:name>/", self.admin_site.admin_view(self.store_action_view),
                    name="{}_{}_store_action".format(*info))]
        for module in store_admin_modules():
            for route, view, name in getattr(module, "URLS", ()):
                own.append(path(route, self.admin_site.admin_view(partial(view, self)), name=f"{info[0]}_{name}"))
        return own + super().get_urls()

    def store_action_view(self, request, object_id, name):
        """One store action for one subscription (the buttons on its page): the confirm-action page with
        its reason, then back to the subscription. 403 without the action's permission."""
        sub = get_object_or_404(Subscription.objects.select_related("subscriber"), pk=object_id)
        func = next((f for f in store_actions() if f.__name__ == name), None)
        if func is None or func.store_action.provider != sub.provider:
            raise Http404(f"No store action {name!r} for this subscription.")
        spec = func.store_action
        if not request.user.has_perm(spec.permission):
            raise PermissionDenied
        page = dict(spec.page)
        if spec.describe is not None and request.method == "GET":
            # The page works without the line; the action itself reports the store's error.
            with suppress(ProviderError, ValueError):
                page["intro"] = f"{page.get('intro', '')} {spec.describe(sub)}".strip()
        page["form_kwargs"] = {**page.get("form_kwargs", {}), "initial": request.GET.dict()}
        response = confirm_action(self, request, Subscription.objects.filter(pk=sub.pk), **page,
                                  do=lambda subscription, data: spec.run(subscription, data, request.user))
        if response is None:
            return redirect(reverse("admin:billing_subscription_change", args=[sub.pk]))
        return response

    def get_search_results(self, request, queryset, search_term):
        return search.subscriptions(queryset, search_term), False  # ids first, indexed (billing/admin/search.py)

    # display
    @admin.display(description="status", ordering="status")
    def status_label(self, obj):
        return status_label(obj.status)

    @admin.display(description="env.", ordering="environment")
    def env(self, obj):
        return obj.get_environment_display()

    @admin.display(description="expires (UTC)", ordering="expires_at")
    def expires(self, obj):
        return short_time(obj.expires_at)

    @admin.display(description="verified (UTC)", ordering="last_verified_at")
    def last_verified(self, obj):
        return short_time(obj.last_verified_at)

    @admin.display(description="user", ordering="subscriber__external_id")
    def user(self, obj):
        if obj.subscriber is None:
            return danger("orphan")
        return admin_link(obj.subscriber)

    @admin.display(boolean=True, description="entitled")
    def entitled_now(self, obj):
        return obj.is_entitled(timezone.now())

    @admin.display(description="in plain language")
    def status_explained(self, obj):
        return explain_subscription(obj, now=timezone.now()).line

    @admin.display(description="ack. by", ordering="acknowledgement_due_at")
    def acknowledge_by(self, obj):
        """A purchase the store refunds unless acknowledged by then (Google: 3 days); red within a day."""
        if obj.acknowledgement_due_at is None or obj.acknowledged_at is not None:
            return "—"
        due = f"{obj.acknowledgement_due_at:%Y-%m-%d %H:%M} UTC"
        if obj.acknowledgement_due_at - timezone.now() < timedelta(days=1):
            return danger(due)
        return due

    @admin.display(description="product")
    def product_link(self, obj):
        return admin_link(obj.product)

    @admin.display(description="replaced by")
    def replaced_by_link(self, obj):
        return admin_link(obj.replaced_by)

    @admin.display(description="period")
    def period(self, obj):
        return period(obj)

    @admin.display(description="amount")
    def amount(self, obj):
        return money(obj.amount_minor, obj.currency)

    @admin.display(description="upcoming amount")
    def upcoming_amount(self, obj):
        return money(obj.upcoming_amount_minor, obj.currency)

    @admin.display(description="at the store")
    def store_action_buttons(self, obj):
        """The store's own actions this staff member may run on this subscription, each a button to its
        confirmation page."""
        buttons = [(reverse("admin:billing_subscription_store_action", args=[obj.pk, f.__name__]),
                    f.short_description) for f in store_actions(_viewer.get(None)) if
                   f.store_action.provider == obj.provider]
        if not buttons:
            return "—"
        return format_html_join(" ", '<a class="button store-action" href="{}">{}</a>', buttons)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        # The buttons depend on who looks; the admin instance is shared by every request, so the viewer
        # travels in a context variable, and the page is rendered while it is set.
        token = _viewer.set(request.user)
        try:
            response = super().change_view(request, object_id, form_url, extra_context)
            if hasattr(response, "render"):
                response.render()
            return response
        finally:
            _viewer.reset(token)

    @admin.display(description="raw snapshot")
    def raw_snapshot_pretty(self, obj):
        return pretty_json(obj.raw_snapshot)

    # actions
    @admin.action(description="Grant access to the user (a staff grant beside it)", permissions=["fix"])
    def grant_access(self, request, queryset):
        return confirm_action(
            self, request, queryset.select_related("subscriber"), form_class=GrantForm, title="Grant access",
            intro="Each selected subscription's user gets a new staff grant (provider: manual).",
            submit="Grant", do=partial(do_grant, lambda sub: sub.subscriber, request))

    @admin.action(description="Extend a staff grant", permissions=["fix"])
    def extend_grant(self, request, queryset):
        def do(sub, data):
            sub = staff.manual_extend(subscription=sub, until=data["until"], reason=data["reason"],
                                      staff_user=request.user)
            return f"extended until {sub.expires_at:%Y-%m-%d %H:%M} UTC"

        return confirm_action(self, request, queryset, form_class=ExtendForm, title="Extend staff grants",
                             intro="Only staff grants (provider: manual) can be extended here; store "
                                   "subscriptions are extended in their store.", submit="Extend", do=do)

    @admin.action(description="Revoke access now", permissions=["fix"])
    def revoke(self, request, queryset):
        def do(sub, data):
            staff.subscription_revoke(subscription=sub, reason=data["reason"], staff_user=request.user)
            return "revoked"

        return confirm_action(
            self, request, queryset, form_class=ReasonForm, title="Revoke access", submit="Revoke",
            intro="Access ends now (status REVOKED, published on the event stream). For a store subscription "
                  "this neither cancels nor refunds at the store, and the store's next event (a renewal) "
                  "overrides it: cancel or refund in the store too.", do=do)

    @admin.action(description="Re-sync from the store", permissions=["fix"])
    def resync_from_store(self, request, queryset):
        def do(sub, data):
            try:
                result = staff.subscription_resync_by_staff(subscription=sub, reason=data["reason"],
                                                            staff_user=request.user)
            except (NotSupported, NotConfigured, registry.UnknownProvider) as exc:
                raise staff.StaffActionError(f"cannot be re-synced ({exc})") from None
            except ProviderError as exc:
                raise staff.StaffActionError(f"the store did not answer ({exc}); try again later") from None
            return f"{result.outcome} ({result.old_status} → {result.new_status})"

        return confirm_action(self, request, queryset, form_class=ReasonForm, title="Re-sync from the store",
                              submit="Re-sync", do=do,
                              intro="Each subscription's state is read again from its store and applied.")

    @admin.action(description="Link to a user (orphans) or move to another user", permissions=["fix"])
    def link_to_user(self, request, queryset):
        def do(sub, data):
            if sub.subscriber is not None and not data["move"]:
                raise staff.StaffActionError(f"already linked to user {sub.subscriber}; tick 'move' to move it")
            subscriber = subscriber_get_or_create(external_id=data["user_id"])
            staff.subscription_move(subscription=sub, subscriber=subscriber, reason=data["reason"],
                                    staff_user=request.user, allow_move=data["move"])
            return f"linked to user {subscriber}"

        return confirm_action(self, request, queryset.select_related("subscriber"), form_class=LinkForm,
                             title="Link to a user", submit="Link",
                             intro="The user's access is published on the event stream.", do=do)
