"""The ledgers: status history and transactions, read-only (written only by the one write path)."""

from django.contrib import admin

from billing.models import StatusChange, Transaction

from .toolkit import ReadOnlyAdmin, money, pretty_json


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
