"""Retries: the backoff, transient failures retried until processed or dead (the attempts and the
horizon used up: mailed to ADMINS, listed in the admin's Needs attention box), permanent ones failed
(tasks in-process; the clock moved with time-machine, never waited)."""

import re
from datetime import timedelta

import pytest
import time_machine
from django.core.management import call_command
from django.utils import timezone

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


def test_the_first_retry_comes_within_seconds_and_the_backoff_is_capped_at_an_hour():
    assert retries.backoff_seconds(1) <= 5  # defaults: WEBHOOK_RETRY_BASE_SECONDS=5
    assert 1800 <= retries.backoff_seconds(40) <= 3600  # WEBHOOK_RETRY_MAX_SECONDS=3600


def _retry_when_due(clock, event, run_hooks) -> WebhookEvent:
    """The clock moves to the event's planned retry; the sweeper (beat, every minute) drains it."""
    clock.move_to(event.next_attempt_at)
    run_hooks(tasks.sweep_events)
    event.refresh_from_db()
    return event


def test_a_store_failing_for_30_hours_then_recovering_leaves_the_event_processed(send, run_hooks, redis_client,
                                                                                 settings):
    redis_client.set(BROKEN_KEY, "1")
    start = timezone.now()
    with time_machine.travel(start, tick=True) as clock:
        event = send(event_body("evt_30h", type="needs_fix", subscription_id="sub_30h"))
        while timezone.now() < start + timedelta(hours=30):
            assert event.status == WebhookEvent.Status.RECEIVED, event.outcome
            event = _retry_when_due(clock, event, run_hooks)
        assert event.attempts > settings.WEBHOOK_MAX_ATTEMPTS  # the attempts alone no longer make it dead
        assert event.failing_since - event.received_at < timedelta(seconds=1)  # the horizon counts from here
        assert event.next_attempt_at - timezone.now() <= timedelta(hours=1)  # the cap: recovery seen within the hour

        redis_client.delete(BROKEN_KEY)  # the store is back
        event = _retry_when_due(clock, event, run_hooks)
    assert event.status == WebhookEvent.Status.PROCESSED and event.error == "" and event.failing_since is None
    assert Subscription.objects.get(provider_subscription_id="sub_30h").status == Status.ACTIVE


def _needs_attention(admin_client) -> str:
    page = admin_client.get("/admin/").content.decode()
    box = page[page.index('id="needs-attention"'):]
    return box[:box.index("</div>")]


def test_an_event_failing_past_the_horizon_is_dead_mailed_to_admins_and_needs_attention(
        send, run_hooks, redis_client, admin_client, settings, mailoutbox, caplog):
    settings.ADMINS = [("Ops", "ops@example.com")]
    assert "Nothing needs attention." in _needs_attention(admin_client)
    redis_client.set(BROKEN_KEY, "1")
    start = timezone.now()
    with time_machine.travel(start, tick=True) as clock:
        event = send(event_body("evt_gone", type="needs_fix", subscription_id="sub_gone"))
        while event.status == WebhookEvent.Status.RECEIVED:
            if event.attempts == settings.WEBHOOK_MAX_ATTEMPTS:  # still retrying: listed before it is dead
                box = _needs_attention(admin_client)
                assert "Webhook events still retrying" in box and "attempts__gte=8" in box
                listing = admin_client.get("/admin/webhooks/webhookevent/?status__exact=received&attempts__gte=8")
                assert "evt_gone" in listing.content.decode()
            event = _retry_when_due(clock, event, run_hooks)
        dead_after = timezone.now() - start

        # a second event dying within the hour is listed, not mailed again
        settings.WEBHOOK_MAX_ATTEMPTS, settings.WEBHOOK_RETRY_HORIZON_HOURS = 1, 0
        send(event_body("evt_gone_too", type="needs_fix", subscription_id="sub_gone_too"))

    assert event.status == WebhookEvent.Status.DEAD and event.next_attempt_at is None
    assert timedelta(hours=168) <= dead_after <= timedelta(hours=169)  # WEBHOOK_RETRY_HORIZON_HOURS
    assert re.fullmatch(r"dead after \d+ attempts over 168\.\d hours", event.outcome)
    assert "dependency down" in event.error
    assert not Subscription.objects.exists()
    assert any(r.levelname == "ERROR" and f"webhook event {event.pk} (hooktest needs_fix) is dead" in r.getMessage()
               for r in caplog.records)

    (mail,) = mailoutbox
    assert mail.to == ["ops@example.com"] and f"Webhook event {event.pk} (hooktest) is dead" in mail.subject
    assert "dependency down" in mail.body and "/admin/webhooks/webhookevent/?status__exact=dead" in mail.body

    box = _needs_attention(admin_client)
    assert "Dead webhook events" in box and "Webhook events still retrying" not in box
    (url,) = set(re.findall(r'href="([^"]*status__exact=dead[^"]*)"', box))
    assert "<strong>2</strong>" in box
    listing = admin_client.get(url.replace("&amp;", "&")).content.decode()
    assert "evt_gone" in listing and "evt_gone_too" in listing
