"""The operations console for subscriptions. Provider-synced rows are read-only: every change goes
through an action that calls a service (apply_snapshot underneath), recording who and why."""

import json
import logging
import uuid
from datetime import UTC, datetime, time, timedelta
from functools import partial

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.db.models import Count, Q
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from accounts.services import subscriber_get_or_create

from . import entitlement_cache, outbox, staff, sweeps, tasks
from .models import Entitlement, Outbox, Product, StatusChange, Subscription, Transaction
from .money import format_minor
from .providers import registry
from .providers.base import NotConfigured, NotSupported, ProviderError
from .services import subscription_link_subscriber
from .snapshots import Cause, CauseKind

logger = logging.getLogger(__name__)

ACTION_TEMPLATE = "admin/billing/action_form.html"


# --- shared pieces -------------------------------------------------------------------------------

def pretty_json(data) -> str:
    return format_html("<pre style='white-space: pre-wrap; max-width: 70em'>{}</pre>",
                       json.dumps(data or {}, indent=2, sort_keys=True, ensure_ascii=False))


def money(amount_minor, currency) -> str:
    return format_minor(amount_minor, currency)  # display only; stored as integer minor units


def admin_link(obj, label=None) -> str:
    if obj is None:
        return "—"
    url = reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])
    return format_html('<a href="{}">{}</a>', url, label if label is not None else obj)


class UntilField(forms.DateTimeField):
    """A date (end of that day, UTC) or a date and time, in UTC."""

    def __init__(self, **kwargs):
        kwargs.setdefault("input_formats", ["%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d"])
        kwargs.setdefault("widget", forms.DateTimeInput(attrs={"placeholder": "YYYY-MM-DD [HH:MM] UTC"}))
        super().__init__(**kwargs)

    def to_python(self, value):
        result = super().to_python(value)
        if result is not None and isinstance(value, str) and len(value.strip()) == 10:
            result = datetime.combine(result.date(), time(23, 59, 59))
        if result is not None and timezone.is_naive(result):
            result = result.replace(tzinfo=UTC)
        return result


REASON = partial(forms.CharField, widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
                 help_text="Required. Kept in the subscription's history with your name.")


def run_with_form(modeladmin, request, queryset, *, form_class, title, intro, submit, do, form_kwargs=None):
    """An action with an intermediate page: show the form; on submit call `do(obj, cleaned_data)` per object.
    `do` returns a message or raises StaffActionError / ProviderError (shown, the others still run)."""
    objects = list(queryset)
    form_kwargs = form_kwargs or {}
    form = form_class(request.POST, **form_kwargs) if "apply" in request.POST else form_class(**form_kwargs)
    if "apply" in request.POST and form.is_valid():
        done = 0
        for obj in objects:
            try:
                note = do(obj, form.cleaned_data)
            except (staff.StaffActionError, ProviderError, ValueError) as exc:
                modeladmin.message_user(request, f"{obj}: {exc}", messages.ERROR)
                continue
            done += 1
            if note:
                modeladmin.message_user(request, f"{obj}: {note}", messages.SUCCESS)
        if done and len(objects) > 1:
            modeladmin.message_user(request, f"{title}: {done} of {len(objects)} done.", messages.SUCCESS)
        return None
    context = {**modeladmin.admin_site.each_context(request), "title": title, "intro": intro, "form": form,
               "objects": objects, "action": request.POST.get("action", ""), "submit": submit,
               "opts": modeladmin.model._meta, "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME}
    return TemplateResponse(request, ACTION_TEMPLATE, context)


# --- catalogue -----------------------------------------------------------------------------------

class MappingFilter(admin.SimpleListFilter):
    title = "mapping"
    parameter_name = "mapping"

    def lookups(self, request, model_admin):
        return [("unmapped", "unmapped (grants nothing)"), ("mapped", "grants entitlements")]

    def queryset(self, request, queryset):
        if self.value() == "unmapped":
            return queryset.filter(entitlements__isnull=True)
        if self.value() == "mapped":
            return queryset.filter(entitlements__isnull=False).distinct()
        return queryset


def _forget_cached(product_ids):
    """After commit, users of these products re-read their entitlements: in a worker (a product may have
    many users); here and now if the task cannot be queued (broker down), so the admin never errors."""
    product_ids = list(product_ids)

    def forget():
        try:
            tasks.forget_cached_entitlements.delay(product_ids)
        except Exception as exc:  # kombu/redis errors vary by transport
            logger.warning("could not queue the cache drop (%s); dropping now", exc)
            entitlement_cache.forget_products(product_ids)

    if product_ids:
        transaction.on_commit(forget)


@admin.register(Entitlement)
class EntitlementAdmin(admin.ModelAdmin):
    list_display = ("name", "description", "product_count")
    search_fields = ("name", "description")

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_products=Count("products"))

    @admin.display(description="products", ordering="_products")
    def product_count(self, obj):
        return obj._products

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if change:
            _forget_cached(obj.products.values_list("pk", flat=True))

    def delete_model(self, request, obj):
        _forget_cached(obj.products.values_list("pk", flat=True))  # read before the mapping rows go
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        _forget_cached(Product.objects.filter(entitlements__in=queryset).values_list("pk", flat=True).distinct())
        super().delete_queryset(request, queryset)


