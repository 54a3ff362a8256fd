"""The audit log in the admin: read-only, filterable by actor, action, date, user and subscription,
searchable, and exported as CSV (the rows the list shows, filters applied) by staff holding
`audit.export_auditentry`. Links to billing's and support's pages by URL name only (audit imports
only accounts)."""

import json

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import StreamingHttpResponse
from django.urls import NoReverseMatch, path, reverse
from django.utils import timezone
from django.utils.html import format_html

from . import exports
from .models import AuditEntry

EXPORT_PERMISSION = "audit.export_auditentry"


class ActorKindFilter(admin.SimpleListFilter):
    title = "actor kind"
    parameter_name = "actor_kind"

    def lookups(self, request, model_admin):
        return [("staff", "staff member"), ("api_key", "API key"), ("other", "end user / system")]

    def queryset(self, request, queryset):
        if self.value() == "staff":
            return queryset.filter(actor_user__isnull=False)
        if self.value() == "api_key":
            return queryset.filter(actor_api_key__isnull=False)
        if self.value() == "other":
            return queryset.filter(actor_user__isnull=True, actor_api_key__isnull=True)
        return queryset


class UndoneFilter(admin.SimpleListFilter):
    title = "undone"
    parameter_name = "undone"

    def lookups(self, request, model_admin):
        return [("yes", "undone"), ("no", "not undone"), ("undo", "undos")]

    def queryset(self, request, queryset):
        if self.value() in ("yes", "no"):
            return queryset.filter(undone_by__isnull=self.value() == "no")
        if self.value() == "undo":
            return queryset.filter(undoes__isnull=False)
        return queryset


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    list_display = ("when", "who", "action", "on", "reason_short", "undo")
    list_display_links = ("when",)
    list_filter = (ActorKindFilter, "action", ("actor_user", admin.RelatedOnlyFieldListFilter),
                   ("actor_api_key", admin.RelatedOnlyFieldListFilter), UndoneFilter)
    search_fields = ("actor_label", "reason", "=subscriber__external_id", "=target", "action")
    search_help_text = "Who (a staff user or API key name), the reason, a user id, or a target such as "\
                        "billing.subscription:12"
    date_hierarchy = "created_at"
    list_select_related = ("subscriber",)
    list_per_page = 100
    show_full_result_count = False
    fields = ("created_at", "actor_label", "actor_user", "actor_api_key", "action", "reason", "user", "subscription",
              "target", "details_pretty", "undoes", "undone")
    readonly_fields = fields

    # The log is written only by audit.records.record: nobody adds, edits or deletes entries here.
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("undone_by")

    def get_urls(self):
        export = self.admin_site.admin_view(self.export_csv)
        return [path("export.csv", export, name="audit_auditentry_export"), *super().get_urls()]

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "may_export": request.user.has_perm(EXPORT_PERMISSION)}
        return super().changelist_view(request, extra_context=extra_context)

    def export_csv(self, request):
        """The changelist's rows (its filters, search and date drill-down from the query string), streamed."""
        if not (self.has_view_permission(request) and request.user.has_perm(EXPORT_PERMISSION)):
            raise PermissionDenied
        changelist = self.get_changelist_instance(request)
        rows = changelist.get_queryset(request).select_related("subscriber").order_by("-created_at", "-id")
        response = StreamingHttpResponse(exports.csv_chunks(rows.iterator(chunk_size=1000)),
                                         content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="audit-log-{timezone.now():%Y%m%dT%H%M%SZ}.csv"'
        return response

    @admin.display(description="when (UTC)", ordering="created_at")
    def when(self, obj):
        return format_html('<span style="white-space: nowrap">{}</span>', f"{obj.created_at:%Y-%m-%d %H:%M:%S}")

    @admin.display(description="who", ordering="actor_label")
    def who(self, obj):
        return obj.actor_label

    @admin.display(description="user", ordering="subscriber__external_id")
    def user(self, obj):
        if obj.subscriber_id is None:
            return "—"
        return _link("admin:accounts_subscriber_change", obj.subscriber_id, obj.subscriber.external_id)

    @admin.display(description="subscription", ordering="subscription_id")
    def subscription(self, obj):
        if obj.subscription_id is None:
            return "—"
        return _link("admin:billing_subscription_change", obj.subscription_id, f"#{obj.subscription_id}")

    @admin.display(description="user · subscription", ordering="subscriber__external_id")
    def on(self, obj):
        if obj.subscriber_id is None and obj.subscription_id is None:
            return obj.target or "—"
        return format_html('<span style="white-space: nowrap">{} · {}</span>', self.user(obj), self.subscription(obj))

    @admin.display(description="reason")
    def reason_short(self, obj):
        text = obj.reason if len(obj.reason) <= 120 else obj.reason[:119] + "…"
        return text

    @admin.display(description="details")
    def details_pretty(self, obj):
        return format_html("<pre style='white-space: pre-wrap; max-width: 70em'>{}</pre>",
                           json.dumps(obj.details, indent=2, sort_keys=True, ensure_ascii=False))

    @admin.display(description="undone by")
    def undone(self, obj):
        later = list(obj.undone_by.all())
        return ", ".join(f"{e.actor_label} at {e.created_at:%Y-%m-%d %H:%M} UTC" for e in later) or "—"

    @admin.display(description="undo")
    def undo(self, obj):
        if obj.undoes_id is not None:
            return format_html("undoes {}", _link("admin:audit_auditentry_change", obj.undoes_id, f"#{obj.undoes_id}"))
        if list(obj.undone_by.all()):
            return "undone"
        if not obj.details.get("undoable"):
            return "—"
        return _link("support-undo", obj.pk, "Undo…")


def _link(name: str, pk: int, label: str):
    try:
        return format_html('<a href="{}">{}</a>', reverse(name, args=[pk]), label)
    except NoReverseMatch:
        return label
