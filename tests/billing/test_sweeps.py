"""The beat jobs: the expiry sweep, the re-poll of the stores, and `manage.py resync_subscriptions`."""

from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from billing import sweeps
from billing.models import Outbox, StatusChange, Subscription
from billing.statuses import Status
from billing.sweeps import subscription_expire_if_lapsed, subscriptions_due_for_repoll
from billing.tasks import expire_lapsed, repoll_subscriptions
from tests.factories import SubscriptionFactory
from tests.helpers import drain
from tests.providers.stripe.conftest import deliver_event

pytestmark = pytest.mark.django_db

NOW = timezone.now()
AGO, AHEAD = NOW - timedelta(minutes=1), NOW + timedelta(days=3)


# --- expiry ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("status", "expires_at", "grace_until", "becomes"), [
    (Status.ACTIVE, AGO, None, Status.EXPIRED),
    (Status.CANCELED, AGO, None, Status.EXPIRED),
    (Status.TRIAL, AGO, None, Status.EXPIRED),
    (Status.ON_GRACE, NOW - timedelta(days=5), AGO, Status.EXPIRED),
    (Status.ON_GRACE, NOW - timedelta(days=5), AHEAD, Status.ON_GRACE),  # grace still runs
    (Status.ACTIVE, AHEAD, None, Status.ACTIVE),
    (Status.ACTIVE, None, None, Status.ACTIVE),  # open-ended
    (Status.ON_HOLD, AGO, None, Status.ON_HOLD),  # not entitled anyway: left as the store said
    (Status.REVOKED, AGO, None, Status.REVOKED),
])
def test_expiry_sweep(status, expires_at, grace_until, becomes):
    sub = SubscriptionFactory(status=status, expires_at=expires_at, grace_until=grace_until, environment="sandbox")
    last_event_at = sub.last_event_at
    expire_lapsed.delay()
    sub.refresh_from_db()
    assert sub.status == becomes
    if becomes != status:
        assert sub.last_event_at == last_event_at  # derived: any newer store state still applies
        assert sub.environment == "sandbox" and sub.ended_at == (grace_until or expires_at)
        change = StatusChange.objects.get()
        assert (change.old_status, change.new_status, change.cause, change.cause_ref) == \
            (status, Status.EXPIRED, "beat", "expire_lapsed")
        event = Outbox.objects.get().payload
        assert (event["newStatus"], event["isSubscribed"]) == ("EXPIRED", False)
    else:
        assert not StatusChange.objects.exists() and not Outbox.objects.exists()


def test_the_sweep_rechecks_under_the_lock():
    sub = SubscriptionFactory(status=Status.ACTIVE, expires_at=AGO)
    # a renewal lands between the listing and the lock
    Subscription.objects.filter(pk=sub.pk).update(expires_at=AHEAD)
    assert subscription_expire_if_lapsed(subscription_id=sub.pk) is None
    sub.refresh_from_db()
    assert sub.status == Status.ACTIVE


def test_a_user_with_another_entitled_subscription_stays_subscribed():
    sub = SubscriptionFactory(status=Status.ACTIVE, expires_at=AGO)
    SubscriptionFactory(subscriber=sub.subscriber, status=Status.ACTIVE, expires_at=AHEAD)
    assert expire_lapsed() == 1
    assert Outbox.objects.get().payload["isSubscribed"] is True


# --- re-poll -----------------------------------------------------------------------------------
# The real Stripe adapter re-polls FakeStripe (tests/fakes/stripe.py) over HTTP; the App Store is left
# without its API credentials, as a deployment that has not set them up yet.

class StripeAtTheFake:
    """Subscriptions started at FakeStripe and stored the way the webhook pipeline stores them (the
    real adapter parsing the events the fake emitted), then what the re-poll read back from Stripe."""

    def __init__(self, fake):
        self.fake = fake
        self.price = fake.add_price(fake.add_product("Premium"), unit_amount=999)

    def subscribe(self, user_id: str, **stored) -> Subscription:
        """A paid subscription of `user_id`; `stored` overrides what we hold about it (e.g. when the
        store last confirmed it)."""
        customer = self.fake.customer_create({"email": f"u{user_id}@example.com"})
        sub = self.fake.start_subscription(customer, self.price, payment_method="pm_card_visa",
                                           metadata={"user_id": user_id})
        self.deliver_events()
        rows = Subscription.objects.filter(provider="stripe", provider_subscription_id=sub["id"])
        if stored:
            rows.update(**stored)
        return rows.get()

    def deliver_events(self) -> None:
        """What Stripe sent since the last call, delivered to our webhook and processed."""
        for event in self.fake.take_events():
            deliver_event(event, process=False)
        drain()

    def lose_events(self) -> None:
        self.fake.take_events()

    def mark(self) -> int:
        return len(self.fake.requests)

    def polled(self, since: int) -> list[str]:
        """The subscription ids read from Stripe (GET /v1/subscriptions/<id>) since `mark()` said `since`."""
        return [path.removeprefix("/v1/subscriptions/") for method, path, _ in self.fake.requests[since:]
                if method == "GET" and path.startswith("/v1/subscriptions/")]

    def period_end(self, row: Subscription) -> datetime:
        item = self.fake.objects[row.provider_subscription_id]["items"]["data"][0]
        return datetime.fromtimestamp(item["current_period_end"], UTC)


