"""The daily metrics carried from day to day (finance/metrics.py, MetricCarry): a day computed from the day
before's stocks and its own changes gives the same rows as one computed from every subscription."""

import random
from datetime import date, timedelta

import pytest
import time_machine
from django.forms.models import model_to_dict

from billing.snapshots import TransactionKind
from billing.statuses import Status
from finance.metrics import metrics_compute, metrics_rebuild, metrics_rebuild_day
from finance.models import MetricCarry, MetricDay
from finance.tasks import compute_daily_metrics

from .timeline import apply_at, at, payment

pytestmark = pytest.mark.django_db

FIRST, LAST = date(2026, 10, 1), date(2026, 10, 16)
PLANS = (  # (store product, price, currency, period unit): several groups, MRR in fractions of a minor unit
    ("price_monthly", 999, "USD", "month"),
    ("price_yearly", 9999, "EUR", "year"),
    ("price_weekly", 299, "USD", "week"),
    ("price_gbp", 799, "GBP", "month"),
)
MONTHLY = {"amount_minor": 999, "currency": "USD", "period_unit": "month", "period_value": 1}


def stored(day: date) -> list[dict]:
    return [_row(r) for r in MetricDay.objects.filter(day=day).order_by("provider", "store_product_id",
                                                                        "environment", "currency")]


def full(day: date) -> list[dict]:
    return [_row(r) for r in metrics_compute(day)]


def _row(row: MetricDay) -> dict:
    return {k: v for k, v in model_to_dict(row).items() if k not in ("id", "computed_at")}


def _events(rng: random.Random, subscriptions: int) -> list[tuple]:
    """(recorded, occurred, status, sub_id, fields) of varied lives, in the order we record them."""
    events = [event for n in range(subscriptions) for event in _life(rng, f"sub_{n}")]
    return sorted(events, key=lambda e: (e[0], e[3]))


def _life(rng: random.Random, sub_id: str) -> list[tuple]:
    """One subscription's events: a trial (converting or not) or a purchase, then renewals, plan changes,
    cancellations, grace, on hold, expiries, refunds, or a lapse by time passing (no event: the access
    simply ends); a fifth of them recorded a day or more after they happened."""
    events, txn = [], 0
    provider = rng.choice(("stripe", "apple"))
    environment = rng.choice(("production", "production", "sandbox"))
    plan = rng.choice(PLANS)
    period = timedelta(days=rng.choice((1, 2, 3)))
    moment = at(FIRST.isoformat(), 0) + timedelta(minutes=rng.randrange(0, 60 * 24 * 8))

    def emit(status, *, expires_at, grace_until=None, money=None):
        nonlocal txn
        product, price, currency, unit = plan
        fields = {"provider": provider, "environment": environment, "store_product_id": product,
                  "amount_minor": price, "currency": currency, "period_unit": unit, "period_value": 1,
                  "expires_at": expires_at, "grace_until": grace_until}
        if money is not None:
            txn += 1
            fields["transactions"] = (payment(f"{sub_id}_{txn}", moment, price, currency, money),)
        late = rng.random() < 0.2
        recorded = moment + timedelta(hours=rng.randrange(20, 80)) if late else moment
        events.append((recorded, moment, status, sub_id, fields))

    if rng.random() < 0.4:
        emit(Status.TRIAL, expires_at=moment + timedelta(days=2), money=TransactionKind.PURCHASE)
        if rng.random() < 0.6:  # converts, near the trial's end
            moment += timedelta(hours=rng.randrange(30, 47))
            emit(Status.ACTIVE, expires_at=moment + period, money=TransactionKind.RENEWAL)
    else:
        emit(Status.ACTIVE, expires_at=moment + period, money=TransactionKind.PURCHASE)
    expires = moment + period
    for _ in range(rng.randrange(0, 6)):
        action = rng.choice(("renew", "renew", "switch", "cancel", "grace", "hold", "expire", "refund", "lapse"))
        if action == "lapse":
            break
        moment += timedelta(hours=rng.randrange(2, 50))
        if action in ("renew", "switch"):
            plan = rng.choice(PLANS) if action == "switch" else plan
            expires = moment + period
            emit(Status.ACTIVE, expires_at=expires, money=TransactionKind.RENEWAL)
        elif action == "cancel":
            emit(Status.CANCELED, expires_at=expires)
        elif action == "grace":
            emit(Status.ON_GRACE, expires_at=moment, grace_until=moment + timedelta(hours=rng.randrange(6, 40)))
        elif action == "hold":
            emit(Status.ON_HOLD, expires_at=moment)
        elif action == "expire":
            emit(Status.EXPIRED, expires_at=moment)
        else:
            emit(Status.REVOKED, expires_at=moment, money=TransactionKind.REFUND)
    return events


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_days_carried_by_the_beat_job_equal_days_computed_fully(seed):
    """As in production: events arrive in the order we record them, and at 00:10 each night the beat job
    computes the day before from its carry. Every day then equals its full recomputation, row for row."""
    pending = _events(random.Random(seed), subscriptions=45)
    day = FIRST
    while day <= LAST:
        run_at = at((day + timedelta(days=1)).isoformat(), 0, 10)
        while pending and pending[0][0] < run_at:
            recorded, occurred, status, sub_id, fields = pending.pop(0)
            apply_at(occurred, status, recorded=recorded, sub_id=sub_id, **fields)
        with time_machine.travel(run_at, tick=False):
            compute_daily_metrics.delay()
        day += timedelta(days=1)
    chained_carries = list(MetricCarry.objects.order_by("day").values_list("day", "stocks"))
    assert [d for d, _ in chained_carries] == [FIRST + timedelta(days=n) for n in range((LAST - FIRST).days + 1)]

    totals = dict.fromkeys(("churned", "reactivated", "in_grace", "on_hold", "trial_conversions", "refunds"), 0)
    day = FIRST
    while day <= LAST:
        assert stored(day) == full(day), day
        for row in stored(day):
            for name in totals:
                totals[name] += row[name]
        day += timedelta(days=1)
    assert all(totals.values()), totals  # the histories did exercise every kind of change

    # Each carry holds the day's exact stocks: the same as computed fully.
    metrics_rebuild(FIRST, LAST, full=True)
    assert list(MetricCarry.objects.order_by("day").values_list("day", "stocks")) == chained_carries


