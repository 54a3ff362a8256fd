"""Drifts: what store reads found different from ours (billing/drift.py). A read-only list with filters
(store, field, found by, date, open or dismissed), the dismiss action (a reason, kept on the drift and in
the audit log), and above the list a daily count per store (a store whose deliveries are healthy shows
few) and each store's API budget in use (billing/store_budgets.py)."""

from datetime import datetime

from django import forms
from django.contrib import admin
from django.utils.html import format_html, format_html_join

from billing import drift as drift_service
from billing import store_budgets
from billing.models import Drift

from .toolkit import REASON, ReadOnlyAdmin, admin_link, confirm_action, pretty_json


class FieldFilter(admin.SimpleListFilter):
    title = "field"
    parameter_name = "field"

    def lookups(self, request, model_admin):
        return Drift.FIELD_CHOICES

    def queryset(self, request, queryset):
        return queryset.filter(differences__has_key=self.value()) if self.value() else queryset


class OpenFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("open", "open (not dismissed)"), ("dismissed", "dismissed")]

    def queryset(self, request, queryset):
        if self.value() == "open":
            return queryset.filter(dismissed_at__isnull=True)
        if self.value() == "dismissed":
            return queryset.filter(dismissed_at__isnull=False)
        return queryset


class DismissForm(forms.Form):
    reason = REASON(help_text="Required. Why this drift needs no more attention (kept with your name).")


@admin.register(Drift)
class DriftAdmin(ReadOnlyAdmin):
    list_display = ("found_at", "provider", "subscription_link", "what_differs", "found_by", "applied", "state")
    list_filter = ("provider", FieldFilter, "found_by", ("found_at", admin.DateFieldListFilter), OpenFilter,
                   "applied")
    list_select_related = ("subscription", "dismissed_by")
    search_fields = ("subscription__provider_subscription_id", "subscription__subscriber__external_id")
    date_hierarchy = "found_at"
    fields = ("subscription_link", "provider", "found_by", "found_at", "observed_at", "applied", "differences_table",
              "differences_pretty", "dismissed_at", "dismissed_by", "dismiss_reason")
    readonly_fields = fields
    actions = ("dismiss",)
    change_list_template = "admin/billing/drift/change_list.html"

    def has_dismiss_permission(self, request):
        return request.user.has_perm("billing.change_drift")

    @admin.display(description="subscription")
    def subscription_link(self, obj):
        return admin_link(obj.subscription)

    @admin.display(description="what differs (ours → store)")
    def what_differs(self, obj):
        return format_html_join(", ", "{}: {} → {}", ((name, _short(v["ours"]), _short(v["store"]))
                                                      for name, v in obj.differences.items()))

    @admin.display(description="differences")
    def differences_table(self, obj):
        rows = format_html_join("", "<tr><th>{}</th><td>{}</td><td>{}</td></tr>",
                                ((name, v["ours"] or "—", v["store"] or "—") for name, v in obj.differences.items()))
        return format_html("<table><tr><th>field</th><th>ours</th><th>store</th></tr>{}</table>", rows)

    @admin.display(description="as stored")
    def differences_pretty(self, obj):
        return pretty_json(obj.differences)

    @admin.display(description="state")
    def state(self, obj):
        if obj.dismissed_at is None:
            return "open"
        return f"dismissed by {obj.dismissed_by or '?'}: {obj.dismiss_reason}"

    @admin.action(description="Dismiss (with a reason)", permissions=["dismiss"])
    def dismiss(self, request, queryset):
        def do(drift, data):
            drift_service.drift_dismiss(drift=drift, reason=data["reason"], staff_user=request.user)
            return "dismissed"

        return confirm_action(self, request, queryset.filter(dismissed_at__isnull=True), form_class=DismissForm,
                              title="Dismiss drifts", submit="Dismiss",
                              intro="The selected open drifts leave the Needs attention count; the reason is kept "
                                    "on each and in the audit log.", do=do)

    def changelist_view(self, request, extra_context=None):
        stores, table = drift_service.daily_counts()
        extra = {"daily_stores": stores, "daily_rows": table, "budgets": _budgets()}
        return super().changelist_view(request, extra_context={**(extra_context or {}), **extra})


def _short(value) -> str:
    """A time shown to the minute in the list (the detail page has the full value)."""
    if value and len(value) > 16 and value[4:5] == "-" and "T" in value:
        return value[:16].replace("T", " ")
    return value or "—"


def _budgets() -> list[dict]:
    return [{"store": store, **windows,
             "paused_until": datetime.fromisoformat(windows["paused_until"]) if windows["paused_until"] else None}
            for store, windows in store_budgets.usage_or_limits().items()]
