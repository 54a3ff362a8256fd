"""Finance's tests place store events in time: each applied through the one write path at its own
moment (both its store time and when we recorded it), with the clock there."""

from datetime import UTC, datetime

import time_machine

from billing.apply import apply_snapshot
from billing.snapshots import Cause, CauseKind, TransactionRecord
from tests.factories import snapshot


def at(day: str, hour: int = 12, minute: int = 0) -> datetime:
    """'2026-10-05', 10 → 2026-10-05T10:00Z."""
    return datetime.fromisoformat(day).replace(hour=hour, minute=minute, tzinfo=UTC)


def apply_at(moment: datetime, status: str, *, recorded: datetime | None = None, sub_id: str = "sub_1", **fields):
    """The store's state of `sub_id` at `moment`, applied (and recorded) at `recorded` (default: then)."""
    with time_machine.travel(recorded or moment, tick=False):
        return apply_snapshot(snapshot(status, at=moment, sub_id=sub_id, **fields), Cause(CauseKind.WEBHOOK, ref="t"))


def payment(txid: str, moment: datetime, amount_minor: int, currency: str = "USD", kind: str = "renewal"):
    return TransactionRecord(provider_transaction_id=txid, kind=kind, occurred_at=moment, amount_minor=amount_minor,
                             currency=currency)