class ProductForm(forms.ModelForm):
    class Meta:
        model = Product
        fields = ("provider", "store_product_id", "label", "period_unit", "period_value", "price_minor", "currency",
                  "entitlements")

    def clean_store_product_id(self):
        value = self.cleaned_data["store_product_id"].strip()
        if not value:
            raise forms.ValidationError("The store's product or price id is required.")
        return value


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    form = ProductForm
    list_display = ("__str__", "provider", "store_product_id", "period", "price", "granted", "created_at")
    list_filter = ("provider", MappingFilter, "entitlements")
    search_fields = ("store_product_id", "label")
    filter_horizontal = ("entitlements",)
    readonly_fields = ("created_at", "updated_at")

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("entitlements")

    @admin.display(description="period")
    def period(self, obj):
        return f"{obj.period_value} {obj.period_unit}" if obj.period_unit else "—"

    @admin.display(description="price")
    def price(self, obj):
        return money(obj.price_minor, obj.currency)

    @admin.display(description="grants")
    def granted(self, obj):
        names = [e.name for e in obj.entitlements.all()]
        return ", ".join(names) if names else format_html("<strong style='color:#ba2121'>{}</strong>", "nothing")

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        product = form.instance
        if not product.entitlements.exists():
            self.message_user(request, f"{product} grants nothing: its subscribers get no entitlements until "
                                       "you map it.", messages.WARNING)
        if change:
            _forget_cached([product.pk])


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


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class StatusChangeInline(ReadOnlyInline):
    model = StatusChange
    fields = ("recorded_at", "occurred_at", "old_status", "new_status", "ignored", "cause", "cause_ref",
              "staff_user", "note")
    readonly_fields = fields
    ordering = ("-recorded_at", "-id")
    verbose_name_plural = "status history (newest first)"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("staff_user")


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


