"""Reconciliation (billing/reconciliation.py, `manage.py reconcile`) and drift (billing/drift.py) against
the store fakes: a change made at the store with no webhook is found, recorded with both values and
applied; `--dry-run` records without applying; the walk reads only what is due, oldest first, within
the store's budget; a store answering 429 pauses its background jobs."""

import io
import json
import time
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from billing import reconciliation, store_budgets
from billing.models import Drift, StatusChange, Subscription
from billing.providers.xsolla import client as xsolla_client
from billing.statuses import Status
from billing.sweeps import subscription_resync, subscriptions_repoll
from tests.factories import SubscriberFactory, SubscriptionFactory, UserFactory
from tests.helpers import stream_events
from tests.providers.xsolla.conftest import fixture_json, send

pytestmark = pytest.mark.django_db


def iso(dt) -> str:
    return dt.replace(microsecond=0).isoformat()


def xsolla_sub(fake, sub_id: str, *, ours: str = Status.ACTIVE, theirs: str = "active", user=None,
               verified_hours_ago: float | None = 48, expires_in=timedelta(days=20), **kw) -> Subscription:
    """Our row (confirmed `verified_hours_ago`) and the fake's subscription, same period end."""
    ends = (timezone.now() + expires_in).replace(microsecond=0)
    user = user or f"700{sub_id}"
    fake.put_subscription(fake.subscription(sub_id, user_id=user, status=theirs, date_next_charge=iso(ends)))
    verified = None if verified_hours_ago is None else timezone.now() - timedelta(hours=verified_hours_ago)
    subscriber = SubscriberFactory(external_id=user) if not kw.get("subscriber") else kw.pop("subscriber")
    return SubscriptionFactory(provider="xsolla", provider_subscription_id=sub_id, subscriber=subscriber,
                               product=None, store_product_id="b5dac9c8", status=ours, expires_at=ends,
                               last_verified_at=verified, last_event_at=timezone.now() - timedelta(days=3),
                               amount_minor=999, currency="USD", auto_renew=ours == Status.ACTIVE, **kw)


def gets(fake) -> list[dict]:
    return [r for r in fake.requests if r["method"] == "GET"]


