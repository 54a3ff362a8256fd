"""Replay: from the admin (queued) and from the command (processed there), with its filters."""

from io import StringIO

import pytest
from django.core.management import call_command

from audit.models import AuditEntry
from billing.models import Subscription
from billing.statuses import Status
from webhooks.models import WebhookEvent

from .adapter import BROKEN_KEY, event_body

pytestmark = pytest.mark.django_db


def test_replay_from_the_admin(send, admin_client, django_capture_on_commit_callbacks, redis_client, settings):
    settings.WEBHOOK_MAX_ATTEMPTS = 1
    settings.WEBHOOK_RETRY_HORIZON_HOURS = 0
    redis_client.set(BROKEN_KEY, "1")
    event = send(event_body("evt_admin", type="needs_fix", subscription_id="sub_R"))
    event.refresh_from_db()
    assert event.status == WebhookEvent.Status.DEAD
    redis_client.delete(BROKEN_KEY)

    form = {"action": "replay_events", "_selected_action": [event.pk]}
    page = admin_client.post("/admin/webhooks/webhookevent/", form)
    assert 'name="reason"' in page.content.decode()  # the confirmation page asks why
    with django_capture_on_commit_callbacks(execute=True):
        refused = admin_client.post("/admin/webhooks/webhookevent/", {**form, "apply": "1", "reason": "   "})
    assert "This field is required" in refused.content.decode()
    event.refresh_from_db()
    assert event.status == WebhookEvent.Status.DEAD and not AuditEntry.objects.exists()  # nothing done

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post("/admin/webhooks/webhookevent/",
                                     {**form, "apply": "1", "reason": " fix deployed, ticket 31 "}, follow=True)

    assert "queued for replay" in response.content.decode()
    event.refresh_from_db()
    assert event.status == WebhookEvent.Status.PROCESSED
    sub = Subscription.objects.get(provider_subscription_id="sub_R")
    assert sub.status == Status.ACTIVE
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.actor_label, entry.reason, entry.target) == (
        "replay", "admin", "fix deployed, ticket 31", f"webhooks.webhookevent:{event.pk}")
    assert entry.details["status_before"] == "dead"


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
