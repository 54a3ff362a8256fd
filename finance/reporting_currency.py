"""Conversion to the reporting currency (FINANCE_REPORTING_CURRENCY) with the rates staff enter per
currency and month (ExchangeRate). A figure without a rate is never converted by a guess: it stays in its
own currency and the row says so (docs/finance.md "Reporting currency")."""

from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings

from billing.money import exponent

from .models import ExchangeRate

SAME = "same_currency"
CONVERTED = "converted"
NO_RATE = "no_rate"  # the figures stay in their own currency (the reporting columns are empty)


def reporting_currency() -> str:
    return (settings.FINANCE_REPORTING_CURRENCY or "").upper()


def month_of(day: date) -> date:
    return day.replace(day=1)


@dataclass
class Rates:
    """The rates of the months of a range, read once."""

    target: str
    by_month: dict[tuple[str, date], Decimal]

    @classmethod
    def for_range(cls, first: date, last: date) -> "Rates":
        target = reporting_currency()
        if not target:
            return cls("", {})
        rows = ExchangeRate.objects.filter(month__gte=month_of(first), month__lte=month_of(last))
        return cls(target, {(r.currency.upper(), r.month): r.rate for r in rows})

    def convert(self, amount_minor: int, currency: str, day: date) -> int | None:
        """`amount_minor` of `currency` in the reporting currency's minor units on `day` (the rate of its
        month), half up; None without a rate."""
        currency = currency.upper()
        if currency == self.target:
            return amount_minor
        rate = self.by_month.get((currency, month_of(day)))
        if rate is None:
            return None
        major = Decimal(amount_minor).scaleb(-exponent(currency)) * rate
        return int(major.scaleb(exponent(self.target)).quantize(Decimal(1), rounding=ROUND_HALF_UP))
