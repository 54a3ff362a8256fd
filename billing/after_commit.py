"""The write path's work after commit, coalesced per transaction: every outbox row created in one
transaction is published by ONE relay call (one claim query, one pipelined XADD batch, one UPDATE) and
every subscriber touched gets ONE cache refresh (one query for all of them, one pipelined write). A
drain committing 25 events pays those round trips once, not 25 times.

Pending work is kept per database connection (connections are per thread), each item numbered, and
each addition registers a `transaction.on_commit` callback carrying its item's number. The first
callback to run flushes every pending item numbered from its own on, in one go; the callbacks after it
find nothing left. Why one callback per item and not one per transaction: Django discards the callbacks
registered inside a savepoint that rolls back, so a single flush registered there would be lost for the
work added after the rollback; here the work added later brings its own callback. Items from a
rolled-back savepoint may still be flushed by an earlier surviving callback: harmless (the relay finds
no such outbox row; a refresh only rewrites a user's cache entry from what is committed). Items numbered
below the running callback whose own callbacks never ran (rolled back) are dropped."""

import itertools
import logging
from dataclasses import dataclass, field
from functools import partial

from django.db import DEFAULT_DB_ALIAS, connections, transaction

from . import double_payments, entitlement_cache, outbox

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class _Pending:
    numbers: itertools.count = field(default_factory=itertools.count)
    outbox_ids: list[tuple[int, int]] = field(default_factory=list)  # (item number, outbox id)
    subscriber_ids: list[tuple[int, int]] = field(default_factory=list)  # (item number, subscriber id)
    # (item number, subscriber id) whose subscriptions started or stopped paying: double payments
    double_payment_ids: list[tuple[int, int]] = field(default_factory=list)

    def flush(self, first: int) -> None:
        outbox_ids = [i for n, i in self.outbox_ids if n >= first]
        subscriber_ids = sorted({i for n, i in self.subscriber_ids if n >= first})
        double_payment_ids = sorted({i for n, i in self.double_payment_ids if n >= first})
        # the rest: flushed already, or rolled back
        self.outbox_ids, self.subscriber_ids, self.double_payment_ids = [], [], []
        if outbox_ids:
            outbox.publish_pending_after_commit(outbox_ids)
        if subscriber_ids:
            entitlement_cache.refresh_many(subscriber_ids)
        if double_payment_ids:  # last: the least urgent (one query for the users of the transaction)
            double_payments.detect_after_commit(double_payment_ids)


def _add(using: str, attribute: str, ids) -> None:
    connection = connections[using]
    pending = getattr(connection, "_billing_after_commit", None)
    if pending is None:
        pending = connection._billing_after_commit = _Pending()
    number = next(pending.numbers)
    getattr(pending, attribute).extend((number, i) for i in ids)
    transaction.on_commit(partial(pending.flush, number), using=using)


def publish(*outbox_ids: int, using: str = DEFAULT_DB_ALIAS) -> None:
    """Relay these outbox rows to the stream (in this order) once the current transaction commits."""
    if outbox_ids:
        _add(using, "outbox_ids", outbox_ids)


def refresh(*subscriber_ids: int | None, using: str = DEFAULT_DB_ALIAS) -> None:
    """Refresh these users' cached entitlements once the current transaction commits."""
    ids = {s for s in subscriber_ids if s is not None}
    if ids:
        _add(using, "subscriber_ids", ids)


def check_double_payments(*subscriber_ids: int | None, using: str = DEFAULT_DB_ALIAS) -> None:
    """Look for double payments of these users (billing/double_payments.py) once the transaction commits."""
    ids = {s for s in subscriber_ids if s is not None}
    if ids:
        _add(using, "double_payment_ids", ids)
