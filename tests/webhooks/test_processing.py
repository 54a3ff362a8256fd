"""Processing stored events: outcomes, retries, dead-lettering, the sweeper and replay (tasks in-process)."""

import json
from io import StringIO

import pytest
from django.core.management import call_command

from billing.models import StatusChange, Subscription
from billing.statuses import Status
from webhooks import services, tasks
from webhooks.models import WebhookEvent

from .adapter import BROKEN_KEY, event_body
from .helpers import post, stream_events

pytestmark = pytest.mark.django_db


@pytest.fixture
def send(client, django_capture_on_commit_callbacks):
    def send(body, **kw):
        with django_capture_on_commit_callbacks(execute=True):
            response = post(client, body, **kw)
        assert response.status_code == 200, response.content
        return WebhookEvent.objects.get(dedupe_key=json.loads(body)["id"])
    return send


@pytest.fixture
def run_hooks(django_capture_on_commit_callbacks):
    """Run a callable with its commit hooks executed (outbox relay, queue)."""
    def run(fn, *args, **kw):
        with django_capture_on_commit_callbacks(execute=True):
            return fn(*args, **kw)
    return run


@pytest.fixture
def fast_retries(settings):
    settings.WEBHOOK_RETRY_BASE_SECONDS = 0
    settings.WEBHOOK_SWEEP_AFTER_SECONDS = 0


def test_out_of_order_delivery_does_not_regress_and_the_stale_event_is_visible(send, redis_client):
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
    assert [e["newStatus"] for e in stream_events(redis_client)] == ["CANCELED"]


def test_permanent_failure_is_failed_with_error_and_traceback(send, admin_client):
    event = send(event_body("evt_perm", type="permanent"))

    event.refresh_from_db()
    assert event.status == WebhookEvent.Status.FAILED
    assert "PermanentError: the store says this purchase does not exist" in event.error
    assert "Traceback" in event.traceback and "raise PermanentError" in event.traceback
    assert not Subscription.objects.exists()
    # visible to support: in the failed filter of the admin, with the error on the event's page
    listing = admin_client.get("/admin/webhooks/webhookevent/?status__exact=failed")
    assert "evt_perm" in listing.content.decode()
    page = admin_client.get(f"/admin/webhooks/webhookevent/{event.pk}/change/")
    assert "the store says this purchase does not exist" in page.content.decode()


def test_five_transient_failures_then_success_is_processed(send, run_hooks, fast_retries, redis_client):
    event = send(event_body("evt_flaky", type="flaky", fail_times=5, subscription_id="sub_F"))
    event.refresh_from_db()
    assert event.status == WebhookEvent.Status.RECEIVED and event.attempts == 1
    assert "TransientError: store answered 503" in event.error and event.next_attempt_at is not None

    run_hooks(tasks.sweep_events)  # the sweeper finds the due retry; in-process, the drain runs here

    event.refresh_from_db()
    assert event.status == WebhookEvent.Status.PROCESSED
    assert event.attempts == 6
    assert event.error == ""
    assert Subscription.objects.get().status == Status.ACTIVE
    assert len(stream_events(redis_client)) == 1


