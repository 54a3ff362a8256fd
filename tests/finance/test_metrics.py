"""The daily metrics (finance/metrics.py): each figure on the right day, per currency, reproducible."""

from datetime import date, timedelta

import pytest
import time_machine
from celery import current_app
from django.conf import settings
from django.core.management import CommandError, call_command
from django.forms.models import model_to_dict

from billing.snapshots import TransactionKind
from billing.statuses import Status
from finance.metrics import metrics_compute, metrics_rebuild
from finance.models import MetricDay
from finance.tasks import compute_daily_metrics

from .timeline import apply_at, at, payment

pytestmark = pytest.mark.django_db

MONTHLY = {"amount_minor": 999, "currency": "USD", "period_unit": "month", "period_value": 1}
YEARLY = {"amount_minor": 9900, "currency": "EUR", "period_unit": "year", "period_value": 1,
          "store_product_id": "price_yearly"}
USD = ("stripe", "price_monthly", "production", "USD")
EUR = ("stripe", "price_yearly", "production", "EUR")
FIGURES = ("entitled", "in_trial", "in_grace", "on_hold", "new", "reactivated", "churned", "trial_starts",
           "trial_conversions", "payments", "gross_revenue_minor", "refunds", "refunds_minor", "mrr_minor")


def figures(day: str) -> dict:
    """The day's rows as {group: {figure: value}} (figures that are 0 left out)."""
    return {(r.provider, r.store_product_id, r.environment, r.currency):
            {name: getattr(r, name) for name in FIGURES if getattr(r, name)}
            for r in metrics_compute(date.fromisoformat(day))}


@pytest.fixture
def month_of_events():
    """A trial converting, a subscription lapsing and coming back, a yearly one refunded, in two currencies."""
    # Oct 1: a trial starts; a monthly subscription is bought; a yearly one in EUR.
    apply_at(at("2026-10-01", 10), Status.TRIAL, sub_id="sub_trial", expires_at=at("2026-10-08"), **MONTHLY)
    apply_at(at("2026-10-01", 9), Status.ACTIVE, sub_id="sub_lapse", expires_at=at("2026-10-02", 15),
             transactions=(payment("in_1", at("2026-10-01", 9), 999, kind=TransactionKind.PURCHASE),), **MONTHLY)
    apply_at(at("2026-10-01", 11), Status.ACTIVE, sub_id="sub_eur", expires_at=at("2027-10-01"),
             transactions=(payment("in_2", at("2026-10-01", 11), 9900, "EUR", TransactionKind.PURCHASE),), **YEARLY)
    # Oct 2: the trial converts (paid); the monthly one lapses at 15:00 without a renewal (no event at all).
    apply_at(at("2026-10-02", 11), Status.ACTIVE, sub_id="sub_trial", expires_at=at("2026-11-02"),
             transactions=(payment("in_3", at("2026-10-02", 11), 999),), **MONTHLY)
    # Oct 3: the yearly one is refunded.
    apply_at(at("2026-10-03", 8), Status.REVOKED, sub_id="sub_eur",
             transactions=(payment("re_1", at("2026-10-03", 8), 9900, "EUR", TransactionKind.REFUND),), **YEARLY)
    # Oct 4: the lapsed one renews again.
    apply_at(at("2026-10-04", 10), Status.ACTIVE, sub_id="sub_lapse", expires_at=at("2026-11-04"),
             transactions=(payment("in_4", at("2026-10-04", 10), 999),), **MONTHLY)


def test_each_figure_on_its_day_and_each_currency_apart(month_of_events):
    assert figures("2026-10-01") == {
        USD: {"entitled": 2, "in_trial": 1, "new": 2, "trial_starts": 1, "payments": 1, "gross_revenue_minor": 999,
              "mrr_minor": 999},
        EUR: {"entitled": 1, "new": 1, "payments": 1, "gross_revenue_minor": 9900, "mrr_minor": 825}}
    assert figures("2026-10-02") == {
        USD: {"entitled": 1, "churned": 1, "trial_conversions": 1, "payments": 1, "gross_revenue_minor": 999,
              "mrr_minor": 999},
        EUR: {"entitled": 1, "mrr_minor": 825}}
    assert figures("2026-10-03") == {
        USD: {"entitled": 1, "mrr_minor": 999},
        EUR: {"churned": 1, "refunds": 1, "refunds_minor": 9900}}
    assert figures("2026-10-04") == {
        USD: {"entitled": 2, "reactivated": 1, "payments": 1, "gross_revenue_minor": 999, "mrr_minor": 1998}}
    assert figures("2026-09-30") == {}


