"""The daily metrics (MetricDay rows), computed from the status history and the ledger only, so that a
past day rebuilt later gives the same rows (docs/finance.md "Metrics").

Everything counts at the moment it was both true at the store and known to us: a history row or a
ledger row counts from the later of its `occurred_at` and `recorded_at`. A day's stocks are the
subscriptions as of its last microsecond (billing/history.py); its flows compare each subscription's
state at the end of the day before with the end of the day, and walk the history rows that started
to count during the day (trial starts and conversions).

The stocks are carried from day to day (MetricCarry, exact): a day's are the day before's, less what the
subscriptions that can differ counted at its start, plus what they count at its end. Only two kinds can
differ: those with a history row starting to count during the day, and those whose state in force at the
start has its access end during the day (found through the index statuschange_entitled_by_end). So a day
costs its own activity, not the number of subscriptions. Without a carry of the day before that can be
trusted (`metrics_carry`), the day's stocks are read from every counted subscription, as of its end. Both ways
share the flows."""

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from fractions import Fraction

from django.db import connection, transaction
from django.db.models import Q
from django.db.models.functions import Coalesce, Greatest

from billing.history import (
    SubscriptionState,
    history_rows_as_of,
    ids_in,
    rows_entering,
    states_of_rows,
    subscriptions_as_of,
)
from billing.models import Product, StatusChange, Subscription, Transaction
from billing.snapshots import TransactionKind
from billing.statuses import ENTITLED_STATUSES, Status

from .models import MetricCarry, MetricDay
from .mrr import monthly_amount, round_minor

Key = tuple[str, str, str, str]  # (provider, store_product_id, environment, currency)

_PAYMENTS = (TransactionKind.PURCHASE, TransactionKind.RENEWAL)
# The statuses a day's stocks count (on hold, or entitled until the state's end): no other state counts.
_COUNTED_STATUSES = ENTITLED_STATUSES | {Status.ON_HOLD}
_STOCKS = ("entitled", "in_trial", "in_grace", "on_hold")
_COUNTERS = ("entitled", "in_trial", "in_grace", "on_hold", "new", "reactivated", "churned", "trial_starts",
             "trial_conversions", "payments", "gross_revenue_minor", "refunds", "refunds_minor")
# What a carry holds; another version (the stocks computed differently) is not used: the day is computed fully.
CARRY_VERSION = 1
_BATCH = 2000  # subscription ids per query
_LEDGER_COLUMNS = ("subscription_id", "provider", "store_product_id", "environment", "currency", "amount_minor", "kind",
                   "subscription__store_product_id")


@dataclass
class _Figures:
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_COUNTERS, 0))
    mrr: Fraction = Fraction(0)
    product_id: int | None = None


def day_end(day: date) -> datetime:
    """The day's last microsecond, UTC: what "at the end of the day" means."""
    return datetime.combine(day + timedelta(days=1), time.min, tzinfo=UTC) - timedelta(microseconds=1)


def _key(state: SubscriptionState) -> Key:
    return state.provider, state.store_product_id, state.environment, state.currency


def _counted_as(state: SubscriptionState | None, moment: datetime) -> tuple | None:
    """What the state's counting in the stocks at `moment` depends on (equal: it counts the same)."""
    if state is None:
        return None
    return (_key(state), state.status, state.is_entitled(moment), state.amount_minor, state.period_unit,
            state.period_value)


