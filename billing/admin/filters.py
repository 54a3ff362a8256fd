"""List filters the admin's lists share beyond Django's own: a from/to date range on a time field
(the Transactions list: `?occurred_at__from=2026-11-01&occurred_at__to=2026-11-30`, both days included,
UTC)."""

from datetime import UTC, date, datetime, time, timedelta
from urllib.parse import parse_qsl

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters


def _day(value) -> date | None:
    if isinstance(value, list):  # Django passes each parameter's values as a list
        value = value[-1] if value else ""
    value = (value or "").strip()
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise IncorrectLookupParameters(f"{value!r} is not a date (YYYY-MM-DD)") from exc


def day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


class DateRangeFilter(admin.FieldListFilter):
    """From and to (days, UTC, both included) on a date-time field, typed in two date inputs in the
    filter sidebar; the list's other filters, search and ordering are kept when it is applied."""

    template = "admin/filters/date_range.html"

    def __init__(self, field, request, params, model, model_admin, field_path):
        self.param_from, self.param_to = f"{field_path}__from", f"{field_path}__to"
        super().__init__(field, request, params, model, model_admin, field_path)
        self.day_from = _day(self.used_parameters.get(self.param_from))
        self.day_to = _day(self.used_parameters.get(self.param_to))
        if self.day_from and self.day_to and self.day_from > self.day_to:
            raise IncorrectLookupParameters("the 'from' day is after the 'to' day")

    def expected_parameters(self):
        return [self.param_from, self.param_to]

    def queryset(self, request, queryset):
        if self.day_from:
            queryset = queryset.filter(**{f"{self.field_path}__gte": day_start(self.day_from)})
        if self.day_to:
            queryset = queryset.filter(**{f"{self.field_path}__lt": day_start(self.day_to + timedelta(days=1))})
        return queryset

    def choices(self, changelist):
        # One "choice": what the template's small form needs (the other parameters as hidden inputs).
        others = changelist.get_query_string(remove=[self.param_from, self.param_to, "p"])
        yield {
            "selected": bool(self.day_from or self.day_to),
            "param_from": self.param_from, "param_to": self.param_to,
            "value_from": self.day_from.isoformat() if self.day_from else "",
            "value_to": self.day_to.isoformat() if self.day_to else "",
            "hidden": parse_qsl(others.lstrip("?"), keep_blank_values=True),
            "clear_url": others,
        }
