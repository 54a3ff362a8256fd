"""The operators' view of alerts (open and past) and of the beat jobs' last runs: read-only, written
by the alert job and Celery's task signals."""

from django.contrib import admin

from billing.admin.toolkit import ReadOnlyAdmin

from .models import Alert, JobRun


class OpenFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "resolved_at__isnull"

    def lookups(self, request, model_admin):
        return [("True", "open"), ("False", "resolved")]

    def queryset(self, request, queryset):
        if self.value() in ("True", "False"):
            return queryset.filter(resolved_at__isnull=self.value() == "True")
        return queryset


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdmin):
    list_display = ["summary", "key", "count", "started_at", "last_seen_at", "last_sent_at", "sent_count",
                    "resolved_at"]
    list_filter = [OpenFilter]
    search_fields = ["key", "summary"]
    date_hierarchy = "started_at"


@admin.register(JobRun)
class JobRunAdmin(ReadOnlyAdmin):
    list_display = ["task", "last_started_at", "last_succeeded_at", "last_failed_at", "last_error"]
    search_fields = ["task"]
