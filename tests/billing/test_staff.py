"""Staff fixes: grant, extend, revoke, with a required reason and the staff member on the history."""

from datetime import timedelta

import pytest
from django.utils import timezone

from billing.apply import apply_snapshot
from billing.models import Outbox, StatusChange, Subscription
from billing.snapshots import Cause, CauseKind, Snapshot
from billing.staff import StaffActionError, manual_extend, manual_grant, subscription_revoke
from billing.statuses import Status
from tests.factories import EntitlementFactory, ProductFactory, SubscriberFactory, SubscriptionFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff():
    return UserFactory(username="alice")


@pytest.fixture
def user():
    return SubscriberFactory(external_id="1001")


def test_grant_an_entitlement_until_a_date(staff, user):
    until = timezone.now() + timedelta(days=30)
    sub = manual_grant(subscriber=user, entitlement=EntitlementFactory(name="premium"), until=until,
                       reason="goodwill, ticket 123", staff_user=staff)
    assert (sub.provider, sub.status, sub.subscriber, sub.expires_at, sub.auto_renew) == \
        ("manual", Status.ACTIVE, user, until, False)
    assert sub.provider_subscription_id.startswith("manual-")
    assert [e.name for e in sub.product.entitlements.all()] == ["premium"]
    change = StatusChange.objects.get(subscription=sub)
    assert (change.cause, change.staff_user, change.note) == ("staff", staff, "goodwill, ticket 123")
    event = Outbox.objects.get().payload
    assert (event["userId"], event["provider"], event["newStatus"], event["isSubscribed"]) == \
        ("1001", "manual", "ACTIVE", True)
    assert event["entitlements"] == ["premium"]


def test_open_ended_grant_of_a_store_product(staff, user):
    product = ProductFactory(store_product_id="price_yearly", entitlements=["premium", "no_ads"])
    sub = manual_grant(subscriber=user, product=product, until=None, reason="partner", staff_user=staff)
    assert sub.expires_at is None and sub.is_entitled(timezone.now() + timedelta(days=3650))
    assert sub.product.provider == "manual" and sub.product.store_product_id == "stripe:price_yearly"
    assert sorted(e.name for e in sub.product.entitlements.all()) == ["no_ads", "premium"]
    # a second grant of the same product reuses the manual twin
    again = manual_grant(subscriber=user, product=product, until=None, reason="again", staff_user=staff)
    assert again.product == sub.product and again.pk != sub.pk


@pytest.mark.parametrize("reason", ["", "   ", None])
def test_a_reason_is_required_and_nothing_is_written(staff, user, reason):
    with pytest.raises(StaffActionError, match="reason is required"):
        manual_grant(subscriber=user, entitlement=EntitlementFactory(), until=None, reason=reason, staff_user=staff)
    assert not Subscription.objects.exists() and not Outbox.objects.exists()


def test_grant_end_must_be_in_the_future(staff, user):
    with pytest.raises(StaffActionError, match="future"):
        manual_grant(subscriber=user, entitlement=EntitlementFactory(), until=timezone.now() - timedelta(hours=1),
                     reason="x", staff_user=staff)


def test_extend_a_grant_and_reactivate_an_expired_one(staff, user):
    sub = manual_grant(subscriber=user, entitlement=EntitlementFactory(), until=timezone.now() + timedelta(days=1),
                       reason="trial for a partner", staff_user=staff)
    later = timezone.now() + timedelta(days=60)
    sub = manual_extend(subscription=sub, until=later, reason="partner renewed", staff_user=staff)
    assert sub.expires_at == later and sub.status == Status.ACTIVE
    with pytest.raises(StaffActionError, match="after the current one"):
        manual_extend(subscription=sub, until=later - timedelta(days=1), reason="oops", staff_user=staff)
    sub = subscription_revoke(subscription=sub, reason="partner left", staff_user=staff)
    sub = manual_extend(subscription=sub, until=later + timedelta(days=1), reason="came back", staff_user=staff)
    assert sub.status == Status.ACTIVE
    notes = list(StatusChange.objects.filter(subscription=sub).order_by("id").values_list("new_status", "note"))
    assert notes == [("ACTIVE", "trial for a partner"), ("ACTIVE", "partner renewed"), ("REVOKED", "partner left"),
                     ("ACTIVE", "came back")]  # the extension too: every staff change says who and why


def test_store_subscriptions_are_not_extended_here(staff):
    sub = SubscriptionFactory(provider="apple")
    with pytest.raises(StaffActionError, match="extended in its store"):
        manual_extend(subscription=sub, until=timezone.now() + timedelta(days=9), reason="x", staff_user=staff)


def test_revoke_a_store_subscription_until_the_store_says_otherwise(staff):
    sub = SubscriptionFactory(provider="stripe", provider_subscription_id="sub_9", subscriber__external_id="1009")
    sub = subscription_revoke(subscription=sub, reason="fraud", staff_user=staff)
    assert sub.status == Status.REVOKED and not sub.is_entitled(timezone.now()) and sub.ended_at is not None
    assert Outbox.objects.get().payload["isSubscribed"] is False
    change = StatusChange.objects.get()
    assert (change.old_status, change.staff_user, change.note) == ("ACTIVE", staff, "fraud")

    def store(minutes):
        return Snapshot(provider="stripe", provider_subscription_id="sub_9", status=Status.ACTIVE,
                        observed_at=timezone.now() + timedelta(minutes=minutes))

    # an event from before the revocation does not undo it; a later one from the store does
    assert apply_snapshot(store(-5), Cause(CauseKind.WEBHOOK)).outcome == "stale"
    assert apply_snapshot(store(+1), Cause(CauseKind.WEBHOOK)).new_status == Status.ACTIVE


def test_revoke_requires_a_reason(staff):
    sub = SubscriptionFactory()
    with pytest.raises(StaffActionError):
        subscription_revoke(subscription=sub, reason="", staff_user=staff)
    sub.refresh_from_db()
    assert sub.status == Status.ACTIVE
