"""The support timeline (support/timeline.py): one story per subscription and per customer, built from
the rows the pipeline writes, newest first, filtered and paginated with bounded queries."""

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from audit.models import AuditEntry, Note
from audit.records import record
from billing.apply import apply_snapshot
from billing.models import StatusChange, Subscription
from billing.redis_client import get_redis
from billing.snapshots import Cause, CauseKind, Provider
from billing.statuses import Status
from support.timeline import KINDS, subscriber_scope, subscription_scope, timeline_page
from tests.factories import SubscriberFactory, SubscriptionFactory, UserFactory, snapshot
from tests.support.stories import apple_lifecycle

pytestmark = pytest.mark.django_db

OTID = "2000000000000301"


@pytest.fixture
def lifecycle(apple_settings, apple_chain, django_capture_on_commit_callbacks):
    """User 1003's Apple subscription through the real webhook pipeline (tests/support/stories.py); the
    stream is written after each delivery's commit."""
    return apple_lifecycle(apple_chain, otid=OTID, user_id=1003,
                           around=lambda: django_capture_on_commit_callbacks(execute=True))


def test_a_lifecycle_reads_in_order_each_step_with_its_cause(lifecycle):
    sub, events = lifecycle
    page = timeline_page(subscription_scope(sub), kinds=["status"])
    story = [(e.title, e.cause) for e in reversed(page.entries)]  # oldest first, to read it as it happened
    assert story == [
        ("Inactive → Free trial", "Apple told us: webhook SUBSCRIBED/INITIAL_BUY"),
        ("Free trial → Active", "Apple told us: webhook DID_RENEW"),
        ("Active → In grace period", "Apple told us: webhook DID_FAIL_TO_RENEW/GRACE_PERIOD"),
        ("In grace period → On hold", "Apple told us: webhook GRACE_PERIOD_EXPIRED"),
        ("On hold → Expired", "Apple told us: webhook EXPIRED/BILLING_RETRY"),
        ("Expired → Revoked", "Apple told us: webhook REFUND"),
    ]
    # each status change links the webhook event that caused it
    assert [e.links[0][1] for e in reversed(page.entries)] == [
        f"/admin/webhooks/webhookevent/{event.pk}/change/" for event in events]


def test_the_whole_story_interleaves_events_money_changes_and_stream(lifecycle):
    sub, _events = lifecycle
    page = timeline_page(subscriber_scope(sub.subscriber))
    kinds = [e.kind for e in page.entries]
    assert kinds.count("webhook") == 6 and kinds.count("status") == 6 and kinds.count("stream") == 6
    titles = [e.title for e in page.entries]
    assert "Purchase 0.00 USD" in titles and "Renewal 9.99 USD" in titles and "Refund 9.99 USD" in titles
    # Newest first; within one delivery: the stream event, the change, the money, then the webhook it came from.
    assert [e.at for e in page.entries] == sorted((e.at for e in page.entries), reverse=True)
    newest = page.entries[:4]
    assert [e.kind for e in newest] == ["stream", "status", "transaction", "webhook"]
    assert newest[3].title == "Webhook REFUND" and newest[3].cause == "Sent by Apple"
    assert any(d.startswith("Outcome: ") for d in newest[3].details)
    # the stream events carry the entry ids Redis gave them
    stream_ids = [entry_id for entry_id, _ in get_redis().xrange(settings.BILLING_EVENTS_STREAM)]
    shown = [e for e in page.entries if e.kind == "stream"]
    assert [e.title for e in reversed(shown)][-1] == "Stream event EXPIRED → REVOKED"
    assert [next(d for d in e.details if d.startswith("Published")).rsplit(" as ", 1)[1]
            for e in reversed(shown)] == [i.decode() if isinstance(i, bytes) else i for i in stream_ids]


def test_a_stale_snapshot_shows_as_ignored(db):
    apply_snapshot(snapshot(Status.ACTIVE, 10, user_id="2001"), Cause(CauseKind.WEBHOOK, ref="a"))
    apply_snapshot(snapshot(Status.CANCELED, 5, user_id="2001"), Cause(CauseKind.POLL, ref="repoll"))
    sub = Subscription.objects.get(provider_subscription_id="sub_1")
    newest = timeline_page(subscription_scope(sub), kinds=["status"]).entries[0]
    assert newest.flag == "ignored (stale)" and newest.title == "Active → Canceled (access until the period ends)"
    assert newest.cause.startswith("Re-poll of Stripe: the store's answer (repoll) — stale: ")
    assert newest.details[0].startswith("Not applied: the store's time is older")


