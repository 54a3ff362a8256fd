"""Totals of the rows a Transactions list shows (its filters, range and search applied): per currency,
payments and refunds (count and amount) and what is left. One GROUP BY query over the filtered rows;
currencies are never added together."""

from dataclasses import dataclass

from django.db.models import Count, QuerySet, Sum

from billing.money import format_minor
from billing.snapshots import TransactionKind

PAYMENTS = (TransactionKind.PURCHASE, TransactionKind.RENEWAL)
REFUNDS = TransactionKind.OUTGOING  # refunds and chargebacks
REVERSALS = (TransactionKind.REFUND_REVERSED,)


@dataclass
class CurrencyTotals:
    currency: str
    payments: int = 0
    payments_minor: int = 0
    refunds: int = 0
    refunds_minor: int = 0
    reversals: int = 0
    reversals_minor: int = 0
    without_amount: int = 0  # rows whose store sent no amount (counted, not summed)

    @property
    def net_minor(self) -> int:
        return self.payments_minor - self.refunds_minor + self.reversals_minor

    def show(self, minor: int) -> str:
        return format_minor(minor, self.currency) if self.currency else str(minor)

    @property
    def payments_amount(self):
        return self.show(self.payments_minor)

    @property
    def refunds_amount(self):
        return self.show(self.refunds_minor)

    @property
    def reversals_amount(self):
        return self.show(self.reversals_minor)

    @property
    def net_amount(self):
        return self.show(self.net_minor)


def ledger_totals(queryset: QuerySet) -> list[CurrencyTotals]:
    """Per currency (upper-cased; an empty currency is a row of its own), sorted by currency."""
    rows = (queryset.order_by().values("currency", "kind")
            .annotate(n=Count("id"), amount=Sum("amount_minor"), amounts=Count("amount_minor")))
    totals: dict[str, CurrencyTotals] = {}
    for row in rows:
        currency = (row["currency"] or "").upper()
        total = totals.setdefault(currency, CurrencyTotals(currency))
        amount, count = row["amount"] or 0, row["n"]
        total.without_amount += count - row["amounts"]
        if row["kind"] in PAYMENTS:
            total.payments += count
            total.payments_minor += amount
        elif row["kind"] in REFUNDS:
            total.refunds += count
            total.refunds_minor += amount
        elif row["kind"] in REVERSALS:
            total.reversals += count
            total.reversals_minor += amount
    return [totals[currency] for currency in sorted(totals)]