def test_a_day_rebuilt_twice_gives_identical_rows_even_after_later_events(month_of_events):
    def stored():
        return [{k: v for k, v in model_to_dict(r).items() if k != "id"} for r in MetricDay.objects.order_by(
            "day", "provider", "store_product_id", "currency")]

    with time_machine.travel(at("2026-10-05"), tick=False):
        assert metrics_rebuild(date(2026, 10, 1), date(2026, 10, 4)) == 7
    first = stored()
    # Later: a late refund of Oct 2 arrives on the 6th, a new subscription starts.
    apply_at(at("2026-10-02", 12), Status.REVOKED, sub_id="sub_trial", recorded=at("2026-10-06"),
             transactions=(payment("re_2", at("2026-10-02", 12), 999, kind=TransactionKind.REFUND),), **MONTHLY)
    apply_at(at("2026-10-06"), Status.ACTIVE, sub_id="sub_new", expires_at=at("2026-11-06"), **MONTHLY)
    with time_machine.travel(at("2026-10-07"), tick=False):
        metrics_rebuild(date(2026, 10, 1), date(2026, 10, 4))
        metrics_rebuild(date(2026, 10, 1), date(2026, 10, 4))
    assert stored() == first
    # The late refund counts on the day we learnt it.
    assert figures("2026-10-06")[USD] == {"entitled": 2, "new": 1, "churned": 1, "refunds": 1, "refunds_minor": 999,
                                          "mrr_minor": 1998}


@pytest.mark.parametrize(("unit", "value", "amount", "mrr"), [
    ("month", 1, 999, 999),
    ("year", 1, 9900, 825),  # 9900 / 12
    ("year", 1, 9999, 833),  # 833.25
    ("week", 1, 499, 2162),  # 499 * 52 / 12 = 2162.33
    ("month", 3, 2997, 999),  # a quarter
    ("day", 1, 100, 3042),  # 100 * 365 / 12 = 3041.67
])
def test_mrr_is_the_price_normalized_to_one_month(unit, value, amount, mrr):
    apply_at(at("2026-10-01"), Status.ACTIVE, expires_at=at("2027-10-01"), amount_minor=amount, currency="USD",
             period_unit=unit, period_value=value)
    assert figures("2026-10-01")[USD]["mrr_minor"] == mrr


def test_trials_grace_and_grants_are_not_mrr_but_canceled_until_its_end_is():
    apply_at(at("2026-10-01"), Status.TRIAL, sub_id="t", expires_at=at("2026-10-20"), **MONTHLY)
    apply_at(at("2026-10-01"), Status.ON_GRACE, sub_id="g", expires_at=at("2026-10-01", 13),
             grace_until=at("2026-10-10"), **MONTHLY)
    apply_at(at("2026-10-01"), Status.CANCELED, sub_id="c", expires_at=at("2026-10-15"), **MONTHLY)
    apply_at(at("2026-10-01"), Status.ON_HOLD, sub_id="h", **MONTHLY)
    apply_at(at("2026-10-01"), Status.ACTIVE, sub_id="manual-1", provider="manual",
             store_product_id="entitlement:premium", expires_at=at("2026-12-01"))
    day = figures("2026-10-01")
    assert day[USD] == {"entitled": 3, "in_trial": 1, "in_grace": 1, "on_hold": 1, "new": 3, "trial_starts": 1,
                        "mrr_minor": 999}
    assert day[("manual", "entitlement:premium", "production", "")] == {"entitled": 1, "new": 1}
    assert figures("2026-10-10")[USD] == {"entitled": 2, "in_trial": 1, "on_hold": 1, "churned": 1,
                                          "mrr_minor": 999}  # the grace period ended
    assert figures("2026-10-15")[USD] == {"entitled": 1, "in_trial": 1, "on_hold": 1, "churned": 1}  # canceled ended


def test_sandbox_is_its_own_group():
    apply_at(at("2026-10-01"), Status.ACTIVE, sub_id="s", environment="sandbox", expires_at=at("2026-11-01"),
             **MONTHLY)
    assert set(figures("2026-10-01")) == {("stripe", "price_monthly", "sandbox", "USD")}


def test_the_beat_job_computes_yesterday(month_of_events):
    entry = settings.CELERY_BEAT_SCHEDULE["finance-daily-metrics"]
    assert entry["task"] == "finance.tasks.compute_daily_metrics"
    assert (entry["schedule"].hour, entry["schedule"].minute) == ({0}, {10})
    assert current_app.amqp.router.route({}, entry["task"])["queue"].name == "slow"
    with time_machine.travel(at("2026-10-03", 0, 10), tick=False):
        compute_daily_metrics.delay()
    assert set(MetricDay.objects.values_list("day", flat=True)) == {date(2026, 10, 2)}
    assert MetricDay.objects.get(day=date(2026, 10, 2), currency="USD").trial_conversions == 1


def test_metrics_rebuild_command(month_of_events, capsys):
    def stored():
        return [{k: v for k, v in model_to_dict(r).items() if k not in ("id", "computed_at")}
                for r in MetricDay.objects.order_by("day", "provider", "store_product_id", "currency")]

    with time_machine.travel(at("2026-10-05"), tick=False):
        call_command("metrics_rebuild", "--from", "2026-10-01", "--to", "2026-10-04")
        carried = stored()
        call_command("metrics_rebuild", "--from", "2026-10-01", "--to", "2026-10-04", "--full")
        assert stored() == carried  # every day computed fully: the same rows
        with pytest.raises(CommandError, match="has ended"):
            call_command("metrics_rebuild", "--from", "2026-10-01", "--to", "2026-10-05")
        with pytest.raises(CommandError, match="before --from"):
            call_command("metrics_rebuild", "--from", "2026-10-02", "--to", "2026-10-01")
    days = sorted(set(MetricDay.objects.values_list("day", flat=True)))
    assert days == [date(2026, 10, 1) + timedelta(days=n) for n in range(4)]
