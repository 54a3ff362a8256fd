"""The transactions export: one row per ledger row (billing.Transaction), the same from the command
(`manage.py export_transactions`), the API (`GET /api/finance/transactions`) and the admin's "Export CSV".
Columns and what they mean: docs/finance.md "Columns"."""

from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from billing.models import Transaction
from billing.snapshots import Environment, Provider

from .streaming import amount, integer, moment, text, timestamp

COLUMNS = (
    integer("id"),
    text("provider"),
    text("environment"),
    text("kind"),
    text("store_transaction_id", "provider_transaction_id"),
    text("order_id"),
    text("line_item_id"),
    text("charge_id"),
    text("refers_to"),
    timestamp("occurred_at"),
    timestamp("recorded_at"),
    timestamp("period_start"),
    timestamp("period_end"),
    text("currency"),
    amount("amount", "amount_minor", "currency"),
    integer("amount_minor"),
    text("settlement_currency"),
    amount("fee", "fee_minor", "settlement_currency"),
    integer("fee_minor"),
    amount("net", "net_minor", "settlement_currency"),
    integer("net_minor"),
    text("country"),
    text("offer_kind"),
    text("store_product_id"),
    text("store_subscription_id", "subscription__provider_subscription_id"),
    text("user_id", "subscription__subscriber__external_id"),
)
HEADER = tuple(column.name for column in COLUMNS)
ORDER = ("occurred_at", "id")  # deterministic: two exports of the same rows give the same bytes
ENVIRONMENTS = (Environment.PRODUCTION, Environment.SANDBOX, "all")


class BadExportRequest(ValueError):
    """A parameter the caller must fix; `param` names it (the command's option, the API's query key)."""

    def __init__(self, param: str, message: str):
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class TransactionExport:
    """What to export: ledger rows that occurred on the UTC days first..last (both included), recorded
    before `recorded_before`, of one provider (or all) and environment (or all)."""

    first: date
    last: date
    recorded_before: datetime
    provider: str | None = None
    environment: str = Environment.PRODUCTION

    def queryset(self):
        start = datetime.combine(self.first, time.min, tzinfo=UTC)
        end = datetime.combine(self.last + timedelta(days=1), time.min, tzinfo=UTC)
        qs = Transaction.objects.filter(occurred_at__gte=start, occurred_at__lt=end,
                                        recorded_at__lt=self.recorded_before)
        if self.provider:
            qs = qs.filter(provider=self.provider)
        if self.environment != "all":
            qs = qs.filter(environment=self.environment)
        return qs.order_by(*ORDER)

    def filename(self, fmt: str) -> str:
        return f"transactions_{self.first:%Y-%m-%d}_{self.last:%Y-%m-%d}.{fmt}"

    @property
    def recorded_before_text(self) -> str:
        return moment(self.recorded_before)


def _day(param: str, value) -> date:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    parsed = None
    with suppress(ValueError):  # well formed but no such day (2026-02-30)
        parsed = parse_date(str(value or "").strip())
    if parsed is None:
        raise BadExportRequest(param, f"{param} must be a date as YYYY-MM-DD (a whole UTC day), not {value!r}.")
    return parsed


def _moment(param: str, value) -> datetime:
    raw = str(value).strip()
    parsed = None
    try:
        parsed = parse_datetime(raw)
        if parsed is None and (day := parse_date(raw)) is not None:
            parsed = datetime.combine(day, time.min)
    except ValueError:
        pass
    if parsed is None:
        raise BadExportRequest(param, f"{param} must be an ISO 8601 date-time such as 2026-12-01T00:00:00Z "
                                      f"(no offset: UTC), not {value!r}.")
    return parsed if timezone.is_aware(parsed) else parsed.replace(tzinfo=UTC)


def export_parse(*, first, last, provider=None, environment=None, recorded_before=None, now: datetime | None = None,
                 names: dict[str, str] | None = None) -> TransactionExport:
    """A TransactionExport from the caller's text, or BadExportRequest naming the parameter. `names` maps
    from, to, provider, environment, recorded_before to the caller's spelling (the command's --options)."""
    names = {"from": "from", "to": "to", "provider": "provider", "environment": "environment",
             "recorded_before": "recorded_before", **(names or {})}
    now = now or timezone.now()
    if first in (None, ""):
        raise BadExportRequest(names["from"], f"{names['from']} is required (YYYY-MM-DD).")
    if last in (None, ""):
        raise BadExportRequest(names["to"], f"{names['to']} is required (YYYY-MM-DD, included).")
    first_day, last_day = _day(names["from"], first), _day(names["to"], last)
    if first_day > last_day:
        raise BadExportRequest(names["to"], f"{names['to']} ({last_day}) is before {names['from']} ({first_day}).")
    if provider in ("", "all"):
        provider = None
    if provider is not None and provider not in Provider.ALL:
        raise BadExportRequest(names["provider"], f"{names['provider']} must be one of {', '.join(Provider.ALL)} "
                                                  f"(or omitted for all), not {provider!r}.")
    environment = environment or Environment.PRODUCTION
    if environment not in ENVIRONMENTS:
        raise BadExportRequest(names["environment"], f"{names['environment']} must be one of "
                                                     f"{', '.join(ENVIRONMENTS)}, not {environment!r}.")
    if recorded_before in (None, ""):
        cutoff = now
    else:
        cutoff = _moment(names["recorded_before"], recorded_before)
        if cutoff > now:
            # Rows may still be recorded before a future moment: such an export could not be reproduced.
            raise BadExportRequest(names["recorded_before"], f"{names['recorded_before']} ({moment(cutoff)}) is in "
                                                             "the future; an export can only be fixed for a past "
                                                             "moment.")
    return TransactionExport(first=first_day, last=last_day, recorded_before=cutoff, provider=provider,
                             environment=environment)