def reconcile(*args) -> str:
    out = io.StringIO()
    call_command("reconcile", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_a_change_at_the_store_without_a_webhook_is_found_recorded_with_both_values_and_applied(
        fake_xsolla, django_capture_on_commit_callbacks):
    sub = xsolla_sub(fake_xsolla, "10", theirs="non_renewing")  # canceled at Xsolla; its webhook never came

    with django_capture_on_commit_callbacks(execute=True):
        out = reconcile("--provider", "xsolla")

    sub.refresh_from_db()
    assert sub.status == Status.CANCELED and sub.auto_renew is False
    drift = Drift.objects.get()
    assert (drift.subscription_id, drift.provider, drift.found_by, drift.applied) == (sub.pk, "xsolla",
                                                                                     "reconciliation", True)
    assert drift.differences["status"] == {"ours": "ACTIVE", "store": "CANCELED"}
    assert drift.differences["auto_renew"] == {"ours": "true", "store": "false"}
    assert set(drift.differences) == {"status", "auto_renew"}  # same end, product and price: not drifts
    change = StatusChange.objects.get(subscription=sub)
    assert (change.old_status, change.new_status, change.cause, change.cause_ref) == ("ACTIVE", "CANCELED",
                                                                                      "poll", "reconcile")
    assert [e["newStatus"] for e in stream_events()] == ["CANCELED"]
    assert len(gets(fake_xsolla)) == 1
    assert "xsolla: 1 read (1 updated), 1 drifts, 0 failed" in out


def test_a_store_that_agrees_records_no_drift_and_confirms_the_subscription(fake_xsolla):
    sub = xsolla_sub(fake_xsolla, "10")
    reconcile()
    sub.refresh_from_db()
    assert not Drift.objects.exists() and sub.status == Status.ACTIVE
    assert sub.last_verified_at > timezone.now() - timedelta(minutes=1)
    reconcile()  # confirmed now: not due again within the cycle
    assert len(gets(fake_xsolla)) == 1


def test_dry_run_records_the_drift_and_applies_nothing(fake_xsolla, django_capture_on_commit_callbacks):
    sub = xsolla_sub(fake_xsolla, "10", theirs="non_renewing", expires_in=timedelta(days=5))
    before = Subscription.objects.values().get(pk=sub.pk)

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        out = reconcile("--dry-run")

    assert Subscription.objects.values().get(pk=sub.pk) == before  # not a field changed, not even confirmed
    assert not StatusChange.objects.exists() and stream_events() == [] and callbacks == []
    drift = Drift.objects.get()
    assert drift.applied is False and drift.differences["status"] == {"ours": "ACTIVE", "store": "CANCELED"}
    assert "recorded, not applied (dry run)" in out

    reconcile()  # the real run: the same difference, now applied
    sub.refresh_from_db()
    assert sub.status == Status.CANCELED
    assert list(Drift.objects.order_by("id").values_list("applied", flat=True)) == [False, True]


def test_the_walk_reads_what_is_due_oldest_confirmation_first_and_respects_the_limit(fake_xsolla):
    never = xsolla_sub(fake_xsolla, "1", verified_hours_ago=None)
    old = xsolla_sub(fake_xsolla, "2", verified_hours_ago=72)
    older = xsolla_sub(fake_xsolla, "3", verified_hours_ago=96)
    xsolla_sub(fake_xsolla, "4", verified_hours_ago=2)  # confirmed within the cycle: not due
    ended_lately = xsolla_sub(fake_xsolla, "5", ours=Status.EXPIRED, theirs="canceled",
                              expires_in=timedelta(days=-5))
    xsolla_sub(fake_xsolla, "6", ours=Status.EXPIRED, theirs="canceled", expires_in=timedelta(days=-40))
    SubscriptionFactory(provider="manual", status=Status.ACTIVE, last_verified_at=None)  # nothing to ask

    reconcile("--limit", "2")
    assert [r["path"].rsplit("/", 1)[1] for r in gets(fake_xsolla)] == ["1", "3"]

    reconcile()
    assert [r["path"].rsplit("/", 1)[1] for r in gets(fake_xsolla)] == ["1", "3", "2", "5"]
    for sub in (never, old, older, ended_lately):
        sub.refresh_from_db()
        assert sub.last_verified_at > timezone.now() - timedelta(minutes=1)


def test_a_subscription_the_store_cannot_answer_for_is_passed_over(fake_xsolla):
    xsolla_sub(fake_xsolla, "1", verified_hours_ago=None)
    fake_xsolla.subscriptions.pop("1")  # Xsolla answers 404 for it
    second = xsolla_sub(fake_xsolla, "2", theirs="non_renewing")

    out = reconcile()

    second.refresh_from_db()
    assert second.status == Status.CANCELED
    assert len(gets(fake_xsolla)) == 2 and "1 failed" in out


def test_a_store_answering_429_pauses_its_background_jobs_with_its_retry_after(fake_xsolla):
    subs = [xsolla_sub(fake_xsolla, str(n)) for n in range(1, 4)]
    fake_xsolla.fail_next(429, retry_after="120")

    out = reconcile()

    assert len(gets(fake_xsolla)) == 1 and "stopped: store answered 429" in out
    until = store_budgets.paused_until("xsolla")
    assert timedelta(seconds=110) < until - timezone.now() <= timedelta(seconds=120)
    reconcile()
    subscriptions_repoll()
    assert len(gets(fake_xsolla)) == 1  # paused: neither the reconciliation nor the re-poll asked again
    assert not Drift.objects.exists()

    # Urgent calls are not paused: a staff re-sync (and webhook processing) still reach the store.
    subscription_resync(subscription=subs[0], staff_user_id=UserFactory(is_staff=True).pk)
    assert len(gets(fake_xsolla)) == 2


def test_429s_in_a_row_double_the_pause(fake_xsolla, settings):
    settings.STORE_BUDGET_PAUSE_SECONDS = 30
    assert store_budgets.pause("xsolla") == 30
    assert store_budgets.pause("xsolla") == 60
    assert store_budgets.pause("xsolla", retry_after=500) == 500
    settings.STORE_BUDGET_PAUSE_MAX_SECONDS = 100
    assert store_budgets.pause("xsolla") == 100


def test_the_reconciliation_stops_at_its_share_and_never_exceeds_the_budget(fake_xsolla, settings):
    settings.STORE_BUDGET_XSOLLA_PER_MINUTE = 10
    settings.STORE_BUDGET_RECONCILE_RESERVE_PERCENT = 40  # the walk may fill 6 of the 10
    settings.STORE_BUDGET_REPOLL_RESERVE_PERCENT = 20  # the re-poll 8
    subs = [xsolla_sub(fake_xsolla, str(n)) for n in range(1, 13)]

    report = reconciliation.reconcile(provider="xsolla", deadline=_soon())

    assert report.stores["xsolla"].checked == 6 and report.stores["xsolla"].stopped == "budget (minute)"
    assert len(gets(fake_xsolla)) == 6
    subscriptions_repoll()  # the re-poll may go on to 8
    assert len(gets(fake_xsolla)) == 8
    # Webhook processing, staff actions: the reserve is theirs, up to the whole budget and never past it.
    for sub in subs[8:10]:
        subscription_resync(subscription=sub, staff_user_id=UserFactory(is_staff=True).pk)
    assert len(gets(fake_xsolla)) == 10
    with pytest.raises(store_budgets.QuotaExceeded, match="10 calls/minute"):
        xsolla_client.subscription_get("1")
    assert len(gets(fake_xsolla)) == 10  # refused before Xsolla was asked
    usage = store_budgets.usage(["xsolla"])["xsolla"]
    assert usage["minute"] == {"used": 10, "limit": 10} and usage["day"]["used"] == 10


def test_the_day_window_stops_the_walk_until_the_next_run(fake_xsolla, settings):
    settings.STORE_BUDGET_XSOLLA_PER_DAY = 4
    for n in range(1, 5):
        xsolla_sub(fake_xsolla, str(n))
    out = reconcile()
    assert len(gets(fake_xsolla)) == 2 and "stopped: budget (day)" in out  # 50 % of 4


def test_a_repoll_and_a_staff_resync_record_their_drifts_too(fake_xsolla):
    sub = xsolla_sub(fake_xsolla, "10", theirs="freeze")
    subscriptions_repoll()
    fake_xsolla.put_subscription(fake_xsolla.subscription("10", user_id="70010", status="active",
                                                          date_next_charge=iso(sub.expires_at + timedelta(days=30))))
    subscription_resync(subscription=sub, staff_user_id=UserFactory(is_staff=True).pk)

    first, second = Drift.objects.order_by("id")
    assert first.found_by == "repoll" and first.differences["status"] == {"ours": "ACTIVE", "store": "PAUSED"}
    assert second.found_by == "staff_resync" and second.differences["status"] == {"ours": "PAUSED",
                                                                                  "store": "ACTIVE"}
    assert second.differences["expires_at"]["store"] == iso(sub.expires_at + timedelta(days=30))


def test_a_webhook_is_never_a_drift(fake_xsolla):
    xsolla_sub(fake_xsolla, "10", theirs="non_renewing", user="1234567")  # the fixture's user
    send(_body(fixture_json("docs/non_renewal_subscription")))
    assert not Drift.objects.exists()


def _body(data: dict) -> bytes:
    return json.dumps(data).encode()


def _soon() -> float:
    return time.monotonic() + 1.5
