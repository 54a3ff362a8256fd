"""The history carries the state that came into force, so a subscription as it stood at any past moment
is rebuilt from it (billing/history.py); late events do not rewrite the past."""

from datetime import timedelta
from importlib import import_module

import pytest
from django.apps import apps

from billing.history import subscriptions_as_of
from billing.models import StatusChange, Subscription
from billing.statuses import Status

from .timeline import apply_at, at

pytestmark = pytest.mark.django_db

MONTHLY = {"amount_minor": 999, "currency": "USD", "period_unit": "month", "period_value": 1, "user_id": "42"}


def state(moment, sub_id="sub_1"):
    (found,) = [s for s in subscriptions_as_of(moment) if s.provider_subscription_id == sub_id]
    return found


def test_each_history_row_carries_the_state_that_came_into_force():
    apply_at(at("2026-10-01"), Status.ACTIVE, expires_at=at("2026-11-01"), **MONTHLY)
    row = StatusChange.objects.get()
    assert (row.kind, row.old_status, row.new_status, row.state_known) == ("status", "INACTIVE", "ACTIVE", True)
    assert (row.amount_minor, row.currency, row.period_unit, row.period_value) == (999, "USD", "month", 1)
    assert row.expires_at == at("2026-11-01") and row.store_product_id == "price_monthly"
    assert row.subscriber.external_id == "42" and row.environment == "production" and row.product is not None


def test_a_renewal_without_a_status_change_is_a_state_row_and_the_support_timeline_keeps_its_meaning():
    apply_at(at("2026-10-01"), Status.ACTIVE, expires_at=at("2026-11-01"), **MONTHLY)
    apply_at(at("2026-11-01"), Status.ACTIVE, expires_at=at("2026-12-01"), **MONTHLY)
    apply_at(at("2026-11-02"), Status.ACTIVE, expires_at=at("2026-12-01"), **MONTHLY)  # nothing changed: no row
    rows = list(StatusChange.objects.order_by("id"))
    assert [(r.kind, r.old_status, r.new_status) for r in rows] == [("status", "INACTIVE", "ACTIVE"),
                                                                     ("state", "ACTIVE", "ACTIVE")]
    assert rows[1].expires_at == at("2026-12-01")
    # A new price is a state row too.
    apply_at(at("2026-11-03"), Status.ACTIVE, expires_at=at("2026-12-01"), **{**MONTHLY, "amount_minor": 1299})
    assert StatusChange.objects.order_by("-id").first().amount_minor == 1299


def test_as_of_a_moment_gives_the_state_then():
    apply_at(at("2026-10-01"), Status.TRIAL, expires_at=at("2026-10-08"), **MONTHLY)
    apply_at(at("2026-10-08"), Status.ACTIVE, expires_at=at("2026-11-08"), **MONTHLY)
    apply_at(at("2026-10-20"), Status.CANCELED, expires_at=at("2026-11-08"), auto_renew=False, **MONTHLY)
    assert state(at("2026-10-02")).status == Status.TRIAL
    assert state(at("2026-10-09")).status == Status.ACTIVE and state(at("2026-10-09")).auto_renew is None
    later = state(at("2026-10-21"))
    assert (later.status, later.auto_renew, later.expires_at) == (Status.CANCELED, False, at("2026-11-08"))
    assert later.is_entitled(at("2026-10-21")) and not later.is_entitled(at("2026-11-09"))
    assert list(subscriptions_as_of(at("2026-09-30"))) == []  # not known yet


def test_a_late_event_does_not_rewrite_the_past_but_counts_from_when_it_was_recorded():
    apply_at(at("2026-10-01"), Status.ACTIVE, expires_at=at("2026-11-01"), **MONTHLY)
    # Revoked at the store on the 5th; we learnt it on the 7th (a webhook outage).
    apply_at(at("2026-10-05"), Status.REVOKED, recorded=at("2026-10-07"), **MONTHLY)
    assert state(at("2026-10-06")).status == Status.ACTIVE  # what we knew on the 6th
    assert state(at("2026-10-07", 13)).status == Status.REVOKED


def test_stale_snapshots_change_nothing_and_carry_no_state():
    apply_at(at("2026-10-05"), Status.ACTIVE, expires_at=at("2026-11-05"), **MONTHLY)
    apply_at(at("2026-10-01"), Status.EXPIRED, recorded=at("2026-10-06"), **MONTHLY)
    ignored = StatusChange.objects.get(ignored=True)
    assert ignored.state_known is False and ignored.expires_at is None
    assert state(at("2026-10-07")).status == Status.ACTIVE


