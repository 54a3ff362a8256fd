"""The outbox: status-change events waiting for (or done with) the Redis stream; publish by hand."""

from django.contrib import admin, messages
from django.db.models import Q

from billing import outbox
from billing.models import Outbox

from .toolkit import ReadOnlyAdmin, pretty_json


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
    list_display = ("id", "event_id", "user", "change", "created_at", "published_at", "stream_id", "attempts",
                    "last_error")
    list_filter = (PublishedFilter,)
    search_fields = ("=event_id", "=stream_id", "=subscription__provider_subscription_id")
    readonly_fields = ("payload_pretty",)
    exclude = ("payload",)
    autocomplete_fields = ("subscription",)
    date_hierarchy = "created_at"
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
