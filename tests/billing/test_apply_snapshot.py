"""The one write path: create/update/unchanged, ordering, idempotency, user resolution, history."""

import uuid
from datetime import timedelta
from functools import partial

import pytest
from django.utils import timezone

from accounts.models import Subscriber
from billing.apply import apply_snapshot, subscription_link_subscriber
from billing.models import Outbox, Product, StatusChange, Subscription, Transaction
from billing.snapshots import Cause, CauseKind, Environment, TransactionKind, TransactionRecord
from billing.statuses import Status
from tests.factories import ProductFactory, SubscriberFactory, UserFactory, snapshot

pytestmark = pytest.mark.django_db

T0 = timezone.now() - timedelta(hours=2)
WEBHOOK = Cause(CauseKind.WEBHOOK, ref="evt_1")
POLL = Cause(CauseKind.POLL, ref="repoll")


snap = partial(snapshot, at=T0)  # this module's clock: two hours ago


def txn(tid, kind=TransactionKind.PURCHASE, amount=999, at=T0):
    return TransactionRecord(tid, kind, at, amount, "usd")


def history(sub_pk=None):
    qs = StatusChange.objects.order_by("id")
    if sub_pk:
        qs = qs.filter(subscription_id=sub_pk)
    return [(c.old_status, c.new_status, c.ignored) for c in qs]


# --- create / update / unchanged -------------------------------------------------------------------

def test_create_records_everything():
    result = apply_snapshot(snap(user_id="42", email="a@example.com", expires_at=T0 + timedelta(days=30),
                                 amount_minor=999, currency="usd", period_unit="month", period_value=1,
                                 auto_renew=True, raw={"id": "sub_1"},
                                 transactions=(txn("in_1"),)), WEBHOOK)
    assert (result.outcome, result.old_status, result.new_status, result.transactions_added) == \
        ("created", Status.INACTIVE, Status.ACTIVE, 1)
    assert result.status_changed
    sub = Subscription.objects.get()
    assert sub.subscriber.external_id == "42" and sub.subscriber.email == "a@example.com"
    assert (sub.amount_minor, sub.currency, sub.auto_renew, sub.raw_snapshot) == (999, "usd", True, {"id": "sub_1"})
    assert sub.last_event_at == T0 and sub.last_verified_at is not None
    change = StatusChange.objects.get()
    assert (change.old_status, change.new_status, change.cause, change.cause_ref, change.occurred_at) == \
        (Status.INACTIVE, Status.ACTIVE, CauseKind.WEBHOOK, "evt_1", T0)
    row = Outbox.objects.get()
    assert row.payload["eventId"] == str(row.event_id)
    assert (row.payload["userId"], row.payload["oldStatus"], row.payload["newStatus"]) == ("42", "INACTIVE", "ACTIVE")


def test_update_then_unchanged():
    apply_snapshot(snap(user_id="42", expires_at=T0 + timedelta(days=30)), WEBHOOK)
    r = apply_snapshot(snap(Status.CANCELED, at=T0 + timedelta(minutes=5), auto_renew=False), WEBHOOK)
    assert (r.outcome, r.old_status, r.new_status) == ("updated", Status.ACTIVE, Status.CANCELED)
    later = T0 + timedelta(minutes=10)
    r = apply_snapshot(snap(Status.CANCELED, at=later, expires_at=T0 + timedelta(days=31)), WEBHOOK)
    assert r.outcome == "unchanged" and not r.status_changed
    sub = Subscription.objects.get()
    # None in a snapshot keeps the stored value; given values replace it
    assert sub.auto_renew is False and sub.expires_at == T0 + timedelta(days=31) and sub.last_event_at == later
    # the new expiry without a status change: a `state` row (finance rebuilds past moments from the history)
    assert history() == [("INACTIVE", "ACTIVE", False), ("ACTIVE", "CANCELED", False), ("CANCELED", "CANCELED", False)]
    assert StatusChange.objects.order_by("-id").first().kind == "state"
    assert Outbox.objects.count() == 2


def test_same_snapshot_twice_is_one_change():
    apply_snapshot(snap(user_id="42", transactions=(txn("in_1"),)), WEBHOOK)
    r = apply_snapshot(snap(user_id="42", transactions=(txn("in_1"),)), WEBHOOK)
    assert r.outcome == "unchanged" and r.transactions_added == 0
    assert (StatusChange.objects.count(), Outbox.objects.count(), Transaction.objects.count()) == (1, 1, 1)