class ReasonForm(forms.Form):
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
class SubscriptionAdmin(admin.ModelAdmin):
    list_display = ("__str__", "user", "provider", "status", "product", "expires_at", "environment",
                    "entitled_now", "last_verified_at", "acknowledge_by")
    list_filter = ("provider", "status", "environment", EntitledNowFilter, OrphanFilter, SupersededFilter,
                   ("product", admin.RelatedOnlyFieldListFilter))
    search_fields = ("=subscriber__external_id", "subscriber__email", "=provider_subscription_id",
                     "=transactions__provider_transaction_id", "=subscriber__stripe_customer_id",
                     "=subscriber__google_obfuscated_account_id", "=subscriber__xsolla_user_id")
    search_help_text = "User id, email, store subscription id, transaction id, or a store's customer id / token"
    list_select_related = ("subscriber", "product")
    raw_id_fields = ("subscriber", "product", "replaced_by")
    inlines = (StatusChangeInline, TransactionInline)
    ordering = ("-created_at",)
    fieldsets = (
        (None, {"fields": ("provider", "provider_subscription_id", "user", "status", "entitled_now",
                           "product_link", "store_product_id", "environment", "replaced_by_link")}),
        ("Period and price", {"fields": ("period", "amount", "upcoming_amount", "auto_renew", "started_at",
                                         "current_period_start", "current_period_end", "expires_at",
                                         "grace_until", "canceled_at", "ended_at")}),
        ("Freshness", {"fields": ("last_event_at", "last_verified_at", "acknowledgement_due_at",
                                  "acknowledged_at", "created_at", "updated_at")}),
        ("Latest raw snapshot from the store", {"classes": ("collapse",), "fields": ("raw_snapshot_pretty",)}),
    )
    readonly_fields = ("provider", "provider_subscription_id", "user", "status", "entitled_now", "product_link",
                       "store_product_id", "environment", "replaced_by_link", "period", "amount",
                       "upcoming_amount", "auto_renew", "started_at", "current_period_start", "current_period_end",
                       "expires_at", "grace_until", "canceled_at", "ended_at", "last_event_at", "last_verified_at",
                       "acknowledgement_due_at", "acknowledged_at", "created_at", "updated_at",
                       "raw_snapshot_pretty")
    actions = ("grant_access", "extend_grant", "revoke", "resync_from_store", "link_to_user")

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
        for name in registry.store_names():
            try:
                filters += registry.get_adapter(name).admin_list_filters()
            except (registry.UnknownProvider, ImportError):
                continue
        return filters

    def get_actions(self, request):
        actions = super().get_actions(request)
        if not self.has_fix_permission(request):
            return actions
        # The stores' own operations (e.g. Google: revoke with refund, defer), offered by each adapter.
        for name in registry.store_names():
            try:
                store_actions = registry.get_adapter(name).admin_actions()
            except (registry.UnknownProvider, ImportError):
                continue
            for func in store_actions:
                description = getattr(func, "short_description", func.__name__.replace("_", " "))
                actions[func.__name__] = (func, func.__name__, description)
        return actions

    def get_search_results(self, request, queryset, search_term):
        queryset, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        token = _apple_token(search_term)
        if token is not None:
            queryset |= self.model.objects.filter(subscriber__apple_app_account_token=token)
        return queryset, may_have_duplicates

    # display
    @admin.display(description="user", ordering="subscriber__external_id")
    def user(self, obj):
        if obj.subscriber is None:
            return format_html("<strong style='color:#ba2121'>{}</strong>", "orphan")
        return admin_link(obj.subscriber)

    @admin.display(boolean=True, description="entitled now")
    def entitled_now(self, obj):
        return obj.is_entitled(timezone.now())

    @admin.display(description="acknowledge by", ordering="acknowledgement_due_at")
    def acknowledge_by(self, obj):
        """A purchase the store refunds unless acknowledged by then (Google: 3 days); red within a day."""
        if obj.acknowledgement_due_at is None or obj.acknowledged_at is not None:
            return "—"
        due = f"{obj.acknowledgement_due_at:%Y-%m-%d %H:%M} UTC"
        if obj.acknowledgement_due_at - timezone.now() < timedelta(days=1):
            return format_html("<strong style='color:#ba2121'>{}</strong>", due)
        return due

    @admin.display(description="product")
    def product_link(self, obj):
        return admin_link(obj.product)

    @admin.display(description="replaced by")
    def replaced_by_link(self, obj):
        return admin_link(obj.replaced_by)

    @admin.display(description="period")
    def period(self, obj):
        return f"{obj.period_value} {obj.period_unit}" if obj.period_unit else "—"

    @admin.display(description="amount")
    def amount(self, obj):
        return money(obj.amount_minor, obj.currency)

    @admin.display(description="upcoming amount")
    def upcoming_amount(self, obj):
        return money(obj.upcoming_amount_minor, obj.currency)

    @admin.display(description="raw snapshot")
    def raw_snapshot_pretty(self, obj):
        return pretty_json(obj.raw_snapshot)

    # actions
    @admin.action(description="Grant access to the user (a staff grant beside it)", permissions=["fix"])
    def grant_access(self, request, queryset):
        return run_with_form(
            self, request, queryset.select_related("subscriber"), form_class=GrantForm, title="Grant access",
            intro="Each selected subscription's user gets a new staff grant (provider: manual).",
            submit="Grant", do=partial(do_grant, lambda sub: sub.subscriber, request))

    @admin.action(description="Extend a staff grant", permissions=["fix"])
    def extend_grant(self, request, queryset):
        def do(sub, data):
            sub = staff.manual_extend(subscription=sub, until=data["until"], reason=data["reason"],
                                      staff_user=request.user)
            return f"extended until {sub.expires_at:%Y-%m-%d %H:%M} UTC"

        return run_with_form(self, request, queryset, form_class=ExtendForm, title="Extend staff grants",
                             intro="Only staff grants (provider: manual) can be extended here; store "
                                   "subscriptions are extended in their store.", submit="Extend", do=do)

    @admin.action(description="Revoke access now", permissions=["fix"])
    def revoke(self, request, queryset):
        def do(sub, data):
            staff.subscription_revoke(subscription=sub, reason=data["reason"], staff_user=request.user)
            return "revoked"

        return run_with_form(
            self, request, queryset, form_class=ReasonForm, title="Revoke access", submit="Revoke",
            intro="Access ends now (status REVOKED, published on the event stream). For a store subscription "
                  "this neither cancels nor refunds at the store, and the store's next event (a renewal) "
                  "overrides it: cancel or refund in the store too.", do=do)

    @admin.action(description="Re-sync from the store", permissions=["fix"])
    def resync_from_store(self, request, queryset):
        for sub in queryset:
            try:
                result = sweeps.subscription_resync(subscription=sub, cause_ref=f"admin:{request.user.get_username()}",
                                                    staff_user_id=request.user.pk)
            except (NotSupported, NotConfigured, registry.UnknownProvider) as exc:
                self.message_user(request, f"{sub}: cannot be re-synced ({exc})", messages.WARNING)
            except ProviderError as exc:
                self.message_user(request, f"{sub}: the store did not answer ({exc}); try again later",
                                  messages.ERROR)
            else:
                self.message_user(request, f"{sub}: {result.outcome} ({result.old_status} → {result.new_status})",
                                  messages.SUCCESS)

    @admin.action(description="Link to a user (orphans)", permissions=["fix"])
    def link_to_user(self, request, queryset):
        def do(sub, data):
            if sub.subscriber is not None and not data["move"]:
                raise staff.StaffActionError(f"already linked to user {sub.subscriber}; tick 'move' to move it")
            subscriber = subscriber_get_or_create(external_id=data["user_id"])
            subscription_link_subscriber(
                subscription_id=sub.pk, subscriber=subscriber,
                cause=Cause(CauseKind.STAFF, ref=f"staff:{request.user.get_username()}",
                            staff_user_id=request.user.pk, note=data["reason"].strip()))
            return f"linked to user {subscriber}"

        return run_with_form(self, request, queryset.select_related("subscriber"), form_class=LinkForm,
                             title="Link to a user", submit="Link",
                             intro="The user's access is published on the event stream.", do=do)