@pytest.fixture
def store(fake_stripe, settings):
    for name in ("APPLE_KEY_ID", "APPLE_ISSUER_ID", "APPLE_PRIVATE_KEY_FILE"):
        setattr(settings, name, "")  # whatever the environment says: the App Store API is not set up
    return StripeAtTheFake(fake_stripe)


def make(pid, provider="stripe", status=Status.ACTIVE, expires_in=timedelta(days=10), verified_ago=None, **kw):
    return SubscriptionFactory(provider=provider, provider_subscription_id=pid, status=status,
                               expires_at=NOW + expires_in if expires_in is not None else None,
                               last_verified_at=NOW - verified_ago if verified_ago is not None else None, **kw)


def test_what_is_due_for_a_repoll():
    due = {
        make("never_confirmed"),
        make("confirmed_long_ago", verified_ago=timedelta(hours=25)),
        make("expiring_soon", expires_in=timedelta(minutes=10), verified_ago=timedelta(hours=1)),
        make("expired_unconfirmed_since", expires_in=-timedelta(hours=1), verified_ago=timedelta(hours=2)),
    }
    make("fresh", verified_ago=timedelta(hours=1))
    make("expired_and_confirmed", expires_in=-timedelta(hours=1), verified_ago=timedelta(minutes=10))
    make("expiring_soon_just_confirmed", expires_in=timedelta(minutes=10), verified_ago=timedelta(minutes=5))
    make("long_dead", status=Status.EXPIRED, expires_in=-timedelta(days=30), verified_ago=timedelta(days=29))
    make("revoked", status=Status.REVOKED, expires_in=timedelta(minutes=5))
    make("staff_grant", provider="manual")
    newer = make("newer")
    make("superseded", replaced_by=newer)
    assert set(subscriptions_due_for_repoll()) == due | {newer}
    # never confirmed first, then the oldest confirmation first
    order = [s.provider_subscription_id for s in subscriptions_due_for_repoll()]
    assert set(order[:2]) == {"never_confirmed", "newer"}
    assert order[2:] == ["confirmed_long_ago", "expired_unconfirmed_since", "expiring_soon"]


@pytest.mark.parametrize("limit", [1, 2, 3, 5, 8, 50])
def test_the_repoll_batch_is_the_first_of_what_is_due_in_the_same_order(limit):
    # The batch is read in parts along indexes (sweeps.subscriptions_repoll_batch): the same rows, in the same
    # order, as the first `limit` of the one due query.
    make("never_a", verified_ago=None)
    make("never_b", provider="apple")
    make("long_ago", verified_ago=timedelta(hours=30))
    make("longer_ago", provider="apple", verified_ago=timedelta(hours=50))
    make("expiring_soon", expires_in=timedelta(minutes=10), verified_ago=timedelta(hours=1))
    make("ended_in_the_window", status=Status.EXPIRED, expires_in=-timedelta(days=1), verified_ago=timedelta(days=2))
    make("ended_never_confirmed", status=Status.EXPIRED, expires_in=-timedelta(hours=3))
    make("on_hold_stale", status=Status.ON_HOLD, verified_ago=timedelta(hours=40))
    make("fresh", verified_ago=timedelta(hours=1))
    make("long_dead", status=Status.EXPIRED, expires_in=-timedelta(days=30), verified_ago=timedelta(days=29))
    make("revoked", status=Status.REVOKED, expires_in=timedelta(minutes=5))
    make("staff_grant", provider="manual")
    make("superseded", replaced_by=make("newer", verified_ago=timedelta(hours=26)))
    make("other_store", provider="google", verified_ago=timedelta(hours=60))
    stores = ["stripe", "apple", "manual"]
    expected = list(subscriptions_due_for_repoll().filter(provider__in=stores)[:limit])
    assert sweeps.subscriptions_repoll_batch(stores, limit=limit) == expected
    assert len(expected) == min(limit, 9)


