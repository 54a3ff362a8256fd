"""Re-poll: `fetch(subscription)` re-reads the subscription from Stripe (the fake) for the beat job
`billing.tasks.repoll_subscriptions` and the admin's re-sync; what Stripe says then goes through the
one write path."""

from datetime import timedelta

import pytest
from django.utils import timezone

from billing.apply import apply_snapshot
from billing.models import Subscription
from billing.providers.base import NotConfigured, PermanentError, StoreUnavailable
from billing.providers.common import SubscriptionNotFound
from billing.selectors import check_answer
from billing.snapshots import Cause, CauseKind
from billing.statuses import Status
from billing.tasks import repoll_subscriptions
from tests.helpers import closed_port

from .conftest import deliver_events

pytestmark = pytest.mark.django_db


def subscribed(fake, price, user_id="42") -> Subscription:
    customer = fake.customer_create({"email": f"u{user_id}@example.com"})
    sub = fake.start_subscription(customer, price, payment_method="pm_card_visa", metadata={"user_id": user_id})
    deliver_events(fake.take_events())
    return Subscription.objects.get(provider="stripe", provider_subscription_id=sub["id"])


def test_fetch_reads_a_change_no_event_told_us_about(fake_stripe, stripe_adapter, monthly,
                                                     django_capture_on_commit_callbacks):
    row = subscribed(fake_stripe, monthly)
    assert row.status == Status.ACTIVE
    # Cancelled in Stripe's dashboard, and the event lost.
    fake_stripe.set_status(row.provider_subscription_id, "canceled")
    fake_stripe.take_events()

    snapshot = stripe_adapter.fetch(row)
    with django_capture_on_commit_callbacks(execute=True):
        result = apply_snapshot(snapshot, Cause(CauseKind.POLL, ref="test"))

    assert (result.outcome, result.old_status, result.new_status) == ("updated", Status.ACTIVE, Status.EXPIRED)
    row.refresh_from_db()
    assert row.status == Status.EXPIRED and row.ended_at is not None
    assert row.last_verified_at is not None
    assert row.status_changes.order_by("id").last().cause == CauseKind.POLL
    assert check_answer("42")["is_subscribed"] is False
    path = f"/v1/subscriptions/{row.provider_subscription_id}"
    assert ("GET", path) in [(m, p) for m, p, _ in fake_stripe.requests]


def test_fetch_of_a_subscription_stripe_does_not_have_is_permanent(fake_stripe, stripe_adapter, monthly):
    row = subscribed(fake_stripe, monthly)
    del fake_stripe.objects[row.provider_subscription_id]  # another account's id, or test data wiped
    with pytest.raises(SubscriptionNotFound, match=row.provider_subscription_id) as raised:
        stripe_adapter.fetch(row)
    assert isinstance(raised.value, PermanentError) and raised.value.status == 404


@pytest.mark.parametrize("status", [500, 503, 429])
def test_fetch_with_stripe_failing_is_store_unavailable_and_works_once_it_answers(fake_stripe, stripe_adapter,
                                                                                  monthly, status):
    row = subscribed(fake_stripe, monthly)
    fake_stripe.fail(r"GET /v1/subscriptions/", status=status)
    with pytest.raises(StoreUnavailable):
        stripe_adapter.fetch(row)
    assert stripe_adapter.fetch(row).status == Status.ACTIVE


def test_fetch_with_stripe_unreachable_is_store_unavailable(fake_stripe, stripe_adapter, monthly, settings):
    row = subscribed(fake_stripe, monthly)
    settings.STRIPE_API_BASE = f"http://127.0.0.1:{closed_port()}"  # nothing listens there
    with pytest.raises(StoreUnavailable, match="Stripe did not answer"):
        stripe_adapter.fetch(row)


def test_fetch_without_the_secret_key_names_the_missing_setting(fake_stripe, stripe_adapter, monthly, settings):
    row = subscribed(fake_stripe, monthly)
    settings.STRIPE_SECRET_KEY = ""
    with pytest.raises(NotConfigured, match="STRIPE_SECRET_KEY"):
        stripe_adapter.fetch(row)


def test_the_beat_repoll_confirms_due_stripe_subscriptions_and_leaves_failures_for_later(
        fake_stripe, stripe_adapter, monthly, django_capture_on_commit_callbacks):
    changed = subscribed(fake_stripe, monthly, user_id="1")
    same = subscribed(fake_stripe, monthly, user_id="2")
    gone = subscribed(fake_stripe, monthly, user_id="3")
    recent = subscribed(fake_stripe, monthly, user_id="4")
    fake_stripe.subscription_update({"cancel_at_period_end": "true"}, changed.provider_subscription_id)
    fake_stripe.take_events()  # never delivered
    del fake_stripe.objects[gone.provider_subscription_id]
    long_ago = timezone.now() - timedelta(hours=25)
    Subscription.objects.filter(pk__in=[changed.pk, same.pk, gone.pk]).update(last_verified_at=long_ago)
    before = len(fake_stripe.requests)

    with django_capture_on_commit_callbacks(execute=True):
        report = repoll_subscriptions()

    assert report == {"applied": {"updated": 1, "unchanged": 1}, "skipped": 0, "failed": 1}
    polled = {p for m, p, _ in fake_stripe.requests[before:] if m == "GET"}
    assert polled == {f"/v1/subscriptions/{r.provider_subscription_id}" for r in (changed, same, gone)}
    changed.refresh_from_db()
    assert changed.status == Status.CANCELED and changed.auto_renew is False
    assert changed.last_verified_at > long_ago
    assert changed.status_changes.order_by("id").last().cause_ref == "repoll"
    same.refresh_from_db()
    assert same.status == Status.ACTIVE and same.last_verified_at > long_ago
    gone.refresh_from_db()
    assert gone.status == Status.ACTIVE and gone.last_verified_at == long_ago  # due again on the next run
    recent.refresh_from_db()
    assert recent.status == Status.ACTIVE
