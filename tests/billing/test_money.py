"""Money is integer minor units: what staff read in the admin follows each currency's decimals."""

from decimal import Decimal

import pytest

from billing.money import format_minor, to_minor


@pytest.mark.parametrize(("amount", "currency", "shown"), [
    (999, "EUR", "9.99 EUR"), (980, "JPY", "980 JPY"), (1234, "KWD", "1.234 KWD"),
    (123456789, "USD", "1,234,567.89 USD"), (None, "EUR", "—"),
])
def test_amounts_are_shown_in_the_currencys_own_decimals(amount, currency, shown):
    assert format_minor(amount, currency) == shown


@pytest.mark.parametrize(("amount", "currency", "minor"), [
    ("9.99", "EUR", 999), ("980", "JPY", 980), ("1.2345", "KWD", 1235), ("0.005", "usd", 1),
])
def test_major_units_become_minor_units_rounded_half_up(amount, currency, minor):
    assert to_minor(Decimal(amount), currency) == minor