class _Day:
    def __init__(self, day: date):
        self.day = day
        self.end = day_end(day)
        self.start = day_end(day - timedelta(days=1))  # the day before's end: (start, end] is the day
        self.figures: dict[Key, _Figures] = defaultdict(_Figures)

    def add(self, key: Key, name: str, amount: int = 1, *, product_id: int | None = None) -> None:
        figures = self.figures[key]
        figures.counts[name] += amount
        if product_id is not None:
            figures.product_id = product_id

    def compute(self, carry: MetricCarry | None = None) -> list[MetricDay]:
        """The day's rows; its stocks from `carry` (the day before's, trusted) if given, else from every
        counted subscription as of the day's end."""
        entering = self._entering()
        changed = {row.subscription_id for row in entering}
        payments = list(self._ledger())
        wanted = changed | {t["subscription_id"] for t in payments}
        before = _states_as_of(self.start, changed)
        lapsing = self._lapsing(changed)  # no row today: their state at the end is the one at the start
        # A subscription's state at the end is its newest row counting then: the one in force at the start
        # or its newest row of the day, whichever is newer (by id, as applied). Only the subscriptions paid
        # today without a row of the day are read again.
        at_end = {row.subscription_id: row for row in entering}  # in id order: the newest is kept
        for sub_id, state in before.items():
            if state.history_id > at_end[sub_id].history_id:
                at_end[sub_id] = state
        at_end.update({sub_id: state for sub_id, state in lapsing.items() if sub_id in wanted})
        at_end.update(_states_as_of(self.end, wanted - at_end.keys()))
        if carry is None:
            # The others (ended, paused, never started: most rows after a few years) count in no stock, so
            # they are not read.
            for state in subscriptions_as_of(self.end, statuses=_COUNTED_STATUSES):
                self._stocks(state, self.end)
        else:
            self._carried(carry)
            for sub_id in changed | lapsing.keys():
                old, new = before.get(sub_id, lapsing.get(sub_id)), at_end.get(sub_id, lapsing.get(sub_id))
                if _counted_as(old, self.start) == _counted_as(new, self.end):
                    continue  # e.g. a renewal: it counts the same at both ends
                if old is not None:
                    self._stocks(old, self.start, sign=-1)
                if new is not None:
                    self._stocks(new, self.end)
        for sub_id, state in lapsing.items():
            # Access ended by time passing, no history row today. One with a ledger row today is not counted
            # (as it never was: past days rebuild the same).
            if sub_id not in wanted:
                self.add(_key(state), "churned")
        self._flows(changed, entering, before, at_end)
        for t in payments:
            self._money(t, at_end.get(t["subscription_id"]))
        return self._rows()

    def _lapsing(self, changed: set[int]) -> dict[int, SubscriptionState]:
        """The subscriptions without a history row today whose state in force at the day's start has its
        access end during the day: their access ended by time passing. Candidates are read through the index
        of the history rows' access end (statuschange_entitled_by_end: GREATEST passes over NULLs, as the
        access end does), then judged by the state actually in force at the start."""
        candidates = set(history_rows_as_of(self.start)
                         .filter(new_status__in=sorted(ENTITLED_STATUSES))
                         .alias(access_end=_access_end())
                         .filter(access_end__gt=self.start, access_end__lte=self.end)
                         .order_by().values_list("subscription_id", flat=True).distinct())
        states = _states_as_of(self.start, candidates - changed)
        return {sub_id: state for sub_id, state in states.items()
                if state.is_entitled(self.start) and not state.is_entitled(self.end)}

    def carry(self) -> list[list]:
        """The day's stocks, exact, for the next day (groups where every stock is 0 left out)."""
        out = []
        for key in sorted(self.figures):
            figures = self.figures[key]
            stocks = [figures.counts[name] for name in _STOCKS]
            if any(stocks) or figures.mrr:
                out.append([*key, *stocks, str(figures.mrr)])
        return out

    def _carried(self, carry: MetricCarry) -> None:
        for *key, entitled, in_trial, in_grace, on_hold, mrr in carry.stocks:
            figures = self.figures[tuple(key)]
            for name, value in zip(_STOCKS, (entitled, in_trial, in_grace, on_hold), strict=True):
                figures.counts[name] += value
            figures.mrr += Fraction(mrr)

    def _entering(self) -> list[SubscriptionState]:
        """The history rows that started to count during the day, each as the state it set, in the order
        applied (by subscription, then id)."""
        return list(states_of_rows(rows_entering(self.start, self.end).order_by("subscription_id", "id"),
                                   users=False))

    def _ledger(self):
        """The ledger rows that started to count during the day (true and known by its end, not both
        by the day before's end)."""
        return (Transaction.objects.filter(recorded_at__lte=self.end, occurred_at__lte=self.end)
                .exclude(recorded_at__lte=self.start, occurred_at__lte=self.start).order_by("id")
                .values(*_LEDGER_COLUMNS).iterator(chunk_size=_BATCH))  # plain values: no model, few dates

    def _stocks(self, state: SubscriptionState, moment: datetime, *, sign: int = 1) -> None:
        """What the state counts in the stocks at `moment` (sign -1: taken off)."""
        key = _key(state)
        if state.status == Status.ON_HOLD:
            self.add(key, "on_hold", sign, product_id=state.product_id)
        if not state.is_entitled(moment):
            return
        self.add(key, "entitled", sign, product_id=state.product_id)
        if state.status == Status.TRIAL:
            self.add(key, "in_trial", sign)
        elif state.status == Status.ON_GRACE:
            self.add(key, "in_grace", sign)
        self.figures[key].mrr += sign * monthly_amount(
            provider=state.provider, status=state.status, amount_minor=state.amount_minor,
            period_unit=state.period_unit, period_value=state.period_value)

    def _flows(self, changed: set[int], entering: list[SubscriptionState], before: dict[int, SubscriptionState],
               at_end: dict[int, SubscriptionState]) -> None:
        """New, reactivated and churned (end of the day before → end of the day) of the subscriptions with a
        row today; trial starts and conversions (each history row of the day, in the order applied)."""
        entitled_earlier, replacing, superseded = set(), set(), set()
        for ids in _batches(changed):
            entitled_earlier.update(history_rows_as_of(self.start).filter(
                ids_in("subscription_id", ids), new_status__in=sorted(ENTITLED_STATUSES))
                .order_by().values_list("subscription_id", flat=True).distinct())
            replacing.update(Subscription.objects.filter(ids_in("replaced_by_id", ids))
                             .values_list("replaced_by_id", flat=True))
            superseded.update(Subscription.objects.filter(ids_in("id", ids), replaced_by__isnull=False)
                              .values_list("pk", flat=True))
        for sub_id in changed:
            old, new = before.get(sub_id), at_end.get(sub_id)
            was = old is not None and old.is_entitled(self.start)
            now = new is not None and new.is_entitled(self.end)
            if now and not was:
                if sub_id in entitled_earlier:
                    self.add(_key(new), "reactivated")
                elif sub_id not in replacing:  # a plan change through a new purchase (Google) is not new
                    self.add(_key(new), "new")
            elif was and not now and sub_id not in superseded:
                self.add(_key(old), "churned")
        last_status = {sub_id: (s.status, s.history_id) for sub_id, s in before.items()}
        for row in entering:
            status, last_id = last_status.get(row.subscription_id, ("", None))
            if last_id is not None and row.history_id < last_id:
                continue  # older than the state in force: it does not change it
            # A row without a known state: counted in the group of the subscription's state at the end.
            key = _key(row) if row.state_known else _key(at_end.get(row.subscription_id, row))
            if row.status == Status.TRIAL and status != Status.TRIAL:
                self.add(key, "trial_starts")
            elif status == Status.TRIAL and row.status == Status.ACTIVE:
                self.add(key, "trial_conversions")
            last_status[row.subscription_id] = (row.status, row.history_id)

    def _money(self, t: dict, state: SubscriptionState | None) -> None:
        """Payments and refunds, in the ledger row's own currency and environment; its product is the
        one it names, else the subscription's as of the day's end."""
        store_product_id = t["store_product_id"] or (state.store_product_id if state is not None
                                                     else t["subscription__store_product_id"])
        key = (t["provider"], store_product_id, t["environment"], t["currency"])
        amount = t["amount_minor"] or 0
        kind = t["kind"]
        if kind in _PAYMENTS:
            if amount > 0:  # a free trial's zero "purchase" is not a payment
                self.add(key, "payments")
                self.add(key, "gross_revenue_minor", amount)
        elif kind in TransactionKind.OUTGOING:
            self.add(key, "refunds")
            self.add(key, "refunds_minor", amount)
        elif kind == TransactionKind.REFUND_REVERSED:
            self.add(key, "refunds_minor", -amount)  # money back in: net refunds

    def _rows(self) -> list[MetricDay]:
        products = {(p.provider, p.store_product_id): p.pk for p in Product.objects.filter(
            Q(pk__in=[f.product_id for f in self.figures.values() if f.product_id is not None])
            | Q(store_product_id__in=[key[1] for key in self.figures]))}
        rows = []
        for key in sorted(self.figures):
            figures = self.figures[key]
            mrr = round_minor(figures.mrr)
            if not any(figures.counts.values()) and not mrr:
                continue
            provider, store_product_id, environment, currency = key
            rows.append(MetricDay(day=self.day, provider=provider, store_product_id=store_product_id,
                                  environment=environment, currency=currency, mrr_minor=mrr,
                                  product_id=products.get((provider, store_product_id)), **figures.counts))
        return rows


