"""The finance dashboard (/admin/finance/dashboard/, docs/finance.md "Charts"): active subscribers, MRR,
new vs churned, trial conversion and refunds over a chosen range, grouped by provider or product, each
chart with its numbers in a table under it. Reads only finance.MetricDay rows (computed by the metrics
job, `manage.py metrics_rebuild` for a past range); money per currency, never added across currencies.

Who may see it: staff with the `finance.view_metricday` permission (superusers have it): the page
shows exactly those rows, so viewing them is the right to ask for; exporting (`billing.export_finance`)
is a separate right."""

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal

from django import forms
from django.contrib.admin import site as admin_site
from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.db.models import Sum
from django.template.response import TemplateResponse
from django.utils import timezone

from billing.models import Product
from billing.money import exponent
from billing.snapshots import Environment

from . import charts
from .models import MetricDay

PERMISSION = "finance.view_metricday"
DEFAULT_DAYS = 90
MAX_DAILY_DAYS = 400  # beyond this a daily chart is a smear: ask for weeks or months
MAX_GROUPS = 7  # the largest groups get a colour each; the rest are summed as "other"
STOCKS = ("entitled", "in_trial", "in_grace", "mrr_minor")  # as at the end of the period
FLOWS = ("new", "reactivated", "churned", "trial_starts", "trial_conversions", "payments", "gross_revenue_minor",
         "refunds", "refunds_minor")  # summed over the period


def may_view(user) -> bool:
    return user.is_active and user.is_staff and user.has_perm(PERMISSION)