def test_staff_actions_show_who_and_why_and_an_undo_link_until_undone(db):
    agent = UserFactory(username="alice")
    sub = SubscriptionFactory(subscriber=SubscriberFactory(external_id="3001"))
    grant = record(actor=agent, action="grant", reason="goodwill after an outage", subscriber=sub.subscriber,
                   subscription_id=sub.pk, details={"undoable": True})
    plain = record(actor=agent, action="identity_edit", reason="typo in the email", subscriber=sub.subscriber)
    entries = {e.key: e for e in timeline_page(subscriber_scope(sub.subscriber), kinds=["staff"]).entries}
    assert entries[grant.pk].cause == "By alice — why: goodwill after an outage"
    assert entries[grant.pk].undo_url == f"/admin/support/undo/{grant.pk}/"
    assert entries[plain.pk].undo_url == "" and entries[plain.pk].subscription is None
    record(actor=agent, action="undo", reason="granted to the wrong user", subscriber=sub.subscriber,
           subscription_id=sub.pk, undoes=grant)
    entries = {e.key: e for e in timeline_page(subscriber_scope(sub.subscriber), kinds=["staff"]).entries}
    assert entries[grant.pk].undo_url == "" and entries[grant.pk].flag == "undone"
    assert len(entries) == 3
    # a subscription moved to another customer: the move stays on the timeline of the one it was taken from
    moved = SubscriptionFactory(subscriber=SubscriberFactory(external_id="3002"))
    move = record(actor=agent, action="move", reason="bought on the wrong account", subscriber=sub.subscriber,
                  subscription_id=moved.pk)
    entries = {e.key: e for e in timeline_page(subscriber_scope(sub.subscriber), kinds=["staff"]).entries}
    assert move.pk in entries and entries[move.pk].subscription is None
    assert move.pk in {e.key for e in timeline_page(subscription_scope(moved), kinds=["staff"]).entries}


def _busy_customer(count: int):
    """A customer with `count` status changes, notes and staff actions, many sharing one instant."""
    sub = SubscriptionFactory(subscriber=SubscriberFactory(external_id="4001"))
    other = SubscriptionFactory(subscriber=sub.subscriber, provider=Provider.GOOGLE)
    instant = timezone.now() - timedelta(hours=1)
    changes = StatusChange.objects.bulk_create(
        [StatusChange(subscription=sub if i % 2 else other, old_status=Status.ACTIVE, new_status=Status.CANCELED,
                      occurred_at=instant, cause=CauseKind.POLL) for i in range(count)])
    StatusChange.objects.filter(pk__in=[c.pk for c in changes[: count // 2]]).update(recorded_at=instant)
    notes = Note.objects.bulk_create([Note(subscriber=sub.subscriber, author_label="bob", text=f"n{i}")
                                      for i in range(count)])
    Note.objects.filter(pk__in=[n.pk for n in notes[: count // 2]]).update(created_at=instant)
    AuditEntry.objects.bulk_create([AuditEntry(actor_label="bob", action="grant", subscriber=sub.subscriber,
                                               subscription_id=sub.pk) for _ in range(count)])
    AuditEntry.objects.update(created_at=instant)
    return sub, other


def test_pages_follow_each_other_without_gaps_or_repeats(django_assert_max_num_queries):
    sub, _other = _busy_customer(40)
    scope = subscriber_scope(sub.subscriber)
    everything = timeline_page(scope, limit=200).entries
    assert len(everything) == 120
    seen, cursor = [], ""
    while True:
        with django_assert_max_num_queries(len(KINDS) + 2):  # one per source, two keyed by the page's rows
            page = timeline_page(scope, limit=25, cursor=cursor)
        seen += [(e.kind, e.key) for e in page.entries]
        if not page.next_cursor:
            break
        cursor = page.next_cursor
    assert seen == [(e.kind, e.key) for e in everything]
    assert len(set(seen)) == 120


def test_filters_by_kind_and_store(db):
    sub, other = _busy_customer(6)
    scope = subscriber_scope(sub.subscriber)
    assert {e.kind for e in timeline_page(scope, kinds=["note"]).entries} == {"note"}
    google = timeline_page(scope, provider=Provider.GOOGLE).entries
    # Google's: its status changes only (notes and the Stripe subscription's staff actions drop out)
    assert {(e.kind, e.subscription.pk) for e in google} == {("status", other.pk)}
    assert len(google) == 3
    assert timeline_page(scope, cursor="not-a-cursor", limit=5).entries == timeline_page(scope, limit=5).entries


def test_a_subscription_timeline_keeps_to_its_subscription(db):
    _sub, other = _busy_customer(4)
    page = timeline_page(subscription_scope(other), kinds=["status", "staff"])
    assert {e.subscription.pk for e in page.entries} == {other.pk}
    assert {e.kind for e in page.entries} == {"status"}  # the staff actions were on the other one
