"""Ledger rows for the export tests, as the write path stores them (billing.Transaction), with times set
explicitly so the expected bytes can be written out."""

from datetime import UTC, datetime

from billing.models import Transaction
from billing.snapshots import TransactionKind
from tests.factories import SubscriptionFactory


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def ledger_row(*, subscription=None, recorded_at: str | None = None, **fields) -> Transaction:
    """One Transaction (a Stripe purchase of 9.99 EUR on 2026-11-05 unless told otherwise); `recorded_at` as
    ISO text sets when we recorded it (auto_now_add would make it now)."""
    subscription = subscription or SubscriptionFactory()
    values = {"provider": subscription.provider, "kind": TransactionKind.PURCHASE, "amount_minor": 999,
              "currency": "EUR", "occurred_at": at("2026-11-05T10:00:00"),
              "environment": subscription.environment, **fields}
    values.setdefault("provider_transaction_id", f"tx_{Transaction.objects.count() + 1}")
    row = Transaction.objects.create(subscription=subscription, **values)
    if recorded_at is not None:
        Transaction.objects.filter(pk=row.pk).update(recorded_at=at(recorded_at))
        row.refresh_from_db()
    return row