def _apple_token(term: str):
    """An Apple appAccountToken typed in the search box (a UUID)."""
    try:
        return uuid.UUID(term.strip())
    except (ValueError, AttributeError):
        return None


# --- read-only ledgers ---------------------------------------------------------------------------

class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(StatusChange)
class StatusChangeAdmin(ReadOnlyAdmin):
    list_display = ("recorded_at", "subscription", "user", "old_status", "new_status", "ignored", "cause",
                    "cause_ref", "staff_user", "short_note")
    list_filter = ("cause", "ignored", "new_status", "subscription__provider")
    search_fields = ("=subscription__provider_subscription_id", "=subscription__subscriber__external_id",
                     "cause_ref")
    list_select_related = ("subscription__subscriber", "staff_user")
    raw_id_fields = ("subscription", "staff_user")

    @admin.display(description="user")
    def user(self, obj):
        return obj.subscription.subscriber or "—"

    @admin.display(description="note")
    def short_note(self, obj):
        return obj.note if len(obj.note) < 80 else obj.note[:77] + "…"


@admin.register(Transaction)
class TransactionAdmin(ReadOnlyAdmin):
    list_display = ("occurred_at", "provider", "provider_transaction_id", "kind", "amount", "environment",
                    "subscription", "user")
    list_filter = ("provider", "kind", "environment", "currency")
    search_fields = ("=provider_transaction_id", "=subscription__provider_subscription_id",
                     "=subscription__subscriber__external_id")
    list_select_related = ("subscription__subscriber",)
    raw_id_fields = ("subscription",)
    readonly_fields = ("raw_pretty",)
    exclude = ("raw",)

    @admin.display(description="amount")
    def amount(self, obj):
        return money(obj.amount_minor, obj.currency)

    @admin.display(description="user")
    def user(self, obj):
        return obj.subscription.subscriber or "—"

    @admin.display(description="raw")
    def raw_pretty(self, obj):
        return pretty_json(obj.raw)