def test_filters_by_provider_and_environment():
    apply_at(at("2026-10-01"), Status.ACTIVE, sub_id="sub_1", **MONTHLY)
    apply_at(at("2026-10-01"), Status.ACTIVE, sub_id="sub_2", environment="sandbox", **MONTHLY)
    apply_at(at("2026-10-01"), Status.ACTIVE, sub_id="g_1", provider="google", **MONTHLY)
    moment = at("2026-10-02")
    assert [s.provider_subscription_id for s in subscriptions_as_of(moment, provider="stripe")] == ["sub_1", "sub_2"]
    assert [s.provider_subscription_id for s in subscriptions_as_of(moment, environment="sandbox")] == ["sub_2"]


def test_the_data_migration_fills_each_subscriptions_newest_row_from_its_current_state():
    apply_at(at("2026-10-01"), Status.TRIAL, expires_at=at("2026-10-08"), **MONTHLY)
    apply_at(at("2026-10-08"), Status.ACTIVE, expires_at=at("2026-11-08"), **MONTHLY)
    StatusChange.objects.update(state_known=False, expires_at=None, amount_minor=None, currency="",
                                subscriber=None, environment="")  # rows as they were before 0005
    import_module("billing.migrations.0008_history_state").fill_newest_rows(apps, None)
    older, newest = StatusChange.objects.order_by("id")
    assert older.state_known is False and older.expires_at is None
    sub = Subscription.objects.get()
    assert newest.state_known and newest.expires_at == sub.expires_at and newest.amount_minor == 999
    assert newest.subscriber_id == sub.subscriber_id and newest.environment == "production"
    # What cannot be rebuilt is said so: the older row's state is its status only.
    then = state(at("2026-10-02"))
    assert (then.status, then.state_known, then.expires_at, then.amount_minor) == (Status.TRIAL, False, None, None)
    assert then.store_product_id == "price_monthly"  # the subscription's: products rarely change
    assert state(at("2026-10-09") + timedelta(days=1)).state_known


def test_states_of_some_statuses_are_the_newest_states_of_those_statuses_only():
    # finance's stocks read only these (billing/history.py: on PostgreSQL, one query that filters after
    # choosing each subscription's newest row): the same states as filtering the full answer.
    apply_at(at("2026-10-01"), Status.TRIAL, sub_id="sub_1", expires_at=at("2026-10-08"), **MONTHLY)
    apply_at(at("2026-10-08"), Status.ACTIVE, sub_id="sub_1", expires_at=at("2026-11-08"), **MONTHLY)
    apply_at(at("2026-10-01"), Status.ACTIVE, sub_id="sub_2", expires_at=at("2026-11-01"), **MONTHLY)
    apply_at(at("2026-10-03"), Status.EXPIRED, sub_id="sub_2", **MONTHLY)  # was ACTIVE: an older row of that status
    apply_at(at("2026-10-01"), Status.ON_HOLD, sub_id="g_1", provider="google", **MONTHLY)
    apply_at(at("2026-10-05"), Status.REVOKED, sub_id="sub_3", recorded=at("2026-10-09"), **MONTHLY)
    wanted = {Status.ACTIVE, Status.TRIAL, Status.ON_HOLD}
    for moment in (at("2026-10-02"), at("2026-10-04"), at("2026-10-10")):
        for provider in (None, "stripe"):
            every = list(subscriptions_as_of(moment, provider=provider))
            some = list(subscriptions_as_of(moment, provider=provider, statuses=wanted))
            assert some == [s for s in every if s.status in wanted]
    assert [s.provider_subscription_id for s in subscriptions_as_of(at("2026-10-10"), statuses=wanted)] == [
        "sub_1", "g_1"]
    sub_2 = Subscription.objects.get(provider_subscription_id="sub_2").pk
    with_sub_2 = list(subscriptions_as_of(at("2026-10-10"), statuses=wanted, including=[sub_2]))
    assert [(s.provider_subscription_id, s.status) for s in with_sub_2] == [
        ("sub_1", Status.ACTIVE), ("sub_2", Status.EXPIRED), ("g_1", Status.ON_HOLD)]
    assert list(subscriptions_as_of(at("2026-10-10"), statuses={Status.EXPIRED}, subscription_ids=[])) == []
