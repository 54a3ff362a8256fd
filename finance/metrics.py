"""The daily metrics (MetricDay rows), computed from the status history and the ledger only, so that a
past day rebuilt later gives the same rows (docs/finance.md "Metrics").

Everything counts at the moment it was both true at the store and known to us: a history row or a
ledger row counts from the later of its `occurred_at` and `recorded_at`. A day's stocks are the
subscriptions as of its last microsecond (billing/history.py); its flows compare each subscription's
state at the end of the day before with the end of the day, and walk the history rows that started
to count during the day (trial starts and conversions)."""

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from fractions import Fraction

from django.db import connection, transaction
from django.db.models import Q

from billing.history import SubscriptionState, history_rows_as_of, rows_entering, subscriptions_as_of
from billing.models import Product, Subscription, Transaction
from billing.snapshots import TransactionKind
from billing.statuses import ENTITLED_STATUSES, Status

from .models import MetricDay
from .mrr import monthly_amount, round_minor

Key = tuple[str, str, str, str]  # (provider, store_product_id, environment, currency)

_PAYMENTS = (TransactionKind.PURCHASE, TransactionKind.RENEWAL)
# The statuses a day's stocks count (on hold, or entitled until the state's end): no other state counts.
_COUNTED_STATUSES = ENTITLED_STATUSES | {Status.ON_HOLD}
_COUNTERS = ("entitled", "in_trial", "in_grace", "on_hold", "new", "reactivated", "churned", "trial_starts",
             "trial_conversions", "payments", "gross_revenue_minor", "refunds", "refunds_minor")


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

    def compute(self) -> list[MetricDay]:
        entering = self._entering()
        changed = {row["subscription_id"] for row in entering}
        payments = list(self._ledger())
        wanted = changed | {t.subscription_id for t in payments}
        at_end: dict[int, SubscriptionState] = {}
        # Stocks and churn by time passing come from the states that are on hold or entitled by status: the
        # others (ended, paused, never started: most rows after a few years) count in neither, so they are
        # not read. The day's changed and paid subscriptions are read whatever their status.
        for state in subscriptions_as_of(self.end, statuses=_COUNTED_STATUSES, including=wanted):
            self._stocks(state)
            if state.subscription_id in wanted:
                at_end[state.subscription_id] = state
            elif state.is_entitled(self.start) and not state.is_entitled(self.end):
                self.add(_key(state), "churned")  # access ended by time passing, no history row today
        self._flows(changed, entering, at_end)
        for t in payments:
            self._money(t, at_end.get(t.subscription_id))
        return self._rows()

    def _entering(self) -> list[dict]:
        return list(rows_entering(self.start, self.end).order_by("subscription_id", "id").values(
            "id", "subscription_id", "new_status", "state_known", "subscription__provider", "store_product_id",
            "environment", "currency", "subscription__store_product_id", "subscription__environment"))

    def _ledger(self):
        """The ledger rows that started to count during the day (true and known by its end, not both
        by the day before's end)."""
        return (Transaction.objects.filter(recorded_at__lte=self.end, occurred_at__lte=self.end)
                .exclude(recorded_at__lte=self.start, occurred_at__lte=self.start)
                .select_related("subscription").order_by("id"))

    def _stocks(self, state: SubscriptionState) -> None:
        key = _key(state)
        if state.status == Status.ON_HOLD:
            self.add(key, "on_hold", product_id=state.product_id)
        if not state.is_entitled(self.end):
            return
        self.add(key, "entitled", product_id=state.product_id)
        if state.status == Status.TRIAL:
            self.add(key, "in_trial")
        elif state.status == Status.ON_GRACE:
            self.add(key, "in_grace")
        self.figures[key].mrr += monthly_amount(provider=state.provider, status=state.status,
                                                amount_minor=state.amount_minor, period_unit=state.period_unit,
                                                period_value=state.period_value)

    def _flows(self, changed: set[int], entering: list[dict], at_end: dict[int, SubscriptionState]) -> None:
        """New, reactivated and churned (end of the day before → end of the day); trial starts and
        conversions (each history row of the day, in the order applied)."""
        before = {s.subscription_id: s for s in subscriptions_as_of(self.start, subscription_ids=list(changed))}
        entitled_earlier = set(history_rows_as_of(self.start).filter(
            subscription_id__in=list(changed), new_status__in=list(ENTITLED_STATUSES))
            .values_list("subscription_id", flat=True).distinct())
        replacing = set(Subscription.objects.filter(replaced_by_id__in=list(changed))
                        .values_list("replaced_by_id", flat=True))
        superseded = set(Subscription.objects.filter(pk__in=list(changed), replaced_by__isnull=False)
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
            status, last_id = last_status.get(row["subscription_id"], ("", None))
            if last_id is not None and row["id"] < last_id:
                continue  # older than the state in force: it does not change it
            key = self._row_key(row, at_end.get(row["subscription_id"]))
            if row["new_status"] == Status.TRIAL and status != Status.TRIAL:
                self.add(key, "trial_starts")
            elif status == Status.TRIAL and row["new_status"] == Status.ACTIVE:
                self.add(key, "trial_conversions")
            last_status[row["subscription_id"]] = (row["new_status"], row["id"])

    @staticmethod
    def _row_key(row: dict, end_state: SubscriptionState | None) -> Key:
        if row["state_known"]:
            return row["subscription__provider"], row["store_product_id"], row["environment"], row["currency"]
        if end_state is not None:
            return _key(end_state)
        return (row["subscription__provider"], row["subscription__store_product_id"],
                row["subscription__environment"], "")

    def _money(self, t: Transaction, state: SubscriptionState | None) -> None:
        """Payments and refunds, in the ledger row's own currency and environment; its product is the
        one it names, else the subscription's as of the day's end."""
        store_product_id = t.store_product_id or (state.store_product_id if state is not None
                                                  else t.subscription.store_product_id)
        key = (t.provider, store_product_id, t.environment, t.currency)
        amount = t.amount_minor or 0
        if t.kind in _PAYMENTS:
            if amount > 0:  # a free trial's zero "purchase" is not a payment
                self.add(key, "payments")
                self.add(key, "gross_revenue_minor", amount)
        elif t.kind in TransactionKind.OUTGOING:
            self.add(key, "refunds")
            self.add(key, "refunds_minor", amount)
        elif t.kind == TransactionKind.REFUND_REVERSED:
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


def metrics_compute(day: date) -> list[MetricDay]:
    """The day's rows (not saved)."""
    return _Day(day).compute()


def metrics_rebuild_day(day: date) -> int:
    """Recompute one day and replace its rows, in one transaction (idempotent). Returns the rows written."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            # Two rebuilds of one day (beat and a command) take turns instead of colliding on the unique key.
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [0x6D657472, day.toordinal()])
        rows = metrics_compute(day)
        MetricDay.objects.filter(day=day).delete()
        MetricDay.objects.bulk_create(rows)
    return len(rows)


def metrics_rebuild(first: date, last: date, *, progress=None) -> int:
    """Each day of [first, last] rebuilt in its own transaction; `progress(1)` after each."""
    if last < first:
        raise ValueError("the range ends before it starts")
    written, day = 0, first
    while day <= last:
        written += metrics_rebuild_day(day)
        if progress is not None:
            progress(1)
        day += timedelta(days=1)
    return written