class PublishedFilter(admin.SimpleListFilter):
    title = "published"
    parameter_name = "published"

    def lookups(self, request, model_admin):
        return [("no", "waiting"), ("yes", "published"), ("failing", "waiting, with errors")]

    def queryset(self, request, queryset):
        if self.value() == "no":
            return queryset.filter(published_at__isnull=True)
        if self.value() == "yes":
            return queryset.filter(published_at__isnull=False)
        if self.value() == "failing":
            return queryset.filter(Q(published_at__isnull=True) & ~Q(last_error=""))
        return queryset


@admin.register(Outbox)
class OutboxAdmin(ReadOnlyAdmin):
    list_display = ("id", "event_id", "user", "change", "created_at", "published_at", "attempts", "last_error")
    list_filter = (PublishedFilter,)
    search_fields = ("=event_id", "=subscription__provider_subscription_id")
    readonly_fields = ("payload_pretty",)
    exclude = ("payload",)
    raw_id_fields = ("subscription",)
    actions = ("publish_now",)

    @admin.display(description="user")
    def user(self, obj):
        return obj.payload.get("userId")

    @admin.display(description="change")
    def change(self, obj):
        return f"{obj.payload.get('oldStatus')} → {obj.payload.get('newStatus')}"

    @admin.display(description="event")
    def payload_pretty(self, obj):
        return pretty_json(obj.payload)

    @admin.action(description="Publish now (those not yet published)")
    def publish_now(self, request, queryset):
        ids = list(queryset.filter(published_at__isnull=True).values_list("pk", flat=True))
        if not ids:
            self.message_user(request, "Nothing to publish: the selected events are already published.",
                              messages.INFO)
            return
        published = outbox.publish_pending(ids=ids)
        level = messages.SUCCESS if published == len(ids) else messages.ERROR
        self.message_user(request, f"Published {published} of {len(ids)} events"
                                   + ("" if published == len(ids) else " (Redis unreachable or not configured: "
                                                                        "see last error)"), level)
