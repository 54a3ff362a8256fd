"""Money as integer minor units with a currency (never floats): the ISO 4217 exponent of a currency,
amounts given in major units converted to minor units, and minor units shown to people."""

from decimal import ROUND_HALF_UP, Decimal
from types import MappingProxyType

# ISO 4217 currencies whose minor unit is not the cent; every other currency has two decimals.
_EXPONENTS = {**dict.fromkeys(("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI",
                               "VND", "VUV", "XAF", "XOF", "XPF"), 0),
              **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3)}
# Read only, for code that formats amounts outside Python (finance's exports format them in SQL).
EXPONENTS = MappingProxyType(_EXPONENTS)


def exponent(currency: str | None) -> int:
    """Decimal places of the currency's minor unit: 2 for EUR, 0 for JPY, 3 for KWD."""
    return _EXPONENTS.get((currency or "").upper(), 2)


def to_minor(amount: Decimal, currency: str | None) -> int:
    """An amount in major units (Decimal("9.99") EUR) in minor units (999), rounded half up."""
    return int((amount * 10 ** exponent(currency)).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def format_minor(amount_minor: int | None, currency: str | None) -> str:
    """For people: 999 EUR → "9.99 EUR", 980 JPY → "980 JPY"; None → "—"."""
    if amount_minor is None:
        return "—"
    places = exponent(currency)
    return f"{Decimal(amount_minor).scaleb(-places):,.{places}f} {currency or ''}".strip()
