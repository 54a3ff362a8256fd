"""Statuses as people read them in the admin's lists ("On hold", not `ON_HOLD`). The stored codes stay
the contract (API, event stream); only list cells and list filters show these labels. The one-line
explanation of a status (why, until when) is the timeline's, not this module's."""

from django.contrib import admin

from billing.statuses import Status

STATUS_LABELS = {
    Status.INACTIVE: "Inactive",
    Status.TRIAL: "Trial",
    Status.ACTIVE: "Active",
    Status.CANCELED: "Canceled (access until the end)",
    Status.ON_GRACE: "In grace period",
    Status.ON_HOLD: "On hold",
    Status.PAUSED: "Paused",
    Status.EXPIRED: "Expired",
    Status.REVOKED: "Revoked",
}


def status_label(code: str | None) -> str:
    if not code:
        return "—"
    return STATUS_LABELS.get(code, code)


def status_filter(field: str, title: str = "status"):
    """A list filter on a status field whose choices read as labels (the URL keeps the code:
    `?<field>__exact=ON_HOLD`, as Django's own choices filter)."""

    class StatusFilter(admin.SimpleListFilter):
        parameter_name = f"{field}__exact"

        def lookups(self, request, model_admin):
            return [(code.value, label) for code, label in STATUS_LABELS.items()]

        def queryset(self, request, queryset):
            return queryset.filter(**{field: self.value()}) if self.value() else queryset

    StatusFilter.title = title
    StatusFilter.__name__ = f"{field.title().replace('_', '')}Filter"
    return StatusFilter


def short_time(value) -> str:
    """A time in a list cell: "2026-12-04 18:30" (UTC, the console's time zone), a third shorter than
    Django's "Dec. 4, 2026, 6:30 p.m.", so a ten-column list fits 1280 px."""
    return "—" if value is None else f"{value:%Y-%m-%d %H:%M}"