def test_backoff_grows_exponentially_with_jitter(settings):
    settings.WEBHOOK_RETRY_BASE_SECONDS = 10
    settings.WEBHOOK_RETRY_MAX_SECONDS = 3600
    for attempt, ceiling in [(1, 10), (2, 20), (3, 40), (6, 320), (12, 3600)]:
        delays = {services.backoff_seconds(attempt) for _ in range(20)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(delays) > 1  # jitter: retries of many events do not come back in lockstep


def test_exhausted_attempts_make_the_event_dead_and_a_replay_after_the_fix_processes_it(
        send, run_hooks, fast_retries, settings, redis_client):
    settings.WEBHOOK_MAX_ATTEMPTS = 3
    redis_client.set(BROKEN_KEY, "1")
    event = send(event_body("evt_dead", type="needs_fix", subscription_id="sub_D"))
    run_hooks(tasks.sweep_events)

    event.refresh_from_db()
    assert event.status == WebhookEvent.Status.DEAD
    assert event.attempts == 3 and event.outcome == "dead after 3 attempts"
    assert "dependency down" in event.error
    assert not Subscription.objects.exists()

    redis_client.delete(BROKEN_KEY)  # the cause is fixed
    run_hooks(call_command, "replay_events", "--status", "dead", "--provider", "hooktest")

    event.refresh_from_db()
    assert event.status == WebhookEvent.Status.PROCESSED
    assert event.attempts == 1 and event.error == ""
    assert Subscription.objects.get().status == Status.ACTIVE
    assert len(stream_events(redis_client)) == 1


def test_replay_from_the_admin(send, admin_client, django_capture_on_commit_callbacks, redis_client, settings):
    settings.WEBHOOK_MAX_ATTEMPTS = 1
    redis_client.set(BROKEN_KEY, "1")
    event = send(event_body("evt_admin", type="needs_fix", subscription_id="sub_R"))
    event.refresh_from_db()
    assert event.status == WebhookEvent.Status.DEAD
    redis_client.delete(BROKEN_KEY)

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post("/admin/webhooks/webhookevent/",
                                     {"action": "replay_events", "_selected_action": [event.pk]}, follow=True)

    assert "1 event queued for replay" in response.content.decode()
    event.refresh_from_db()
    assert event.status == WebhookEvent.Status.PROCESSED
    assert Subscription.objects.get(provider_subscription_id="sub_R").status == Status.ACTIVE


def test_replay_command_filters(send, run_hooks):
    failed = send(event_body("evt_f1", type="permanent"))
    done = send(event_body("evt_ok"))

    out = _call(run_hooks, "replay_events", "--since", "2000-01-01", "--dry-run")
    assert "1 events would be replayed" in out
    out = _call(run_hooks, "replay_events", "--status", "dead")
    assert "No events to replay" in out
    out = _call(run_hooks, "replay_events", "--id", str(done.pk), "--id", str(failed.pk))
    assert "Replayed 2 events: 1 failed, 1 processed." in out


def _call(run_hooks, *args) -> str:
    out = StringIO()
    run_hooks(call_command, *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_a_processed_event_is_not_processed_again(send):
    event = send(event_body("evt_once"))
    assert services.event_process(event.pk) == "skipped"
    event.refresh_from_db()
    assert event.attempts == 1


def test_sweeper_leaves_fresh_events_to_the_queue(settings):
    settings.WEBHOOK_SWEEP_AFTER_SECONDS = 300
    WebhookEvent.objects.create(provider="hooktest", dedupe_key="evt_fresh", body=b"{}")
    assert services.events_stuck().count() == 0
    settings.WEBHOOK_SWEEP_AFTER_SECONDS = 0
    assert services.events_stuck().count() == 1


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
    assert len(stream_events(redis_client)) == 1


def test_a_drain_group_publishes_each_event_once_in_order_and_skips_a_failed_one(client, run_hooks, redis_client,
                                                                                 settings):
    from billing import entitlement_cache

    for i in range(12):  # stored, not processed yet (commit hooks of the POSTs not run)
        kind = "permanent" if i == 5 else "status"
        assert post(client, event_body(f"evt_g{i}", type=kind, subscription_id=f"sub_g{i}",
                                       user_id=str(700 + i))).status_code == 200
    assert run_hooks(services.events_drain) == (12, False)  # one group, events claimed several per query

    statuses = dict(WebhookEvent.objects.values_list("dedupe_key", "status"))
    assert statuses.pop("evt_g5") == WebhookEvent.Status.FAILED
    assert set(statuses.values()) == {WebhookEvent.Status.PROCESSED}
    events = stream_events(redis_client)
    assert [e["subscriptionId"] for e in events] == [f"sub_g{i}" for i in range(12) if i != 5]
    assert len({e["eventId"] for e in events}) == 11
    assert [entitlement_cache.get(str(700 + i))[0]["status"] for i in (0, 4, 6, 11)] == ["ACTIVE"] * 4
    assert entitlement_cache.get("705") is None


def test_a_drain_group_applies_events_of_one_subscription_in_order_and_keeps_out_of_order_ones_stale(
        client, run_hooks, redis_client):
    # Stored first, then drained together: one group of the write path.
    bodies = [event_body("evt_s1", subscription_id="sub_S", status="ACTIVE", time="2026-11-01T10:00:00+00:00"),
              event_body("evt_s2", subscription_id="sub_S", status="CANCELED", time="2026-11-03T10:00:00+00:00"),
              event_body("evt_s3", subscription_id="sub_S", status="ON_HOLD", time="2026-11-02T10:00:00+00:00"),
              event_body("evt_t1", subscription_id="sub_T", user_id="43", status="TRIAL")]
    for body in bodies:
        assert post(client, body).status_code == 200
    assert run_hooks(services.events_drain) == (4, False)

    statuses = dict(WebhookEvent.objects.values_list("dedupe_key", "status"))
    assert statuses == {"evt_s1": "processed", "evt_s2": "processed", "evt_s3": "ignored", "evt_t1": "processed"}
    assert dict(Subscription.objects.values_list("provider_subscription_id", "status")) == {
        "sub_S": "CANCELED", "sub_T": "TRIAL"}
    history = list(StatusChange.objects.filter(subscription__provider_subscription_id="sub_S").order_by("id")
                   .values_list("old_status", "new_status", "ignored"))
    assert history == [("INACTIVE", "ACTIVE", False), ("ACTIVE", "CANCELED", False), ("CANCELED", "ON_HOLD", True)]
    events = stream_events(redis_client)
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
    run_hooks(services.events_drain, max_events=3)

    assert redis_client.get("hooktest:flaky:evt_p2") == "1"  # one store call for one attempt
    flaky = WebhookEvent.objects.get(dedupe_key="evt_p2")
    assert (flaky.status, flaky.attempts) == ("received", 1) and "store answered 503" in flaky.error
    assert "TransientError" in flaky.traceback
    assert set(WebhookEvent.objects.exclude(pk=flaky.pk).values_list("status", "attempts")) == {("processed", 1)}


def test_an_event_the_database_refuses_fails_alone_and_the_rest_of_its_group_is_applied(client, run_hooks,
                                                                                         redis_client):
    for body in (event_body("evt_d1", subscription_id="sub_D1"),
                 event_body("evt_d2", subscription_id="sub_" + "x" * 600),  # longer than the column
                 event_body("evt_d3", subscription_id="sub_D3")):
        assert post(client, body).status_code == 200
    assert run_hooks(services.events_drain) == (3, False)

    bad = WebhookEvent.objects.get(dedupe_key="evt_d2")
    assert bad.status == "failed" and "DataError" in bad.error and bad.attempts == 1
    assert sorted(Subscription.objects.values_list("provider_subscription_id", "status")) == [
        ("sub_D1", "ACTIVE"), ("sub_D3", "ACTIVE")]
    assert [e["subscriptionId"] for e in stream_events(redis_client)] == ["sub_D1", "sub_D3"]
