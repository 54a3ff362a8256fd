"""What every store package shares: reading the stores' timestamps and amounts, period units, the
"the store has no such subscription" error, and the loop over the configured store adapters.

One name per job, used by all four stores: a store's own module never re-defines these."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from email.utils import parsedate_to_datetime

from django.utils import timezone
from django.utils.dateparse import parse_datetime

from billing import money
from billing.snapshots import PeriodUnit

from . import registry
from .base import PermanentError, ProviderAdapter, Undecodable

logger = logging.getLogger(__name__)


class SubscriptionNotFound(PermanentError):
    """The store knows no such subscription, purchase token or transaction (its 404 / 410). A retry
    cannot help; `status` is the HTTP status the store answered, when it answered one."""

    def __init__(self, message: str, *, status: int | None = None):
        self.status = status
        super().__init__(message)


# --- Timestamps --------------------------------------------------------------------------------

def datetime_from_seconds(value) -> datetime | None:
    """Unix seconds (Stripe's `created`, `current_period_end`); None, "" and 0 are absent."""
    if value in (None, "", 0):
        return None
    return datetime.fromtimestamp(int(value), tz=UTC)


def datetime_from_millis(value) -> datetime | None:
    """Unix milliseconds (Apple's `signedDate`, `expiresDate`; Google's `eventTimeMillis`)."""
    if value in (None, ""):
        return None
    return datetime.fromtimestamp(int(value) / 1000, tz=UTC)


def datetime_from_iso(value) -> datetime | None:
    """ISO 8601 / RFC 3339 text ("…Z", "+04:00", "+0300"); None if absent or not a date. A time
    without an offset is taken as UTC."""
    if not value or not isinstance(value, str):
        return None
    try:
        parsed = parse_datetime(value.strip())
    except ValueError:
        return None
    if parsed is None:
        return None
    return parsed if timezone.is_aware(parsed) else parsed.replace(tzinfo=UTC)


# --- Amounts -----------------------------------------------------------------------------------

def minor_from_decimal(amount, currency: str | None) -> int | None:
    """A decimal amount in major units (9.99, "10", 0.03) in the currency's minor units, never through
    a float sum; None when absent or not a number."""
    if amount is None or isinstance(amount, bool) or amount == "":
        return None
    try:
        value = Decimal(str(amount))
    except (InvalidOperation, ValueError):
        return None
    if not value.is_finite():
        return None
    return money.to_minor(value, (currency or "").upper())


def minor_from_milli(price, currency: str | None) -> int | None:
    """Milli-units (Apple: 1990 = 1.990 AUD) in the currency's minor units (199 cents)."""
    if price is None or not currency:
        return None
    return money.to_minor(Decimal(int(price)) / 1000, currency.upper())


def minor_from_units_nanos(units, nanos, currency: str | None) -> int | None:
    """Google's Money (`units` + `nanos`, billionths) in the currency's minor units."""
    if not currency:
        return None
    exponent = money.exponent(currency)
    return int(units or 0) * 10**exponent + round(int(nanos or 0) / 10 ** (9 - exponent))


# --- Periods -----------------------------------------------------------------------------------

_PERIOD_UNITS = {"day": PeriodUnit.DAY, "week": PeriodUnit.WEEK, "month": PeriodUnit.MONTH, "year": PeriodUnit.YEAR}


def period_unit(name) -> str | None:
    """A store's billing interval name ("month", "Month", "year") as our PeriodUnit; None if unknown."""
    return _PERIOD_UNITS.get(str(name or "").strip().lower())


# --- Small readers -----------------------------------------------------------------------------

def retry_after_seconds(value, *, unix_millis: bool = False) -> float | None:
    """A 429's Retry-After header in seconds from now: delta-seconds or an HTTP date (RFC 9110), or
    (`unix_millis`: Apple's App Store Server API) a Unix time in milliseconds. None when absent or
    unreadable."""
    if value in (None, ""):
        return None
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max(0.0, (when - timezone.now()).total_seconds())
    if unix_millis:
        return max(0.0, number / 1000 - timezone.now().timestamp())
    return max(0.0, number)


def as_dict(value) -> dict:
    """A JSON member that should be an object: {} when it is absent or anything else."""
    return value if isinstance(value, dict) else {}


def digest(value) -> str:
    """A short stable digest of JSON data (key order and whitespace do not matter)."""
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    # surrogatepass: a lone surrogate (hostile but authentic content) still has a digest, not a crash
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def header(headers, name: str) -> str:
    """A request header by name, whatever its case ("" when absent)."""
    value = headers.get(name)
    if value is None:
        lowered = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lowered), None)
    return value or ""


# --- The stores --------------------------------------------------------------------------------

def store_adapters() -> Iterator[tuple[str, ProviderAdapter | None]]:
    """Each real store (not the manual provider) with its adapter; None for one that cannot even load
    (logged), so that health, checks, sweeps and the admin go on with the others."""
    for name in registry.store_names():
        try:
            adapter = registry.get_adapter(name)
        except Exception:
            logger.exception("the %s adapter cannot be loaded", name)
            adapter = None
        yield name, adapter


# --- Bodies ------------------------------------------------------------------------------------

def json_decode(data: bytes | str, *, what: str = "The body"):
    """An authentic body (or part of one) decoded as JSON, or Undecodable saying why not: not UTF-8,
    not JSON, or nested deeper than the parser goes (RecursionError, caught here so it is never a 500)."""
    try:
        return json.loads(data.decode("utf-8") if isinstance(data, bytes) else data)  # the stores send UTF-8
    except UnicodeDecodeError as exc:
        raise Undecodable(f"{what} is not UTF-8 (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}).") from None
    except RecursionError:
        raise Undecodable(f"{what} is JSON nested deeper than the parser goes.") from None
    except ValueError as exc:
        raise Undecodable(f"{what} is not JSON: {exc}") from None
