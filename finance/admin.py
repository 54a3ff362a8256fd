"""Finance in the admin: the exchange rates staff enter (per currency and month, for the reporting
currency) and the computed daily metrics, read-only (rebuilt with manage.py metrics_rebuild)."""

from django import forms
from django.conf import settings
from django.contrib import admin
from django.db import transaction

from audit.records import record
from billing.admin.toolkit import ReadOnlyAdmin

from .models import ExchangeRate, MetricDay


class ExchangeRateForm(forms.ModelForm):
    class Meta:
        model = ExchangeRate
        fields = ("currency", "month", "rate")

    def clean_currency(self):
        currency = self.cleaned_data["currency"].strip().upper()
        if len(currency) != 3 or not currency.isalpha():
            raise forms.ValidationError("An ISO 4217 code of three letters, e.g. USD.")
        return currency

    def clean_month(self):
        return self.cleaned_data["month"].replace(day=1)  # a rate is for a whole month

    def clean_rate(self):
        rate = self.cleaned_data["rate"]
        if rate <= 0:
            raise forms.ValidationError("A rate is positive.")
        return rate


@admin.register(ExchangeRate)
class ExchangeRateAdmin(admin.ModelAdmin):
    form = ExchangeRateForm
    list_display = ("month", "currency", "rate", "reporting_currency", "updated_at")
    list_filter = ("currency",)
    date_hierarchy = "month"
    ordering = ("-month", "currency")

    def save_model(self, request, obj, form, change):
        # Rates change what every converted export says: who set which rate, in the audit log.
        with transaction.atomic():
            super().save_model(request, obj, form, change)
            record(actor=request.user, action="finance.exchange_rate_set", target=str(obj),
                   details={"currency": obj.currency, "month": obj.month.isoformat(), "rate": str(obj.rate),
                            "changed": form.changed_data if change else ["created"]})

    def delete_model(self, request, obj):
        with transaction.atomic():
            record(actor=request.user, action="finance.exchange_rate_deleted", target=str(obj),
                   details={"currency": obj.currency, "month": obj.month.isoformat(), "rate": str(obj.rate)})
            super().delete_model(request, obj)

    @admin.display(description="in")
    def reporting_currency(self, obj):
        return settings.FINANCE_REPORTING_CURRENCY or "— (FINANCE_REPORTING_CURRENCY not set)"


@admin.register(MetricDay)
class MetricDayAdmin(ReadOnlyAdmin):
    list_display = ("day", "provider", "store_product_id", "environment", "currency", "entitled", "in_trial",
                    "in_grace", "on_hold", "new", "reactivated", "churned", "trial_starts", "trial_conversions",
                    "payments", "gross_revenue_minor", "refunds", "refunds_minor", "mrr_minor")
    list_filter = ("provider", "environment", "currency")
    date_hierarchy = "day"
    search_fields = ("=store_product_id",)
