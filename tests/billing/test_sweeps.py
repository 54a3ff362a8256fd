"""The beat jobs: the expiry sweep, the re-poll of the stores, and `manage.py resync_subscriptions`."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from billing.models import Outbox, StatusChange, Subscription
from billing.providers import registry
from billing.providers.base import ProviderAdapter, TransientError
from billing.snapshots import Snapshot
from billing.statuses import Status
from billing.sweeps import subscription_expire_if_lapsed, subscriptions_due_for_repoll
from billing.tasks import expire_lapsed, repoll_subscriptions
from tests.factories import SubscriptionFactory

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

class StoreAtHand(ProviderAdapter):
    """A store adapter whose store answers from a dict (the interface's seam; real adapters are tested
    against fake servers in their own suites)."""

    name = "stripe"

    def __init__(self):
        self.states, self.down, self.calls = {}, set(), []

    def fetch(self, subscription):
        self.calls.append(subscription.provider_subscription_id)
        if subscription.provider_subscription_id in self.down:
            raise TransientError("store timed out")
        status, expires_at = self.states[subscription.provider_subscription_id]
        return Snapshot(provider="stripe", provider_subscription_id=subscription.provider_subscription_id,
                        status=status, observed_at=timezone.now(), expires_at=expires_at)


class StoreWithoutRepoll(ProviderAdapter):
    name = "apple"


@pytest.fixture
def store():
    adapter = StoreAtHand()
    registry.register("stripe", adapter)
    registry.register("apple", StoreWithoutRepoll())
    yield adapter
    registry.unregister("stripe")
    registry.unregister("apple")


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


def test_repoll_applies_what_the_store_says_and_retries_failures_next_time(store):
    renewed_until = NOW + timedelta(days=40)
    make("renewed", expires_in=timedelta(minutes=5), verified_ago=timedelta(hours=1))
    make("canceled_at_store")
    make("timing_out")
    make("ios_one", provider="apple")  # that store has no re-poll: not even listed
    store.states = {"renewed": (Status.ACTIVE, renewed_until), "canceled_at_store": (Status.CANCELED, None),
                    "timing_out": (Status.ACTIVE, None)}
    store.down = {"timing_out"}

    report = repoll_subscriptions.delay().get()
    assert report == {"applied": {"unchanged": 1, "updated": 1}, "skipped": 0, "failed": 1}
    assert sorted(store.calls) == ["canceled_at_store", "renewed", "timing_out"]
    renewed = Subscription.objects.get(provider_subscription_id="renewed")
    assert renewed.expires_at == renewed_until and renewed.last_verified_at > NOW
    change = StatusChange.objects.get()
    assert (change.new_status, change.cause, change.cause_ref) == ("CANCELED", "poll", "repoll")
    assert Subscription.objects.get(provider_subscription_id="timing_out").last_verified_at is None

    store.calls.clear()
    store.down.clear()
    repoll_subscriptions()
    assert store.calls == ["timing_out"]  # the failure was left for the next run, the rest is fresh


def test_repoll_is_bounded(store):
    for i in range(5):
        make(f"s{i}")
        store.states[f"s{i}"] = (Status.ACTIVE, None)
    from billing import sweeps

    assert sweeps.subscriptions_repoll(limit=2).applied == {"unchanged": 2}
    assert len(store.calls) == 2


def test_resync_command(store):
    make("a")
    make("b", status=Status.CANCELED)
    make("c", provider="apple")
    store.states = {"a": (Status.ON_HOLD, None), "b": (Status.CANCELED, None)}
    out, err = StringIO(), StringIO()
    call_command("resync_subscriptions", "--provider", "stripe", "--status", "ACTIVE", stdout=out, stderr=err)
    assert store.calls == ["a"]
    assert "1 subscriptions: 1 updated; 0 skipped" in out.getvalue()
    assert Subscription.objects.get(provider_subscription_id="a").status == Status.ON_HOLD
    out = StringIO()
    call_command("resync_subscriptions", stdout=out, stderr=StringIO())
    assert "3 subscriptions: 2 unchanged; 1 skipped" in out.getvalue()


class UnconfiguredStore(StoreAtHand):
    api_settings = ("STRIPE_SECRET_KEY",)


def test_a_store_without_api_credentials_is_not_polled(settings):
    settings.STRIPE_SECRET_KEY = ""
    adapter = UnconfiguredStore()
    registry.register("stripe", adapter)
    try:
        make("never_confirmed")
        assert repoll_subscriptions() == {"applied": {}, "skipped": 0, "failed": 0}
        assert adapter.calls == []
    finally:
        registry.unregister("stripe")