def test_environment_and_sandbox_are_kept():
    apply_snapshot(snap(user_id="42", environment=Environment.SANDBOX), WEBHOOK)
    assert Subscription.objects.get().environment == Environment.SANDBOX
    assert Outbox.objects.get().payload["environment"] == "sandbox"


# --- ordering -----------------------------------------------------------------------------------

def test_an_older_snapshot_never_regresses_and_is_visible():
    apply_snapshot(snap(user_id="42", expires_at=T0 + timedelta(days=30)), WEBHOOK)
    apply_snapshot(snap(Status.REVOKED, at=T0 + timedelta(minutes=10), ended_at=T0 + timedelta(minutes=10)), WEBHOOK)
    r = apply_snapshot(snap(Status.ACTIVE, at=T0 + timedelta(minutes=5), expires_at=T0 + timedelta(days=60)),
                       Cause(CauseKind.WEBHOOK, ref="evt_late"))
    assert (r.outcome, r.old_status, r.new_status) == ("stale", Status.REVOKED, Status.REVOKED)
    sub = Subscription.objects.get()
    assert sub.status == Status.REVOKED and sub.expires_at == T0 + timedelta(days=30)
    assert sub.last_event_at == T0 + timedelta(minutes=10)
    ignored = StatusChange.objects.get(ignored=True)
    assert (ignored.old_status, ignored.new_status, ignored.cause_ref) == (Status.REVOKED, Status.ACTIVE, "evt_late")
    assert "stale" in ignored.note and "ignored" in str(ignored)
    assert Outbox.objects.count() == 2  # the stale one published nothing


def test_a_snapshot_at_the_same_store_time_applies():
    apply_snapshot(snap(user_id="42"), WEBHOOK)
    r = apply_snapshot(snap(Status.CANCELED, at=T0), WEBHOOK)
    assert r.outcome == "updated"


def test_derived_snapshot_does_not_advance_last_event_at():
    apply_snapshot(snap(user_id="42", expires_at=T0 + timedelta(minutes=30)), WEBHOOK)
    derived_at = timezone.now()
    r = apply_snapshot(snap(Status.EXPIRED, at=derived_at, store_product_id="", derived=True),
                       Cause(CauseKind.BEAT, ref="expire_lapsed"))
    assert r.new_status == Status.EXPIRED
    sub = Subscription.objects.get()
    assert sub.last_event_at == T0
    # A store state newer than the last one it told us (but older than the sweep) still applies.
    r = apply_snapshot(snap(Status.ACTIVE, at=T0 + timedelta(minutes=29), expires_at=T0 + timedelta(days=30)), WEBHOOK)
    assert r.outcome == "updated" and r.new_status == Status.ACTIVE
    assert history() == [("INACTIVE", "ACTIVE", False), ("ACTIVE", "EXPIRED", False), ("EXPIRED", "ACTIVE", False)]


def test_beat_cause_does_not_count_as_store_confirmation():
    apply_snapshot(snap(user_id="42"), Cause(CauseKind.BEAT))
    assert Subscription.objects.get().last_verified_at is None


# --- money --------------------------------------------------------------------------------------

def test_transactions_are_idempotent_even_from_a_stale_snapshot():
    apply_snapshot(snap(user_id="42", at=T0 + timedelta(minutes=10), transactions=(txn("in_2"),)), WEBHOOK)
    r = apply_snapshot(snap(at=T0, transactions=(txn("in_1"), txn("in_2"), txn("in_1"))), WEBHOOK)
    assert r.outcome == "stale" and r.transactions_added == 1  # the late renewal is money all the same
    r = apply_snapshot(snap(at=T0, transactions=(txn("in_1"),)), WEBHOOK)
    assert r.transactions_added == 0
    assert sorted(Transaction.objects.values_list("provider_transaction_id", flat=True)) == ["in_1", "in_2"]


