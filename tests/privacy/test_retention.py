"""The retention job prunes only what the RETENTION_* settings say, never the ledger or the status
history, and a store's late redelivery of a pruned event is still recognised as a duplicate."""

import json
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from billing.models import Outbox, StatusChange, Transaction
from billing.redis_client import get_redis
from outgoing.models import Attempt, Delivery, Endpoint, Event, FanoutCursor
from privacy.retention import prune_retained
from privacy.tasks import prune_retained as prune_task
from tests.helpers import deliver
from tests.privacy.conftest import make_customer
from tests.webhooks.adapter import SIGNATURE_HEADER, event_body, sign
from webhooks.models import WebhookEvent

pytestmark = pytest.mark.django_db

Status = WebhookEvent.Status


def ago(**kw):
    return timezone.now() - timedelta(**kw)


def hooktest(event_id: str, **fields):
    body = event_body(event_id, **fields)
    return deliver("hooktest", body, {SIGNATURE_HEADER: sign(body)})


def age(event: WebhookEvent, **kw) -> None:
    WebhookEvent.objects.filter(pk=event.pk).update(received_at=ago(**kw), processed_at=ago(**kw))


def test_old_processed_bodies_are_emptied_and_failed_dead_and_recent_ones_kept(settings):
    settings.RETENTION_WEBHOOK_BODY_DAYS = 30
    events = {name: hooktest(f"evt_{name}", subscription_id=f"sub_{name}").event
              for name in ("old", "recent", "dead", "failed", "ignored")}
    for name in ("old", "dead", "failed", "ignored"):
        age(events[name], days=31)
    age(events["recent"], days=29)
    WebhookEvent.objects.filter(pk=events["dead"].pk).update(status=Status.DEAD)
    WebhookEvent.objects.filter(pk=events["failed"].pk).update(status=Status.FAILED)
    WebhookEvent.objects.filter(pk=events["ignored"].pk).update(status=Status.IGNORED)

    assert prune_retained().webhook_bodies_emptied == 2
    rows = {name: WebhookEvent.objects.get(pk=e.pk) for name, e in events.items()}
    for name in ("old", "ignored"):
        assert (bytes(rows[name].body), rows[name].headers, rows[name].payload) == (b"", {}, {})
        assert "retention" in rows[name].payload_problem and rows[name].dedupe_key == f"evt_{name}"
    for name in ("recent", "dead", "failed"):
        assert json.loads(bytes(rows[name].body))["id"] == f"evt_{name}" and rows[name].headers
    assert prune_retained().webhook_bodies_emptied == 0  # nothing twice


def test_a_late_redelivery_after_pruning_is_still_a_duplicate(settings):
    settings.RETENTION_WEBHOOK_BODY_DAYS = 1
    first = hooktest("evt_late", status="ACTIVE")
    history = StatusChange.objects.count()
    age(first.event, days=5)  # within every store's retry window (Pub/Sub: 7 days)
    assert prune_retained().webhook_bodies_emptied == 1
    assert bytes(WebhookEvent.objects.get(pk=first.event.pk).body) == b""

    again = hooktest("evt_late", status="ACTIVE")  # the store retries: same event id
    assert again.response.status_code == first.response.status_code
    assert again.event is None  # stored nothing new
    assert WebhookEvent.objects.filter(dedupe_key="evt_late").count() == 1
    assert StatusChange.objects.count() == history  # no second effect


def test_event_rows_go_only_after_their_own_retention(settings):
    settings.RETENTION_WEBHOOK_EVENT_DAYS = 8
    kept, gone, dead = (hooktest(f"evt_{n}", subscription_id=f"sub_{n}").event for n in ("kept", "gone", "dead"))
    age(kept, days=7)
    age(gone, days=9)
    age(dead, days=9)
    WebhookEvent.objects.filter(pk=dead.pk).update(status=Status.DEAD)
    assert prune_retained().webhook_events_deleted == 1
    assert set(WebhookEvent.objects.values_list("dedupe_key", flat=True)) == {"evt_kept", "evt_dead"}


def test_published_outbox_rows_go_unpublished_and_recent_ones_stay(settings, django_capture_on_commit_callbacks):
    settings.RETENTION_OUTBOX_DAYS = 30
    with django_capture_on_commit_callbacks(execute=True):
        for i in range(5):
            hooktest(f"evt_o{i}", subscription_id=f"sub_o{i}", user_id=str(700 + i))
    rows = list(Outbox.objects.order_by("pk"))
    assert len(rows) == 5 and all(r.published_at for r in rows)
    Outbox.objects.filter(pk__in=[r.pk for r in rows[:4]]).update(created_at=ago(days=31))
    Outbox.objects.filter(pk=rows[3].pk).update(published_at=None)  # waiting for the relay: kept
    settings.RETENTION_BATCH_SIZE = 2  # several batches

    assert prune_retained().outbox_rows_deleted == 3
    assert list(Outbox.objects.order_by("pk").values_list("pk", flat=True)) == [rows[3].pk, rows[4].pk]


