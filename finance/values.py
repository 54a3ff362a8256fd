"""How finance's exports write values: times in UTC ISO 8601, amounts as a decimal string in the currency's
own number of decimals (beside the integer minor units), booleans as true/false, nothing as empty."""

from datetime import UTC, date, datetime
from decimal import Decimal

from billing.money import exponent


def utc_iso(moment: datetime | None) -> str:
    if moment is None:
        return ""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def day_iso(day: date | None) -> str:
    return "" if day is None else day.isoformat()


def decimal_amount(amount_minor: int | None, currency: str | None) -> str:
    """999 USD → "9.99", 980 JPY → "980", -5 EUR → "-0.05"; None → ""."""
    if amount_minor is None:
        return ""
    places = exponent(currency)
    return f"{Decimal(amount_minor).scaleb(-places):.{places}f}"


def boolean(value: bool | None) -> str:
    return "" if value is None else ("true" if value else "false")
