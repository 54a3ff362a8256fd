"""Retries: the backoff, transient failures retried until processed or dead, permanent ones failed
(tasks in-process)."""

import pytest
from django.core.management import call_command

from billing.models import Subscription
from billing.statuses import Status
from tests.helpers import stream_events
from webhooks import retries, tasks
from webhooks.models import WebhookEvent

from .adapter import BROKEN_KEY, event_body

pytestmark = pytest.mark.django_db


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


def test_five_transient_failures_then_success_is_processed(send, run_hooks, fast_retries):
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
    assert len(stream_events()) == 1


def test_backoff_grows_exponentially_with_jitter(settings):
    settings.WEBHOOK_RETRY_BASE_SECONDS = 10
    settings.WEBHOOK_RETRY_MAX_SECONDS = 3600
    for attempt, ceiling in [(1, 10), (2, 20), (3, 40), (6, 320), (12, 3600)]:
        delays = {retries.backoff_seconds(attempt) for _ in range(20)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(delays) > 1  # jitter: retries of many events do not come back in lockstep


def test_exhausted_attempts_make_the_event_dead_and_a_replay_after_the_fix_processes_it(
        send, run_hooks, fast_retries, settings, redis_client):
    settings.WEBHOOK_MAX_ATTEMPTS = 3
    settings.WEBHOOK_RETRY_HORIZON_HOURS = 0  # the attempts alone decide here
    redis_client.set(BROKEN_KEY, "1")
    event = send(event_body("evt_dead", type="needs_fix", subscription_id="sub_D"))
    run_hooks(tasks.sweep_events)

    event.refresh_from_db()
    assert event.status == WebhookEvent.Status.DEAD
    assert event.attempts == 3 and event.outcome.startswith("dead after 3 attempts over 0.0 hours")
    assert "dependency down" in event.error
    assert not Subscription.objects.exists()

    redis_client.delete(BROKEN_KEY)  # the cause is fixed
    run_hooks(call_command, "replay_events", "--status", "dead", "--provider", "hooktest")

    event.refresh_from_db()
    assert event.status == WebhookEvent.Status.PROCESSED
    assert event.attempts == 1 and event.error == ""
    assert Subscription.objects.get().status == Status.ACTIVE
    assert len(stream_events()) == 1