def test_refund_is_stored_positive_with_its_kind():
    apply_snapshot(snap(user_id="42", transactions=(txn("re_1", TransactionKind.REFUND, -999),)), WEBHOOK)
    t = Transaction.objects.get()
    assert (t.kind, t.amount_minor, t.currency, t.provider) == ("refund", 999, "USD", "stripe")


def test_same_transaction_id_at_two_providers_are_two_transactions():
    apply_snapshot(snap(user_id="42", transactions=(txn("1000"),)), WEBHOOK)
    apply_snapshot(snap(user_id="42", provider="apple", sub_id="1000", transactions=(txn("1000"),)), WEBHOOK)
    assert Transaction.objects.count() == 2


# --- products -----------------------------------------------------------------------------------

def test_unknown_product_is_added_unmapped():
    apply_snapshot(snap(user_id="42", store_product_id="price_new", period_unit="year", period_value=1,
                        currency="eur"), WEBHOOK)
    product = Product.objects.get(store_product_id="price_new")
    assert (product.provider, product.period_unit, product.currency) == ("stripe", "year", "EUR")
    assert product.entitlements.count() == 0
    assert Subscription.objects.get().product == product


def test_known_product_is_linked_and_an_event_names_its_entitlements():
    product = ProductFactory(store_product_id="price_monthly", entitlements=["premium", "no_ads"])
    apply_snapshot(snap(user_id="42"), WEBHOOK)
    assert Subscription.objects.get().product == product
    assert Outbox.objects.get().payload["entitlements"] == ["no_ads", "premium"]


def test_plan_change_moves_the_product():
    apply_snapshot(snap(user_id="42"), WEBHOOK)
    apply_snapshot(snap(at=T0 + timedelta(minutes=1), store_product_id="price_yearly"), WEBHOOK)
    assert Subscription.objects.get().store_product_id == "price_yearly"
    assert Subscription.objects.get().product.store_product_id == "price_yearly"


# --- who ----------------------------------------------------------------------------------------

def test_user_id_with_identity_remembers_the_identity():
    apply_snapshot(snap(user_id="42", identity_field="stripe_customer_id", identity_value="cus_1"), WEBHOOK)
    assert Subscriber.objects.get(external_id="42").stripe_customer_id == "cus_1"
    # a later subscription with only the identity finds the same user
    apply_snapshot(snap(sub_id="sub_2", identity_field="stripe_customer_id", identity_value="cus_1"), WEBHOOK)
    assert Subscription.objects.get(provider_subscription_id="sub_2").subscriber.external_id == "42"


def test_apple_token_identity():
    token = uuid.UUID("0000002a-0000-0000-0000-000000000000")
    SubscriberFactory(external_id="42", apple_app_account_token=token)
    apply_snapshot(snap(provider="apple", sub_id="2000001", identity_field="apple_app_account_token",
                        identity_value=str(token)), WEBHOOK)
    assert Subscription.objects.get().subscriber.external_id == "42"


def test_unknown_user_is_an_orphan_kept_and_not_published():
    r = apply_snapshot(snap(identity_field="stripe_customer_id", identity_value="cus_nobody"), WEBHOOK)
    sub = Subscription.objects.get()
    assert sub.subscriber is None and sub.status == Status.ACTIVE and r.status_changed
    assert history() == [("INACTIVE", "ACTIVE", False)]
    # consumers key every event on userId: an orphan's change waits until it is linked
    assert Outbox.objects.count() == 0


def test_orphan_linked_by_a_later_event_is_published():
    apply_snapshot(snap(identity_field="stripe_customer_id", identity_value="cus_1"), WEBHOOK)
    SubscriberFactory(external_id="77", stripe_customer_id="cus_1")
    r = apply_snapshot(snap(at=T0 + timedelta(minutes=1), identity_field="stripe_customer_id",
                            identity_value="cus_1"), WEBHOOK)
    assert r.outcome == "unchanged"
    assert Subscription.objects.get().subscriber.external_id == "77"
    event = Outbox.objects.get().payload
    assert (event["userId"], event["oldStatus"], event["newStatus"], event["isSubscribed"]) == \
        ("77", "ACTIVE", "ACTIVE", True)
    assert "linked to user 77" in StatusChange.objects.order_by("id").last().note