def test_outbox_rows_the_outgoing_fan_out_has_not_passed_stay(settings, django_capture_on_commit_callbacks):
    settings.RETENTION_OUTBOX_DAYS = 30
    with django_capture_on_commit_callbacks(execute=True):
        hooktest("evt_f1", subscription_id="sub_f1", user_id="801")
        hooktest("evt_f2", subscription_id="sub_f2", user_id="802")
    first, second = Outbox.objects.order_by("pk")
    Outbox.objects.update(created_at=ago(days=31))
    FanoutCursor.objects.create(outbox_id=first.pk)
    assert prune_retained().outbox_rows_deleted == 1
    assert list(Outbox.objects.values_list("pk", flat=True)) == [second.pk]


def test_outgoing_deliveries_delivered_go_dead_ones_stay(settings):
    settings.RETENTION_OUTGOING_DAYS = 30
    endpoint = Endpoint.objects.create(url="https://consumer.example/hook")
    FanoutCursor.objects.create(outbox_id=100)
    old = {}
    for i, status in enumerate(("delivered", "dead", "pending")):
        event = Event.objects.create(outbox_id=i + 1, event_id=f"00000000-0000-0000-0000-00000000000{i}",
                                     payload={"i": i}, outbox_created_at=ago(days=40))
        old[status] = Delivery.objects.create(endpoint=endpoint, event=event, status=status)
        Attempt.objects.create(delivery=old[status], number=1, started_at=ago(days=40), duration_ms=5, ok=True)
    orphan = Event.objects.create(outbox_id=9, event_id="00000000-0000-0000-0000-000000000009", payload={},
                                  outbox_created_at=ago(days=40))  # no endpoint wanted it
    Delivery.objects.update(created_at=ago(days=40))
    Event.objects.update(created_at=ago(days=40))

    report = prune_retained()
    assert (report.outgoing_deliveries_deleted, report.outgoing_events_deleted) == (1, 2)
    assert set(Delivery.objects.values_list("status", flat=True)) == {"dead", "pending"}
    assert Attempt.objects.count() == 2
    assert not Event.objects.filter(pk=orphan.pk).exists()


def test_the_stream_is_trimmed_by_age(settings):
    settings.RETENTION_STREAM_DAYS = 30
    client = get_redis()
    old_ms = int(ago(days=31).timestamp() * 1000)
    for i in range(3):
        client.xadd(settings.BILLING_EVENTS_STREAM, {"event": "{}"}, id=f"{old_ms + i}-0")
    client.xadd(settings.BILLING_EVENTS_STREAM, {"event": "{}"})  # now
    assert prune_retained().stream_entries_trimmed == 3
    assert client.xlen(settings.BILLING_EVENTS_STREAM) == 1


def test_rejected_request_counters_past_their_hours_go(settings):
    settings.RETENTION_REJECTED_COUNTERS_HOURS = 48
    client = get_redis()
    old, recent = (f"webhooks:rejected:{ago(hours=h):%Y%m%d%H}" for h in (50, 30))
    for key in (old, recent):
        client.hset(key, "stripe|bad_signature", 1)
    assert prune_retained().rejected_counters_deleted == 1
    assert client.exists(recent) and not client.exists(old)


def test_the_ledger_and_the_status_history_are_never_touched(settings, django_capture_on_commit_callbacks):
    for name in ("RETENTION_WEBHOOK_BODY_DAYS", "RETENTION_OUTBOX_DAYS", "RETENTION_STREAM_DAYS",
                 "RETENTION_OUTGOING_DAYS"):
        setattr(settings, name, 1)
    settings.RETENTION_WEBHOOK_EVENT_DAYS = 8
    with django_capture_on_commit_callbacks(execute=True):
        make_customer(live=False)
    Transaction.objects.update(occurred_at=ago(days=900), recorded_at=ago(days=900))
    StatusChange.objects.update(recorded_at=ago(days=900), occurred_at=ago(days=900))
    WebhookEvent.objects.update(received_at=ago(days=900), processed_at=ago(days=900))
    Outbox.objects.update(created_at=ago(days=900))
    ledger = list(Transaction.objects.order_by("pk").values())
    history = list(StatusChange.objects.order_by("pk").values())

    report = prune_task()
    assert report["webhook_events_deleted"] == 2 and report["outbox_rows_deleted"] == 2  # the dead one stays
    assert list(Transaction.objects.order_by("pk").values()) == ledger
    assert list(StatusChange.objects.order_by("pk").values()) == history


def test_the_beat_job_is_scheduled_daily_on_the_slow_queue():
    job = settings.CELERY_BEAT_SCHEDULE["privacy-prune-retained"]
    assert job["task"] == "privacy.tasks.prune_retained" and job["schedule"] == 24 * 3600.0
    assert job["options"]["queue"] == "slow"