def _access_end():
    """A history row's access end in SQL: the later of expiry and grace end, either may be NULL. PostgreSQL's
    GREATEST passes over NULLs (and is the index's expression); SQLite's MAX returns NULL if any is."""
    if connection.vendor == "postgresql":
        return Greatest("expires_at", "grace_until")
    return Greatest(Coalesce("expires_at", "grace_until"), Coalesce("grace_until", "expires_at"))


def _batches(subscription_ids: set[int]) -> Iterator[list[int]]:
    """The ids in order, _BATCH at a time: bounded queries (a day's activity can be tens of thousands)."""
    ids = sorted(subscription_ids)
    for i in range(0, len(ids), _BATCH):
        yield ids[i:i + _BATCH]


def _states_as_of(moment: datetime, subscription_ids: set[int]) -> dict[int, SubscriptionState]:
    """These subscriptions' states at `moment` (those that had one)."""
    return {state.subscription_id: state for ids in _batches(subscription_ids)
            for state in subscriptions_as_of(moment, subscription_ids=ids, users=False)}


def metrics_compute(day: date) -> list[MetricDay]:
    """The day's rows (not saved), computed fully (no carry)."""
    return _Day(day).compute()


def _history_max_id() -> int:
    return StatusChange.objects.order_by("-id").values_list("id", flat=True).first() or 0