class RangeForm(forms.Form):
    start = forms.DateField(label="From", required=False, widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(label="To", required=False, widget=forms.DateInput(attrs={"type": "date"}))
    group = forms.ChoiceField(label="Group by", required=False, initial="provider",
                              choices=[("provider", "provider"), ("product", "product")])
    interval = forms.ChoiceField(required=False, choices=[("", "automatic"), ("day", "day"), ("week", "week"),
                                                          ("month", "month")])
    environment = forms.ChoiceField(required=False, initial=Environment.PRODUCTION, choices=Environment.CHOICES)

    def clean(self):
        data = super().clean()
        yesterday = timezone.now().date() - timedelta(days=1)  # the last day the beat job has computed
        end = data.get("end") or yesterday
        start = data.get("start") or end - timedelta(days=DEFAULT_DAYS - 1)
        if start > end:
            raise forms.ValidationError("'From' is after 'To'.")
        interval = data.get("interval") or ("day" if (end - start).days < 93 else
                                            "week" if (end - start).days < 730 else "month")
        if interval == "day" and (end - start).days >= MAX_DAILY_DAYS:
            raise forms.ValidationError(f"Over {MAX_DAILY_DAYS} days, group by week or month.")
        data.update(start=start, end=end, interval=interval, group=data.get("group") or "provider",
                    environment=data.get("environment") or Environment.PRODUCTION)
        return data


def period_start(day: date, interval: str) -> date:
    if interval == "week":
        return day - timedelta(days=day.weekday())  # ISO weeks, from Monday
    if interval == "month":
        return day.replace(day=1)
    return day


def periods(start: date, end: date, interval: str) -> list[date]:
    result, day = [], period_start(start, interval)
    while day <= end:
        result.append(day)
        day = (day + timedelta(days=7) if interval == "week" else
               (day.replace(day=28) + timedelta(days=4)).replace(day=1) if interval == "month" else
               day + timedelta(days=1))
    return result


def period_label(day: date, interval: str) -> str:
    return {"day": f"{day:%d %b}", "week": f"wk {day:%d %b}", "month": f"{day:%b %Y}"}[interval]


@dataclass
class Table:
    """A chart's numbers: one row per period, one column per group (and a total)."""

    columns: list[str]
    rows: list[tuple[str, list[str]]] = field(default_factory=list)
    footer: tuple[str, list[str]] | None = None


@dataclass
class Chart:
    key: str
    title: str
    svg: str
    table: Table
    legend: list[tuple[str, str]]
    note: str = ""


def _money(currency: str):
    places = exponent(currency)

    def fmt(value: float) -> str:
        return f"{value:,.{places}f} {currency}".strip()

    return fmt


def _major(minor: int, currency: str) -> float:
    return float(Decimal(minor).scaleb(-exponent(currency)))


def _group_names(rows, group: str) -> dict:
    if group == "provider":
        return {}
    ids = {row["store_product_id"] for row in rows}
    products = Product.objects.filter(store_product_id__in=ids).values_list("provider", "store_product_id", "label")
    return {(provider, sid): label for provider, sid, label in products if label}


def dashboard_data(*, start: date, end: date, group: str, interval: str, environment: str) -> dict:
    """The charts of the range: figures per (period, group[, currency]) from MetricDay."""
    keys = ["provider"] if group == "provider" else ["provider", "store_product_id"]
    rows = list(MetricDay.objects.filter(day__range=(start, end), environment=environment)
                .values("day", "currency", *keys)
                .annotate(**{name: Sum(name) for name in STOCKS + FLOWS}).order_by("day"))
    if not rows:
        return {"charts": [], "empty": True}
    names = _group_names(rows, group)

    def group_of(row) -> str:
        if group == "provider":
            return row["provider"]
        key = (row["provider"], row["store_product_id"])
        return names.get(key) or f"{row['provider']}:{row['store_product_id'] or '(none)'}"

    buckets = periods(start, end, interval)
    labels = [period_label(day, interval) for day in buckets]
    index = {day: i for i, day in enumerate(buckets)}
    # Stocks are read on the last day of each period that has figures (a period may end in the future).
    last_day = {}
    for row in rows:
        i = index[period_start(row["day"], interval)]
        last_day[i] = max(last_day.get(i, row["day"]), row["day"])
    values = defaultdict(lambda: [0] * len(buckets))  # (metric, group, currency) → per period
    for row in rows:
        i = index[period_start(row["day"], interval)]
        name, currency = group_of(row), (row["currency"] or "").upper()
        for metric in FLOWS:
            values[(metric, name, currency)][i] += row[metric] or 0
        if row["day"] == last_day[i]:
            for metric in STOCKS:
                values[(metric, name, currency)][i] += row[metric] or 0

    def per_group(metric: str, currency: str | None = None) -> dict[str, list[int]]:
        result = defaultdict(lambda: [0] * len(buckets))
        for (m, name, cur), series in values.items():
            if m == metric and (currency is None or cur == currency):
                result[name] = [a + b for a, b in zip(result[name], series, strict=True)]
        return dict(result)

    # Largest first: by subscribers at the end of the range, then by subscribers over it, then by name.
    entitled = per_group("entitled")
    groups_by_size = sorted({name for (_m, name, _c) in values},
                            key=lambda name: (-entitled.get(name, [0])[-1], -sum(entitled.get(name, [0])), name))
    kept = groups_by_size if len(groups_by_size) <= MAX_GROUPS + 1 else groups_by_size[:MAX_GROUPS]
    colors = {name: charts.color_for(i, name) for i, name in enumerate(kept)}
    colors.setdefault("other", charts.OTHER_COLOR)

    def fold(series: dict[str, list[int]]) -> dict[str, list[int]]:
        """The kept groups, in size order, then "other" (the rest summed)."""
        folded = {name: series[name] for name in kept if name in series}
        rest = [s for name, s in series.items() if name not in colors or name == "other"]
        if rest:
            folded["other"] = [sum(column) for column in zip(*rest, strict=True)]
        return folded

    present = [i in last_day for i in range(len(buckets))]  # periods with figures; the others show as gaps
    currencies = sorted({c for (m, _n, c) in values if c and m in ("mrr_minor", "refunds_minor", "gross_revenue_minor")
                         and any(values[(m, _n, c)])})
    built = [_subscribers_chart(fold(per_group("entitled")), labels, colors, present)]
    for currency in currencies:
        built.append(_mrr_chart(fold(per_group("mrr_minor", currency)), labels, colors, present, currency))
    built.append(_new_churned_chart(fold(per_group("new")), fold(per_group("reactivated")),
                                    fold(per_group("churned")), labels, colors, present))
    built.append(_trials_chart(fold(per_group("trial_starts")), fold(per_group("trial_conversions")), labels,
                               colors, present))
    for currency in currencies:
        built.append(_refunds_chart(fold(per_group("refunds", currency)), fold(per_group("refunds_minor", currency)),
                                    labels, colors, present, currency))
    missing = [day for day, here in zip(buckets, present, strict=True) if not here]
    return {"charts": built, "empty": False, "currencies": currencies, "missing": missing,
            "missing_from": missing[0] if missing else None, "missing_to": missing[-1] if missing else None}


def _legend(series: dict, colors: dict) -> list[tuple[str, str]]:
    return [(name, colors[name]) for name in series]


def _gaps(values: list, present: list[bool]) -> list:
    """The chart's points: None where the period has no figures at all (not computed yet)."""
    return [v if here else None for v, here in zip(values, present, strict=True)]


def _last(present: list[bool]) -> int:
    """The last period with figures: what "at the end" means for stocks."""
    return max((i for i, here in enumerate(present) if here), default=len(present) - 1)


def _table(labels, series: dict, cell, total_cell, footer_label: str, footer_cell, present) -> Table:
    table = Table(columns=[*series, "total"])
    for i, label in enumerate(labels):
        if present[i]:  # a period without figures is a gap in the chart and left out here
            table.rows.append((label, [cell(name, i) for name in series] + [total_cell(i)]))
    table.footer = (footer_label, [footer_cell(name) for name in series] + [footer_cell(None)])
    return table


def _subscribers_chart(series, labels, colors, present) -> Chart:
    svg = charts.chart(title="Active subscribers (entitled at the end of each period)", x_labels=labels, kind="line",
                       series=[charts.Series(n, _gaps(s, present), colors[n]) for n, s in series.items()],
                       y_title="subscribers")
    last = _last(present)
    table = _table(labels, series, lambda n, i: f"{series[n][i]:,}",
                   lambda i: f"{sum(s[i] for s in series.values()):,}", "at the end",
                   lambda n: f"{(series[n][last] if n else sum(s[last] for s in series.values())):,}", present)
    return Chart("subscribers", "Active subscribers", svg, table, _legend(series, colors),
                 "Subscriptions granting access at the end of each period (trials and grace periods included).")


def _mrr_chart(series, labels, colors, present, currency) -> Chart:
    fmt = _money(currency)
    major = {n: [_major(v, currency) for v in s] for n, s in series.items()}
    svg = charts.chart(title=f"MRR in {currency}", x_labels=labels, kind="line", fmt=fmt, y_title=currency,
                       series=[charts.Series(n, _gaps(s, present), colors[n]) for n, s in major.items()])
    last = _last(present)
    table = _table(labels, major, lambda n, i: fmt(major[n][i]), lambda i: fmt(sum(s[i] for s in major.values())),
                   "at the end", lambda n: fmt(major[n][last] if n else sum(s[last] for s in major.values())),
                   present)
    return Chart(f"mrr-{currency.lower()}", f"MRR ({currency})", svg, table, _legend(series, colors),
                 f"Monthly recurring revenue of the subscriptions paid in {currency}, at the end of each period: "
                 "each entitled paying subscription's price normalised to one month.")


def _new_churned_chart(new, reactivated, churned, labels, colors, present) -> Chart:
    names = list(dict.fromkeys([*new, *reactivated, *churned]))
    zero = [0] * len(labels)
    gained = {n: [a + b for a, b in zip(new.get(n, zero), reactivated.get(n, zero), strict=True)] for n in names}
    lost = {n: churned.get(n, zero) for n in names}
    svg = charts.chart(title="New and reactivated (above the axis) vs churned (below)", x_labels=labels, kind="bars",
                       series=[charts.Series(n, gained[n], colors[n], below=lost[n]) for n in names],
                       y_title="subscriptions")

    def cell(n, i):
        return f"+{gained[n][i]:,} / -{lost[n][i]:,}"

    def total(i):
        return f"+{sum(g[i] for g in gained.values()):,} / -{sum(c[i] for c in lost.values()):,}"

    def footer(n):
        pick = [n] if n else names
        return f"+{sum(sum(gained[m]) for m in pick):,} / -{sum(sum(lost[m]) for m in pick):,}"

    table = _table(labels, dict.fromkeys(names), cell, total, "in the range", footer, present)
    return Chart("new-churned", "New vs churned", svg, table, _legend(dict.fromkeys(names), colors),
                 "+ new and reactivated subscriptions, - subscriptions that lost access, during each period.")


def _rate(conversions: int, starts: int) -> str:
    return f"{conversions:,}/{starts:,} ({100 * conversions / starts:.0f}%)" if starts else f"{conversions:,}/0"


def _trials_chart(starts, conversions, labels, colors, present) -> Chart:
    names = list(dict.fromkeys([*starts, *conversions]))
    zero = [0] * len(labels)
    rates = {n: [100 * c / s if s else 0.0 for c, s in zip(conversions.get(n, zero), starts.get(n, zero), strict=True)]
             for n in names}
    svg = charts.chart(title="Trial conversion (conversions ÷ trial starts, per period)", x_labels=labels,
                       kind="line", fmt=lambda v: f"{v:.0f}%", y_title="%",
                       axis_fmt=lambda v: f"{v:.0f}%", series=[charts.Series(n, _gaps(rates[n], present), colors[n])
                                                                for n in names])

    def footer(n):
        pick = [n] if n else names
        return _rate(sum(sum(conversions.get(m, zero)) for m in pick), sum(sum(starts.get(m, zero)) for m in pick))

    def cell(n, i):
        return _rate(conversions.get(n, zero)[i], starts.get(n, zero)[i])

    table = _table(labels, dict.fromkeys(names), cell,
                   lambda i: _rate(sum(c[i] for c in conversions.values()), sum(s[i] for s in starts.values())),
                   "in the range", footer, present)
    return Chart("trials", "Trial conversion", svg, table, _legend(dict.fromkeys(names), colors),
                 "Trials converted to a paid period during each period, over the trials started in it (not a "
                 "cohort rate: a trial converting in the next period counts there). Cells: conversions/starts.")


def _refunds_chart(counts, amounts, labels, colors, present, currency) -> Chart:
    fmt = _money(currency)
    major = {n: [_major(v, currency) for v in s] for n, s in amounts.items()}
    svg = charts.chart(title=f"Refunds in {currency}", x_labels=labels, kind="bars", fmt=fmt, y_title=currency,
                       series=[charts.Series(n, s, colors[n]) for n, s in major.items()])
    zero = [0] * len(labels)

    def cell(n, i):
        return f"{counts.get(n, zero)[i]:,} · {fmt(major[n][i])}"

    def total(i):
        return f"{sum(c[i] for c in counts.values()):,} · {fmt(sum(m[i] for m in major.values()))}"

    def footer(n):
        pick = [n] if n else list(major)
        return f"{sum(sum(counts.get(m, zero)) for m in pick):,} · {fmt(sum(sum(major[m]) for m in pick))}"

    table = _table(labels, major, cell, total, "in the range", footer, present)
    return Chart(f"refunds-{currency.lower()}", f"Refunds ({currency})", svg, table, _legend(major, colors),
                 f"Refunds and chargebacks of payments in {currency} during each period: count · amount.")


@staff_member_required
def dashboard(request):
    if not may_view(request.user):
        raise PermissionDenied(f"The finance dashboard needs the '{PERMISSION}' permission.")
    form = RangeForm(request.GET)  # empty: the defaults (the last 90 days, by provider, production)
    if form.is_valid():
        params = form.cleaned_data
        form = RangeForm(initial=params)  # shows the defaults it filled in
    else:
        defaults = RangeForm({})
        defaults.is_valid()
        params = defaults.cleaned_data
    data = dashboard_data(**{k: params[k] for k in ("start", "end", "group", "interval", "environment")})
    context = {**admin_site.each_context(request), "title": "Finance dashboard", "form": form, "params": params,
               **data}
    return TemplateResponse(request, "finance/dashboard.html", context)
