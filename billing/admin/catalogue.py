"""The catalogue: store products (each store's product or price id) and what they grant. Edited
by staff; a change drops the cached answers of the users it touches. Staff also decide which Stripe
prices are on sale (`offered`): only those can be bought through /api/stripe/* and change-plan."""

import logging

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from billing import entitlement_cache, tasks
from billing.models import Entitlement, Product
from billing.snapshots import Provider

from .toolkit import danger, money, period

logger = logging.getLogger(__name__)


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
                  "entitlements", "offered")

    def clean_store_product_id(self):
        value = self.cleaned_data["store_product_id"].strip()
        if not value:
            raise forms.ValidationError("The store's product or price id is required.")
        return value

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("offered") and cleaned.get("provider") != Provider.STRIPE:
            self.add_error("offered", "Only Stripe prices are sold here; the other stores sell in their own apps.")
        return cleaned


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    form = ProductForm
    list_display = ("__str__", "provider", "store_product_id", "period", "price", "granted", "on_sale", "created_at")
    list_filter = ("provider", "offered", MappingFilter, "entitlements")
    search_fields = ("store_product_id", "label")
    filter_horizontal = ("entitlements",)
    readonly_fields = ("offered_changed_at", "offered_changed_by", "created_at", "updated_at")
    actions = ("mark_offered", "withdraw_offer")

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("entitlements")

    @admin.display(description="period")
    def period(self, obj):
        return period(obj)

    @admin.display(description="price")
    def price(self, obj):
        return money(obj.price_minor, obj.currency)

    @admin.display(description="on sale", boolean=True, ordering="offered")
    def on_sale(self, obj):
        return obj.offered if obj.provider == Provider.STRIPE else None

    @admin.display(description="grants")
    def granted(self, obj):
        names = [e.name for e in obj.entitlements.all()]
        return ", ".join(names) if names else danger("nothing")

    def save_model(self, request, obj, form, change):
        if "offered" in form.changed_data or (not change and obj.offered):
            obj.offered_changed_at, obj.offered_changed_by = timezone.now(), request.user
        super().save_model(request, obj, form, change)

    @admin.action(description="Put on sale: can be bought through the Stripe web API", permissions=["change"])
    def mark_offered(self, request, queryset):
        self._set_offered(request, queryset, offered=True)

    @admin.action(description="Withdraw from sale (existing subscribers keep theirs)", permissions=["change"])
    def withdraw_offer(self, request, queryset):
        self._set_offered(request, queryset, offered=False)

    def _set_offered(self, request, queryset, *, offered: bool):
        """Stripe prices only; who did it and when are kept on the product and in its history."""
        others = queryset.exclude(provider=Provider.STRIPE).count()
        changed = list(queryset.filter(provider=Provider.STRIPE).exclude(offered=offered))
        now = timezone.now()
        with transaction.atomic():
            for product in changed:
                product.offered, product.offered_changed_at, product.offered_changed_by = offered, now, request.user
                product.save(update_fields=["offered", "offered_changed_at", "offered_changed_by", "updated_at"])
                self.log_change(request, product, "Put on sale" if offered else "Withdrawn from sale")
        state = "on sale" if offered else "withdrawn from sale"
        self.message_user(request, f"{len(changed)} Stripe price(s) {state}.", messages.SUCCESS)
        if others:
            self.message_user(request, f"{others} product(s) of other stores left as they are: they are sold in "
                                       "their stores' apps, not here.", messages.WARNING)

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        product = form.instance
        if not product.entitlements.exists():
            self.message_user(request, f"{product} grants nothing: its subscribers get no entitlements until "
                                       "you map it.", messages.WARNING)
        if change:
            _forget_cached([product.pk])