def metrics_carry(day: date) -> MetricCarry | None:
    """The day's carry if it can be trusted: computed by this version, and no history row written since
    counts at the day's end. Rows are normally recorded when written (after the day, so they count later),
    but a row can be written with a past `recorded_at` (a backfill, an import, a test placing events in
    time): the day's stocks would then differ from the carry. A later day's carry is caught the same way
    (a row counting at one day's end counts at every later day's end)."""
    carry = MetricCarry.objects.filter(day=day, version=CARRY_VERSION).first()
    if carry is None or history_rows_as_of(day_end(day)).filter(id__gt=carry.history_max_id).exists():
        return None
    return carry


def metrics_rebuild_day(day: date, *, full: bool = False) -> int:
    """Recompute one day and replace its rows and its carry, in one transaction (idempotent). Its stocks
    come from the day before's carry when there is one to trust, unless `full`. Returns the rows written."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            # Two rebuilds of one day (beat and a command) take turns instead of colliding on the unique key.
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [0x6D657472, day.toordinal()])
        history_max_id = _history_max_id()  # before reading: a row written meanwhile makes the carry stale
        computing = _Day(day)
        rows = computing.compute(None if full else metrics_carry(day - timedelta(days=1)))
        MetricDay.objects.filter(day=day).delete()
        MetricDay.objects.bulk_create(rows)
        MetricCarry.objects.update_or_create(day=day, defaults={
            "stocks": computing.carry(), "history_max_id": history_max_id, "version": CARRY_VERSION})
    return len(rows)


def metrics_rebuild(first: date, last: date, *, full: bool = False, progress=None) -> int:
    """Each day of [first, last] rebuilt in its own transaction; `progress(1)` after each. The first day is
    computed fully (a rebuild does not trust what was there before), each next one from the day before's
    carry just written; `full`: every day fully (the same rows, slower: to check)."""
    if last < first:
        raise ValueError("the range ends before it starts")
    written, day = 0, first
    while day <= last:
        written += metrics_rebuild_day(day, full=full or day == first)
        if progress is not None:
            progress(1)
        day += timedelta(days=1)
    return written
