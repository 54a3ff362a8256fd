"""Processing stored events: outcomes, follow-ups after the commit, the drain and its groups (tasks in-process)."""

import pytest

from billing import entitlement_cache
from billing.models import StatusChange, Subscription
from billing.statuses import Status
from tests.helpers import stream_events
from webhooks import processing, tasks
from webhooks.models import WebhookEvent

from .adapter import event_body
from .helpers import post

pytestmark = pytest.mark.django_db


def test_out_of_order_delivery_does_not_regress_and_the_stale_event_is_visible(send):
    newer = send(event_body("evt_new", subscription_id="sub_O", status="CANCELED", time="2026-11-02T10:00:00+00:00"))
    older = send(event_body("evt_old", subscription_id="sub_O", status="ACTIVE", time="2026-11-01T10:00:00+00:00"))

    assert Subscription.objects.get().status == Status.CANCELED
    older.refresh_from_db()
    newer.refresh_from_db()
    assert newer.status == WebhookEvent.Status.PROCESSED
    assert older.status == WebhookEvent.Status.IGNORED
    assert older.outcome.startswith("ignored: stale")
    assert "ACTIVE ignored, kept CANCELED" in older.outcome
    assert StatusChange.objects.filter(ignored=True, cause_ref=str(older.pk)).exists()
    assert [e["newStatus"] for e in stream_events()] == ["CANCELED"]


def test_a_processed_event_is_not_processed_again(send):
    event = send(event_body("evt_once"))
    assert processing.event_process(event.pk) == "skipped"
    event.refresh_from_db()
    assert event.attempts == 1


def test_follow_up_failing_after_commit_retries_the_event_without_a_second_effect(
        send, run_hooks, fast_retries, redis_client):
    event = send(event_body("evt_ack", type="follow_up", fail_times=2, subscription_id="sub_ACK"))
    event.refresh_from_db()
    assert event.status == WebhookEvent.Status.RECEIVED
    assert event.error.startswith("follow-up failed: TransientError")
    assert Subscription.objects.get().status == Status.ACTIVE  # the state itself is committed

    run_hooks(tasks.sweep_events)

    event.refresh_from_db()
    assert event.status == WebhookEvent.Status.PROCESSED and event.attempts == 3
    assert redis_client.get("hooktest:acknowledged:evt_ack") == "ACTIVE"
    assert StatusChange.objects.count() == 1
    assert len(stream_events()) == 1


def test_a_drain_group_publishes_each_event_once_in_order_and_skips_a_failed_one(client, run_hooks, settings):
    for i in range(12):  # stored, not processed yet (commit hooks of the POSTs not run)
        kind = "permanent" if i == 5 else "status"
        assert post(client, event_body(f"evt_g{i}", type=kind, subscription_id=f"sub_g{i}",
                                       user_id=str(700 + i))).status_code == 200
    assert run_hooks(processing.events_drain) == (12, False)  # one group, events claimed several per query

    statuses = dict(WebhookEvent.objects.values_list("dedupe_key", "status"))
    assert statuses.pop("evt_g5") == WebhookEvent.Status.FAILED
    assert set(statuses.values()) == {WebhookEvent.Status.PROCESSED}
    events = stream_events()
    assert [e["subscriptionId"] for e in events] == [f"sub_g{i}" for i in range(12) if i != 5]
    assert len({e["eventId"] for e in events}) == 11
    assert [entitlement_cache.get(str(700 + i))[0]["status"] for i in (0, 4, 6, 11)] == ["ACTIVE"] * 4
    assert entitlement_cache.get("705") is None


def test_a_drain_group_applies_events_of_one_subscription_in_order_and_keeps_out_of_order_ones_stale(
        client, run_hooks):
    # Stored first, then drained together: one group of the write path.
    bodies = [event_body("evt_s1", subscription_id="sub_S", status="ACTIVE", time="2026-11-01T10:00:00+00:00"),
              event_body("evt_s2", subscription_id="sub_S", status="CANCELED", time="2026-11-03T10:00:00+00:00"),
              event_body("evt_s3", subscription_id="sub_S", status="ON_HOLD", time="2026-11-02T10:00:00+00:00"),
              event_body("evt_t1", subscription_id="sub_T", user_id="43", status="TRIAL")]
    for body in bodies:
        assert post(client, body).status_code == 200
    assert run_hooks(processing.events_drain) == (4, False)

    statuses = dict(WebhookEvent.objects.values_list("dedupe_key", "status"))
    assert statuses == {"evt_s1": "processed", "evt_s2": "processed", "evt_s3": "ignored", "evt_t1": "processed"}
    assert dict(Subscription.objects.values_list("provider_subscription_id", "status")) == {
        "sub_S": "CANCELED", "sub_T": "TRIAL"}
    history = list(StatusChange.objects.filter(subscription__provider_subscription_id="sub_S").order_by("id")
                   .values_list("old_status", "new_status", "ignored"))
    assert history == [("INACTIVE", "ACTIVE", False), ("ACTIVE", "CANCELED", False), ("CANCELED", "ON_HOLD", True)]
    events = stream_events()
    assert [(e["subscriptionId"], e["oldStatus"], e["newStatus"]) for e in events] == [
        ("sub_S", "INACTIVE", "ACTIVE"), ("sub_S", "ACTIVE", "CANCELED"), ("sub_T", "INACTIVE", "TRIAL")]
    assert [e["isSubscribed"] for e in events] == [True, True, True]  # as of the group's commit
    assert WebhookEvent.objects.get(dedupe_key="evt_s2").subscriptions.get().provider_subscription_id == "sub_S"


def test_a_transient_parse_failure_in_a_group_asks_the_store_once_and_the_others_are_processed(
        client, run_hooks, redis_client, fast_retries):
    for body in (event_body("evt_p1", subscription_id="sub_P1"),
                 event_body("evt_p2", type="flaky", fail_times=1, subscription_id="sub_P2"),
                 event_body("evt_p3", subscription_id="sub_P3")):
        assert post(client, body).status_code == 200
    run_hooks(processing.events_drain, max_events=3)

    assert redis_client.get("hooktest:flaky:evt_p2") == "1"  # one store call for one attempt
    flaky = WebhookEvent.objects.get(dedupe_key="evt_p2")
    assert (flaky.status, flaky.attempts) == ("received", 1) and "store answered 503" in flaky.error
    assert "TransientError" in flaky.traceback
    assert set(WebhookEvent.objects.exclude(pk=flaky.pk).values_list("status", "attempts")) == {("processed", 1)}


def test_an_event_the_database_refuses_fails_alone_and_the_rest_of_its_group_is_applied(client, run_hooks):
    for body in (event_body("evt_d1", subscription_id="sub_D1"),
                 event_body("evt_d2", subscription_id="sub_" + "x" * 600),  # longer than the column
                 event_body("evt_d3", subscription_id="sub_D3")):
        assert post(client, body).status_code == 200
    assert run_hooks(processing.events_drain) == (3, False)

    bad = WebhookEvent.objects.get(dedupe_key="evt_d2")
    assert bad.status == "failed" and "DataError" in bad.error and bad.attempts == 1
    assert sorted(Subscription.objects.values_list("provider_subscription_id", "status")) == [
        ("sub_D1", "ACTIVE"), ("sub_D3", "ACTIVE")]
    assert [e["subscriptionId"] for e in stream_events()] == ["sub_D1", "sub_D3"]