def test_history_written_into_a_day_already_carried_makes_its_carry_stale():
    apply_at(at("2026-10-01", 9), Status.ACTIVE, sub_id="a", expires_at=at("2026-11-01"), **MONTHLY)
    with time_machine.travel(at("2026-10-02", 0, 10), tick=False):
        compute_daily_metrics.delay()
    # Written after Oct 1 was computed, with times inside Oct 1 (a backfill, an import).
    apply_at(at("2026-10-01", 15), Status.ACTIVE, sub_id="b", recorded=at("2026-10-01", 16),
             expires_at=at("2026-11-01"), **MONTHLY)
    with time_machine.travel(at("2026-10-03", 0, 10), tick=False):
        compute_daily_metrics.delay()
    assert stored(date(2026, 10, 2)) == full(date(2026, 10, 2))
    assert stored(date(2026, 10, 2))[0]["entitled"] == 2


def test_a_day_without_the_day_befores_carry_is_computed_fully_and_carried():
    apply_at(at("2026-10-01", 9), Status.ACTIVE, sub_id="a", expires_at=at("2026-10-02", 15), **MONTHLY)
    apply_at(at("2026-10-01", 9), Status.TRIAL, sub_id="b", expires_at=at("2026-10-09"), **MONTHLY)
    with time_machine.travel(at("2026-10-03"), tick=False):
        metrics_rebuild_day(date(2026, 10, 2))
    assert stored(date(2026, 10, 2)) == full(date(2026, 10, 2))
    assert stored(date(2026, 10, 2))[0]["churned"] == 1
    assert MetricCarry.objects.get(day=date(2026, 10, 2)).stocks == [
        ["stripe", "price_monthly", "production", "USD", 1, 1, 0, 0, "0"]]


def test_the_next_day_starts_from_a_trusted_carry_and_a_rebuild_does_not_trust_one():
    apply_at(at("2026-10-01", 9), Status.ACTIVE, sub_id="a", expires_at=at("2026-11-01"), **MONTHLY)
    with time_machine.travel(at("2026-10-05"), tick=False):
        metrics_rebuild_day(date(2026, 10, 1))
        # A carry that does not match the history (what a carry of an older computation could hold):
        MetricCarry.objects.filter(day=date(2026, 10, 1)).update(
            stocks=[["stripe", "price_monthly", "production", "USD", 6, 0, 0, 0, "5994"]])
        metrics_rebuild_day(date(2026, 10, 2))
        assert (stored(date(2026, 10, 2))[0]["entitled"], stored(date(2026, 10, 2))[0]["mrr_minor"]) == (6, 5994)
        # The range's first day is computed fully; the next from the carry just written.
        metrics_rebuild(date(2026, 10, 2), date(2026, 10, 3))
        assert stored(date(2026, 10, 2)) == full(date(2026, 10, 2))
        assert stored(date(2026, 10, 3)) == full(date(2026, 10, 3))
        # A carry written by another version of the computation is not used either.
        MetricCarry.objects.filter(day=date(2026, 10, 3)).update(version=0, stocks=[])
        metrics_rebuild_day(date(2026, 10, 4))
    assert stored(date(2026, 10, 4))[0]["entitled"] == 1
