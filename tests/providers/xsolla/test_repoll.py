"""Re-poll: `fetch(subscription)` re-reads the subscription from the subscriptions API (the fake), for
the beat job `billing.tasks.repoll_subscriptions` and the admin's re-sync; what Xsolla says then goes
through the one write path."""

from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from billing.models import Subscription
from billing.providers.base import NotConfigured, PermanentError, StoreUnavailable
from billing.providers.common import SubscriptionNotFound
from billing.statuses import Status
from billing.sweeps import subscription_resync, subscriptions_repoll
from tests.factories import SubscriberFactory, SubscriptionFactory

from .conftest import PROJECT_ID

pytestmark = pytest.mark.django_db


def iso(dt: datetime) -> str:
    return dt.replace(microsecond=0).isoformat()


def xsolla_subscription(**kw) -> Subscription:
    subscriber = kw.pop("subscriber", None) or SubscriberFactory(external_id="1234567")
    return SubscriptionFactory(provider="xsolla", provider_subscription_id="10", subscriber=subscriber,
                               product=None, store_product_id="b5dac9c8", **kw)


def test_fetch_reads_the_current_state(fake_xsolla, xsolla):
    nxt = timezone.now() + timedelta(days=30)
    fake_xsolla.put_subscription(fake_xsolla.subscription("10", user_id="1234567", date_next_charge=iso(nxt),
                                                          amount=4.99, currency="EUR", period=(3, "month")))
    sub = xsolla_subscription(status=Status.ACTIVE)

    snapshot = xsolla.fetch(sub)

    assert snapshot.status == Status.ACTIVE and snapshot.provider_subscription_id == "10"
    assert snapshot.expires_at == nxt.replace(microsecond=0)
    assert (snapshot.amount_minor, snapshot.currency) == (499, "EUR")
    assert (snapshot.period_unit, snapshot.period_value) == ("month", 3)
    assert snapshot.store_product_id == "b5dac9c8" and snapshot.user_id == "1234567"
    assert snapshot.note == "re-poll of the subscriptions API"
    request = fake_xsolla.requests[-1]
    assert (request["method"], request["path"]) == ("GET", f"/projects/{PROJECT_ID}/subscriptions/10")


def test_a_fetched_plan_name_labels_the_unnamed_product_but_never_a_staff_label(fake_xsolla, xsolla):
    fake_xsolla.put_subscription(fake_xsolla.subscription("10", user_id="1234567"))
    sub = xsolla_subscription(status=Status.ACTIVE)
    subscription_resync(subscription=sub)
    sub.refresh_from_db()
    assert sub.product.label == "Premium"  # the plan's name at Xsolla, for the list API's plan_name

    sub.product.label = "Premium (staff)"
    sub.product.save()
    subscription_resync(subscription=sub)
    sub.product.refresh_from_db()
    assert sub.product.label == "Premium (staff)"


def test_fetch_keeps_a_trial_that_has_not_been_charged(fake_xsolla, xsolla):
    fake_xsolla.put_subscription(fake_xsolla.subscription("10", user_id="1234567", date_last_charge=None))
    assert xsolla.fetch(xsolla_subscription(status=Status.TRIAL)).status == Status.TRIAL
    fake_xsolla.put_subscription(fake_xsolla.subscription("10", user_id="1234567"))  # charged since
    assert xsolla.fetch(Subscription.objects.get()).status == Status.ACTIVE


def test_a_resync_applies_what_xsolla_says_now(fake_xsolla, xsolla):
    fake_xsolla.put_subscription(fake_xsolla.subscription("10", user_id="1234567", status="freeze"))
    sub = xsolla_subscription(status=Status.ACTIVE)

    result = subscription_resync(subscription=sub)

    assert (result.outcome, result.old_status, result.new_status) == ("updated", Status.ACTIVE, Status.PAUSED)
    sub.refresh_from_db()
    assert sub.status == Status.PAUSED and sub.last_verified_at is not None
    assert sub.status_changes.order_by("id").last().cause == "poll"


def test_the_beat_repoll_confirms_xsolla_subscriptions(fake_xsolla, xsolla):
    fake_xsolla.put_subscription(fake_xsolla.subscription("10", user_id="1234567", status="non_renewing"))
    sub = xsolla_subscription(status=Status.ACTIVE)

    report = subscriptions_repoll()

    assert report.applied == {"updated": 1} and report.failed == 0
    sub.refresh_from_db()
    assert sub.status == Status.CANCELED and sub.last_verified_at is not None


def test_the_beat_repoll_leaves_xsolla_down_for_the_next_run(fake_xsolla, xsolla):
    sub = xsolla_subscription(status=Status.ACTIVE)
    fake_xsolla.put_subscription(fake_xsolla.subscription("10", user_id="1234567", status="canceled"))
    fake_xsolla.fail_next(503)

    report = subscriptions_repoll()

    assert report.failed == 1 and report.applied == {}
    sub.refresh_from_db()
    assert sub.status == Status.ACTIVE and sub.last_verified_at is None


def test_without_api_credentials_fetch_says_what_is_missing_and_the_beat_skips_xsolla(xsolla):
    sub = xsolla_subscription(status=Status.ACTIVE)
    with pytest.raises(NotConfigured, match="XSOLLA_MERCHANT_ID"):
        xsolla.fetch(sub)
    report = subscriptions_repoll()
    assert report.applied == {} and report.failed == 0 and report.skipped == 0


def test_fetch_of_a_subscription_xsolla_does_not_have_is_permanent(fake_xsolla, xsolla):
    with pytest.raises(SubscriptionNotFound, match="not found"):
        xsolla.fetch(xsolla_subscription())


def test_fetch_with_xsolla_failing_is_store_unavailable_and_works_once_it_answers(fake_xsolla, xsolla):
    fake_xsolla.put_subscription(fake_xsolla.subscription("10", user_id="1234567"))
    sub = xsolla_subscription()
    fake_xsolla.fail_next(502)
    with pytest.raises(StoreUnavailable):
        xsolla.fetch(sub)
    assert xsolla.fetch(sub).status == Status.ACTIVE


def test_an_unknown_api_status_fails_the_fetch(fake_xsolla, xsolla):
    fake_xsolla.put_subscription(fake_xsolla.subscription("10", user_id="1234567", status="freezed"))
    with pytest.raises(PermanentError, match="freezed"):
        xsolla.fetch(xsolla_subscription())
