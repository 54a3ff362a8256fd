"""Monthly recurring revenue: a paying subscription's price normalized to one month (docs/finance.md
"Metrics"). Exact fractions per subscription; a group's sum is rounded once, half up, to minor units, so
the figure does not depend on the order the subscriptions are read in."""

from fractions import Fraction

from billing.snapshots import PeriodUnit, Provider
from billing.statuses import Status

# Months in one period unit: a year is 12; a week 12/52 (a month is 52/12 weeks) and a day 12/365 (365/12 days).
MONTHS_PER_UNIT = {
    PeriodUnit.MONTH: Fraction(1),
    PeriodUnit.YEAR: Fraction(12),
    PeriodUnit.WEEK: Fraction(12, 52),
    PeriodUnit.DAY: Fraction(12, 365),
}
# Paying now: a trial pays nothing yet; ON_GRACE's payment failed (counted again once it is recovered);
# CANCELED has paid for its period (it stops counting when access ends).
PAYING_STATUSES = frozenset({Status.ACTIVE, Status.CANCELED})


def monthly_amount(*, provider: str, status: str, amount_minor: int | None, period_unit: str,
                   period_value: int | None) -> Fraction:
    """The subscription's contribution to MRR in minor units (0 for trials, grants, unknown prices)."""
    if provider == Provider.MANUAL or status not in PAYING_STATUSES or not amount_minor or amount_minor < 0:
        return Fraction(0)
    months = MONTHS_PER_UNIT.get(period_unit)
    if months is None or not period_value:
        return Fraction(0)
    return Fraction(amount_minor) / (months * period_value)


def round_minor(value: Fraction) -> int:
    """Half up (away from zero), as billing/money.py rounds."""
    sign = -1 if value < 0 else 1
    whole, rest = divmod(abs(value), 1)
    return sign * (int(whole) + (1 if rest >= Fraction(1, 2) else 0))
