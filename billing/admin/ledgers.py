"""The ledgers: status history and transactions, read-only (written only by the one write path)."""

from django.contrib import admin

from billing.models import StatusChange, Transaction

from .changelist_tools import ChangelistToolsMixin
from .filters import DateRangeFilter
from .labels import status_filter, status_label
from .toolkit import ReadOnlyAdmin, money, pretty_json
from .totals import ledger_totals


@admin.register(StatusChange)
class StatusChangeAdmin(ReadOnlyAdmin):
    list_display = ("recorded_at", "subscription", "user", "old", "new", "ignored", "cause",
                    "cause_ref", "staff_user", "short_note")
    list_filter = ("cause", "ignored", status_filter("new_status", "new status"), "subscription__provider")
    search_fields = ("=subscription__provider_subscription_id", "=subscription__subscriber__external_id",
                     "cause_ref")
    list_select_related = ("subscription__subscriber", "staff_user")
    autocomplete_fields = ("subscription", "staff_user")
    date_hierarchy = "recorded_at"

    @admin.display(description="user")
    def user(self, obj):
        return obj.subscription.subscriber or "—"

    @admin.display(description="old status", ordering="old_status")
    def old(self, obj):
        return status_label(obj.old_status)

    @admin.display(description="new status", ordering="new_status")
    def new(self, obj):
        return status_label(obj.new_status)

    @admin.display(description="note")
    def short_note(self, obj):
        return obj.note if len(obj.note) < 80 else obj.note[:77] + "…"


@admin.register(Transaction)
class TransactionAdmin(ChangelistToolsMixin, ReadOnlyAdmin):
    changelist_tools = []  # finance's "Export CSV" (finance/admin_exports.py)
    list_display = ("occurred_at", "provider", "provider_transaction_id", "kind", "amount", "environment",
                    "subscription", "user")
    list_filter = (("occurred_at", DateRangeFilter), "provider", "kind", "environment", "currency")
    search_fields = ("=provider_transaction_id", "=order_id", "=subscription__provider_subscription_id",
                     "=subscription__subscriber__external_id")
    list_select_related = ("subscription__subscriber",)
    autocomplete_fields = ("subscription",)
    date_hierarchy = "occurred_at"
    # Totals per currency of the filtered rows above the list (billing/admin/totals.py).
    change_list_template = "admin/billing/transaction/change_list_totals.html"
    readonly_fields = ("raw_pretty",)
    exclude = ("raw",)

    def changelist_view(self, request, extra_context=None):
        response = super().changelist_view(request, extra_context)
        changelist = getattr(response, "context_data", {}).get("cl")
        if changelist is not None:
            response.context_data["ledger_totals"] = ledger_totals(changelist.queryset)
        return response

    @admin.display(description="amount")
    def amount(self, obj):
        return money(obj.amount_minor, obj.currency)

    @admin.display(description="user")
    def user(self, obj):
        return obj.subscription.subscriber or "—"

    @admin.display(description="raw")
    def raw_pretty(self, obj):
        return pretty_json(obj.raw)