def test_snapshot_without_user_keeps_the_link():
    apply_snapshot(snap(user_id="42"), WEBHOOK)
    apply_snapshot(snap(Status.CANCELED, at=T0 + timedelta(minutes=1)), WEBHOOK)
    assert Subscription.objects.get().subscriber.external_id == "42"


def test_replaces_carries_the_user_and_supersedes():
    apply_snapshot(snap(provider="google", sub_id="token-old", user_id="42"), WEBHOOK)
    r = apply_snapshot(snap(provider="google", sub_id="token-new", replaces="token-old",
                            at=T0 + timedelta(minutes=1)), WEBHOOK)
    new = Subscription.objects.get(pk=r.subscription_id)
    old = Subscription.objects.get(provider_subscription_id="token-old")
    assert new.subscriber.external_id == "42"
    assert old.replaced_by == new and not old.is_entitled(timezone.now())
    # Ended, not left ACTIVE beside its successor; the history and the stream say so.
    assert (old.status, old.ended_at, old.auto_renew) == (Status.EXPIRED, T0 + timedelta(minutes=1), False)
    change = StatusChange.objects.filter(subscription=old).order_by("id").last()
    assert (change.old_status, change.new_status) == ("ACTIVE", "EXPIRED")
    assert "replaced by google:token-new" in change.note
    ended = Outbox.objects.filter(subscription=old).order_by("id").last().payload
    assert (ended["newStatus"], ended["userId"], ended["isSubscribed"]) == ("EXPIRED", "42", True)


def test_a_superseded_subscription_stays_ended_whatever_the_store_says_later():
    apply_snapshot(snap(provider="google", sub_id="token-old", user_id="42"), WEBHOOK)
    apply_snapshot(snap(provider="google", sub_id="token-new", replaces="token-old", at=T0 + timedelta(minutes=1)),
                   WEBHOOK)
    apply_snapshot(snap(provider="google", sub_id="token-old", at=T0 + timedelta(minutes=2)), POLL)  # store: ACTIVE
    old = Subscription.objects.get(provider_subscription_id="token-old")
    assert old.status == Status.EXPIRED and not old.is_entitled(timezone.now())
    assert Subscription.objects.filter(status=Status.ACTIVE).count() == 1


def test_conflicting_claim_keeps_the_owner_with_a_note_once():
    apply_snapshot(snap(user_id="42"), WEBHOOK)
    apply_snapshot(snap(Status.CANCELED, at=T0 + timedelta(minutes=1), user_id="43"), WEBHOOK)
    sub = Subscription.objects.get()
    assert sub.subscriber.external_id == "42"
    change = StatusChange.objects.order_by("id").last()
    assert change.new_status == Status.CANCELED and "store claims user 43; kept the linked user" in change.note
    # no status change: the claim is still shown, once, and nothing is published
    for minute in (2, 3):
        apply_snapshot(snap(Status.CANCELED, at=T0 + timedelta(minutes=minute), user_id="44"), WEBHOOK)
    notes = list(StatusChange.objects.filter(note__contains="claims user 44").values_list("old_status", "new_status"))
    assert notes == [("CANCELED", "CANCELED")]
    assert Outbox.objects.count() == 2


def test_staff_cause_is_recorded():
    staff = UserFactory()
    apply_snapshot(snap(user_id="42"), Cause(CauseKind.STAFF, ref="staff:x", staff_user_id=staff.pk, note="why"))
    change = StatusChange.objects.get()
    assert (change.cause, change.staff_user, change.note) == ("staff", staff, "why")


# --- linking by staff -----------------------------------------------------------------------------

def test_link_orphan_publishes_for_the_user():
    staff = UserFactory()
    r = apply_snapshot(snap(), WEBHOOK)
    user = SubscriberFactory(external_id="55")
    subscription_link_subscriber(subscription_id=r.subscription_id, subscriber=user,
                                 cause=Cause(CauseKind.STAFF, staff_user_id=staff.pk, note="ticket 9"))
    assert Subscription.objects.get().subscriber == user
    event = Outbox.objects.get().payload
    assert (event["userId"], event["newStatus"], event["isSubscribed"]) == ("55", "ACTIVE", True)
    change = StatusChange.objects.order_by("id").last()
    assert change.staff_user == staff and "linked to user 55" in change.note and "ticket 9" in change.note


