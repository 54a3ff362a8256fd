"""The ledger's details of one money movement, as the write path stores them (billing/apply.py).

Each store's mapping fills a TransactionRecord with only what the store says (docs/finance.md
"Columns"); here they are normalised (currencies upper case, amounts positive) and nothing is guessed:
a field the store left empty stays empty."""

from django.db.models import Sum

from .models import Transaction
from .snapshots import TransactionKind, TransactionRecord


def _currency(value: str) -> str:
    return (value or "").upper()[:3]


def ledger_details(record: TransactionRecord) -> dict:
    """The Transaction fields beyond the money itself (provider, id, kind, amount, time, raw)."""
    return {
        "order_id": record.order_id or "",
        "line_item_id": record.line_item_id or "",
        "charge_id": record.charge_id or "",
        "period_start": record.period_start,
        "period_end": record.period_end,
        "country": (record.country or "").upper()[:3],
        "offer_kind": record.offer_kind or "",
        "refers_to": record.refers_to or "",
        "store_product_id": record.store_product_id or "",
        # As the store states them (Stripe's balance transaction: net is negative for money out).
        "fee_minor": record.fee_minor,
        "net_minor": record.net_minor,
        "settlement_currency": _currency(record.settlement_currency),
    }


def ledger_amount(provider: str, record: TransactionRecord) -> int | None:
    """The record's amount (positive). A reversal a store sends without an amount (Apple's
    REFUND_REVERSED) gives back what the ledger recorded as refunded for that payment: a fact of
    our own ledger, not a guess."""
    if record.amount_minor is not None:
        return abs(record.amount_minor)
    if record.kind != TransactionKind.REFUND_REVERSED or not record.refers_to:
        return None
    return Transaction.objects.filter(provider=provider, refers_to=record.refers_to,
                                      kind__in=TransactionKind.OUTGOING).aggregate(total=Sum("amount_minor"))["total"]
