"""How finance's exports write values: times in UTC ISO 8601, amounts as a decimal string in the currency's
own number of decimals (beside the integer minor units), booleans as true/false, nothing as empty."""

from datetime import date, datetime

from .streaming import decimal_string, moment


def utc_iso(value: datetime | None) -> str:
    """As every export writes a time (finance/streaming.py `moment`); None → ""."""
    return moment(value) or ""


def day_iso(day: date | None) -> str:
    return "" if day is None else day.isoformat()


def decimal_amount(amount_minor: int | None, currency: str | None) -> str:
    """As every export writes an amount (finance/streaming.py `decimal_string`): 999 USD → "9.99",
    980 JPY → "980", -5 EUR → "-0.05"; None → ""."""
    return decimal_string(amount_minor, currency) or ""


def boolean(value: bool | None) -> str:
    return "" if value is None else ("true" if value else "false")