def test_moving_a_subscription_tells_both_users():
    r = apply_snapshot(snap(user_id="42"), WEBHOOK)
    other = SubscriberFactory(external_id="43")
    subscription_link_subscriber(subscription_id=r.subscription_id, subscriber=other, cause=Cause(CauseKind.STAFF))
    events = [row.payload for row in Outbox.objects.order_by("id")][1:]
    assert [(e["userId"], e["isSubscribed"]) for e in events] == [("43", True), ("42", False)]


# --- grace ------------------------------------------------------------------------------------------

def test_leaving_grace_clears_the_old_grace_end_so_it_cannot_extend_access():
    expires = T0 + timedelta(hours=1)
    apply_snapshot(snap(Status.ON_GRACE, user_id="42", expires_at=expires, grace_until=T0 + timedelta(days=16)),
                   WEBHOOK)
    sub = Subscription.objects.get()
    assert sub.is_entitled(T0 + timedelta(days=10))  # in grace

    apply_snapshot(snap(Status.CANCELED, at=T0 + timedelta(minutes=1), expires_at=expires), WEBHOOK)
    sub.refresh_from_db()
    assert sub.grace_until is None
    assert not sub.is_entitled(T0 + timedelta(days=10))  # canceled: access ends at the expiry


def test_a_derived_snapshot_keeps_the_grace_end():
    grace = T0 + timedelta(days=16)
    apply_snapshot(snap(Status.ON_GRACE, user_id="42", expires_at=T0, grace_until=grace), WEBHOOK)
    apply_snapshot(snap(Status.EXPIRED, at=T0 + timedelta(days=17), derived=True), Cause(CauseKind.BEAT))
    assert Subscription.objects.get().grace_until == grace


def test_a_batch_is_applied_as_one_snapshot_after_the_other():
    from billing.apply import apply_snapshots

    renewal = TransactionRecord("GPA.1..0", TransactionKind.RENEWAL, T0 + timedelta(minutes=2), 499, "EUR")
    results = apply_snapshots([
        (snap(sub_id="tok_A", provider="google", user_id="61", store_product_id="monthly"), WEBHOOK),
        # an upgrade: the new token names no user; it supersedes A, whose user it takes over
        (snap(sub_id="tok_B", provider="google", at=T0 + timedelta(minutes=1), replaces="tok_A",
              store_product_id="yearly", transactions=(renewal,)), WEBHOOK),
        (snap(Status.ON_HOLD, sub_id="tok_B", provider="google", at=T0 - timedelta(minutes=5),
              store_product_id="yearly"), WEBHOOK),  # older than what B has: stale
        (snap(Status.CANCELED, sub_id="tok_B", provider="google", at=T0 + timedelta(minutes=3),
              store_product_id="yearly", transactions=(renewal,)), WEBHOOK),  # the same renewal: recorded once
    ])
    assert [(r.outcome, r.old_status, r.new_status, r.transactions_added) for r in results] == [
        ("created", "INACTIVE", "ACTIVE", 0), ("created", "INACTIVE", "ACTIVE", 1),
        ("stale", "ACTIVE", "ACTIVE", 0), ("updated", "ACTIVE", "CANCELED", 0)]
    a, b = Subscription.objects.get(provider_subscription_id="tok_A"), Subscription.objects.get(
        provider_subscription_id="tok_B")
    assert a.replaced_by == b and b.subscriber == a.subscriber and b.subscriber.external_id == "61"
    assert b.status == Status.CANCELED and b.store_product_id == "yearly"
    assert Transaction.objects.filter(provider_transaction_id="GPA.1..0").count() == 1
    history = list(StatusChange.objects.filter(subscription=b).order_by("id").values_list("new_status", "ignored"))
    assert history == [("ACTIVE", False), ("ON_HOLD", True), ("CANCELED", False)]
    events = [o.payload for o in Outbox.objects.order_by("id")]
    assert [(e["subscriptionId"], e["newStatus"], e["userId"]) for e in events] == [
        ("tok_A", "ACTIVE", "61"), ("tok_A", "EXPIRED", "61"), ("tok_B", "ACTIVE", "61"),
        ("tok_B", "CANCELED", "61")]  # A ends when B replaces it
    assert events[-1]["isSubscribed"] is True  # as of the commit: B is canceled but runs to its end
