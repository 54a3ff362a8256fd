"""The daily metrics as export rows, per day, ISO week (Monday first) or calendar month (manage.py
export_metrics, GET /api/finance/metrics). Over an interval, stocks (entitled, in trial, in grace, on
hold, MRR) are the interval's last day's, flows (new, churned, payments, revenue, refunds, …) are summed.
Columns in docs/finance.md "Metrics"."""

import calendar
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta

from .models import MetricDay
from .reporting_currency import CONVERTED, NO_RATE, SAME, Rates
from .values import day_iso, decimal_amount

INTERVALS = ("day", "week", "month")
STOCKS = ("entitled", "in_trial", "in_grace", "on_hold")
FLOWS = ("new", "reactivated", "churned", "trial_starts", "trial_conversions", "payments", "refunds")
MONEY_FLOWS = ("gross_revenue_minor", "refunds_minor")

HEADER = ("period_start", "period_end", "provider", "store_product_id", "environment", "currency", *STOCKS, *FLOWS,
          "gross_revenue", "gross_revenue_minor", "refunds_amount", "refunds_minor", "mrr", "mrr_minor",
          "reporting_currency", "conversion", "gross_revenue_reporting", "gross_revenue_reporting_minor",
          "refunds_amount_reporting", "refunds_reporting_minor", "mrr_reporting", "mrr_reporting_minor")

Key = tuple[str, str, str, str]


def period_of(day: date, interval: str) -> date:
    if interval == "week":
        return day - timedelta(days=day.weekday())
    if interval == "month":
        return day.replace(day=1)
    return day


def period_last_day(start: date, interval: str, last: date) -> date:
    """The interval's last day, within the range asked for."""
    if interval == "week":
        end = start + timedelta(days=min(6, (date.max - start).days))
    elif interval == "month":
        end = start.replace(day=calendar.monthrange(start.year, start.month)[1])
    else:
        end = start
    return min(end, last)


@dataclass
class _Period:
    start: date
    end: date
    values: dict[str, int] = field(default_factory=lambda: dict.fromkeys((*STOCKS, *FLOWS, *MONEY_FLOWS,
                                                                          "mrr_minor"), 0))
    reporting: dict[str, int] = field(default_factory=lambda: dict.fromkeys((*MONEY_FLOWS, "mrr_minor"), 0))
    missing_rate: bool = False


def metric_rows(first: date, last: date, interval: str = "day") -> Iterator[tuple]:
    """Rows in HEADER's order, by period then provider, product, environment, currency."""
    if interval not in INTERVALS:
        raise ValueError(f"interval must be one of {', '.join(INTERVALS)}")
    rates = Rates.for_range(first, last)
    periods: dict[tuple[date, Key], _Period] = {}
    for row in MetricDay.objects.filter(day__gte=first, day__lte=last).order_by("day", "id").iterator():
        start = period_of(row.day, interval)
        key = (row.provider, row.store_product_id, row.environment, row.currency)
        period = periods.get((start, key))
        if period is None:
            period = periods[(start, key)] = _Period(max(start, first), period_last_day(start, interval, last))
        _add(period, row, rates)
    for (_, key), period in sorted(periods.items()):
        yield _render(period, key, rates)


def _add(period: _Period, row: MetricDay, rates: Rates) -> None:
    last_day = row.day == period.end
    for name in FLOWS + MONEY_FLOWS:
        period.values[name] += getattr(row, name)
    if last_day:
        for name in (*STOCKS, "mrr_minor"):
            period.values[name] = getattr(row, name)
    if not rates.target:
        return
    for name in (*MONEY_FLOWS, "mrr_minor"):
        amount = getattr(row, name)
        if name == "mrr_minor" and not last_day:
            continue
        if not amount:
            continue
        converted = rates.convert(amount, row.currency, row.day)
        if converted is None:
            period.missing_rate = True
        else:
            period.reporting[name] += converted


def _render(period: _Period, key: Key, rates: Rates) -> tuple:
    provider, store_product_id, environment, currency = key
    v = period.values
    has_money = any(v[name] for name in (*MONEY_FLOWS, "mrr_minor"))
    if not rates.target or not has_money:
        conversion, reporting = "", None
    elif period.missing_rate:
        conversion, reporting = NO_RATE, None
    else:
        conversion, reporting = (SAME if currency.upper() == rates.target else CONVERTED), period.reporting

    def money(name: str) -> tuple[str, int]:
        return decimal_amount(v[name], currency), v[name]

    def in_reporting(name: str) -> tuple[str, int | str]:
        if reporting is None:
            return "", ""
        return decimal_amount(reporting[name], rates.target), reporting[name]

    return (day_iso(period.start), day_iso(period.end), provider, store_product_id, environment, currency,
            *(v[name] for name in STOCKS), *(v[name] for name in FLOWS),
            *money("gross_revenue_minor"), *money("refunds_minor"), *money("mrr_minor"),
            rates.target, conversion, *in_reporting("gross_revenue_minor"), *in_reporting("refunds_minor"),
            *in_reporting("mrr_minor"))