@pytest.mark.parametrize(("status", "expires_in", "grace_in", "lapsed"), [
    (Status.ACTIVE, -timedelta(hours=1), None, True),
    (Status.ON_GRACE, -timedelta(days=3), -timedelta(hours=1), True),
    (Status.ON_GRACE, -timedelta(days=3), timedelta(hours=1), False),
    (Status.ON_GRACE, None, -timedelta(hours=1), True),
    (Status.ON_GRACE, None, timedelta(hours=1), False),
    (Status.CANCELED, timedelta(hours=1), -timedelta(hours=1), False),  # grace over, expiry ahead
    (Status.TRIAL, None, None, False),  # no end known
    (Status.PAUSED, -timedelta(hours=1), None, False),
])
def test_what_the_expiry_sweep_takes(status, expires_in, grace_in, lapsed):
    sub = SubscriptionFactory(status=status, expires_at=NOW + expires_in if expires_in is not None else None,
                              grace_until=NOW + grace_in if grace_in is not None else None)
    assert list(sweeps.lapsed_subscriptions(NOW)) == ([sub] if lapsed else [])


def test_repoll_applies_what_the_store_says_and_retries_failures_next_time(store):
    renewed = store.subscribe("1", expires_at=NOW + timedelta(minutes=5), last_verified_at=NOW - timedelta(hours=1))
    canceled = store.subscribe("2", last_verified_at=None)
    failing = store.subscribe("3", last_verified_at=None)
    ios = make("ios_one", provider="apple")  # no App Store API credentials: not even listed
    store.fake.renew(renewed.provider_subscription_id)  # the period rolled over and was paid ...
    store.fake.subscription_update({"cancel_at_period_end": "true"}, canceled.provider_subscription_id)
    store.lose_events()  # ... and neither event reached us
    store.fake.fail(rf"GET /v1/subscriptions/{failing.provider_subscription_id}$", status=503)
    since = store.mark()

    report = repoll_subscriptions.delay().get()

    assert report == {"applied": {"unchanged": 1, "updated": 1}, "skipped": 0, "failed": 1}
    assert sorted(store.polled(since)) == sorted(r.provider_subscription_id for r in (renewed, canceled, failing))
    renewed.refresh_from_db()
    assert renewed.expires_at == store.period_end(renewed) > NOW + timedelta(days=40)
    assert renewed.status == Status.ACTIVE and renewed.last_verified_at > NOW
    change = StatusChange.objects.get(cause="poll", kind="status")
    assert (change.subscription_id, change.new_status, change.cause_ref) == (canceled.pk, "CANCELED", "repoll")
    renewal = StatusChange.objects.get(cause="poll", kind="state")  # no status change; the new expiry is history
    assert (renewal.subscription_id, renewal.expires_at) == (renewed.pk, renewed.expires_at)
    failing.refresh_from_db()
    assert failing.status == Status.ACTIVE and failing.last_verified_at is None
    ios.refresh_from_db()
    assert ios.last_verified_at is None

    since = store.mark()
    repoll_subscriptions()
    # the failure was left for the next run, the rest is fresh
    assert store.polled(since) == [failing.provider_subscription_id]
    failing.refresh_from_db()
    assert failing.last_verified_at > NOW


def test_repoll_is_bounded(store):
    for i in range(5):
        store.subscribe(str(i), last_verified_at=None)
    since = store.mark()
    assert sweeps.subscriptions_repoll(limit=2).applied == {"unchanged": 2}
    assert len(store.polled(since)) == 2


def test_resync_command(store):
    unpaid = store.subscribe("1")
    canceled = store.subscribe("2")
    store.fake.subscription_update({"cancel_at_period_end": "true"}, canceled.provider_subscription_id)
    store.deliver_events()
    make("c", provider="apple")  # no App Store API credentials: skipped
    store.fake.set_status(unpaid.provider_subscription_id, "unpaid")  # Stripe gave up retrying the payment
    store.lose_events()
    assert Subscription.objects.get(pk=canceled.pk).status == Status.CANCELED
    since = store.mark()

    out, err = StringIO(), StringIO()
    call_command("resync_subscriptions", "--provider", "stripe", "--status", "ACTIVE", stdout=out, stderr=err)
    assert store.polled(since) == [unpaid.provider_subscription_id]
    assert "1 subscriptions: 1 updated; 0 skipped" in out.getvalue()
    assert Subscription.objects.get(pk=unpaid.pk).status == Status.ON_HOLD

    out = StringIO()
    call_command("resync_subscriptions", stdout=out, stderr=StringIO())
    assert "3 subscriptions: 2 unchanged; 1 skipped" in out.getvalue()


def test_a_store_without_api_credentials_is_not_polled(store, settings):
    store.subscribe("1", last_verified_at=None)
    settings.STRIPE_SECRET_KEY = ""  # webhooks only: Stripe's API is not set up
    since = store.mark()
    assert repoll_subscriptions() == {"applied": {}, "skipped": 0, "failed": 0}
    assert store.polled(since) == []
