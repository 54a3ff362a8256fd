"""Status changes reach the Redis stream: right after commit, and from the beat relay for anything
left behind; a consumer written as in the integration guide of the service we replace works."""

import json
import threading
from datetime import timedelta
from functools import partial

import pytest
import redis
from django.db import connection

from billing import entitlement_cache, outbox
from billing.apply import apply_snapshot
from billing.models import Outbox, Subscription
from billing.snapshots import Cause, CauseKind
from billing.statuses import Status
from billing.tasks import relay_outbox
from tests.factories import T0, ProductFactory, snapshot
from tests.helpers import closed_port, stream_events

WEBHOOK = Cause(CauseKind.WEBHOOK, ref="evt")


snap = partial(snapshot, user_id="1001", store_product_id="price_m", expires_at=T0 + timedelta(days=30))


@pytest.mark.django_db
def test_consumer_from_the_integration_guide(django_capture_on_commit_callbacks, settings):
    ProductFactory(store_product_id="price_m")
    r = redis.Redis.from_url(settings.REDIS_URL, decode_responses=True)
    r.xgroup_create("billing:events", "my-service-consumers", id='0', mkstream=True)
    with django_capture_on_commit_callbacks(execute=True):
        apply_snapshot(snap(Status.ACTIVE), WEBHOOK)
    with django_capture_on_commit_callbacks(execute=True):
        apply_snapshot(snap(Status.CANCELED, 1), WEBHOOK)

    seen = []
    messages = r.xreadgroup("my-service-consumers", "consumer-1", {"billing:events": '>'}, count=10, block=5000)
    for _stream, entries in messages:
        for message_id, data in entries:
            event = json.loads(data['event'])
            seen.append((int(event['userId']), event['oldStatus'], event['newStatus'], event['isSubscribed']))
            r.xack("billing:events", "my-service-consumers", message_id)
    assert seen == [(1001, "INACTIVE", "ACTIVE", True), (1001, "ACTIVE", "CANCELED", True)]
    assert r.xpending("billing:events", "my-service-consumers")["pending"] == 0
    assert not Outbox.objects.filter(published_at__isnull=True).exists()


@pytest.mark.django_db
def test_payload_carries_the_contract_fields(django_capture_on_commit_callbacks, redis_client, settings):
    ProductFactory(store_product_id="price_m", entitlements=["premium"])
    with django_capture_on_commit_callbacks(execute=True):
        apply_snapshot(snap(Status.ACTIVE), WEBHOOK)
    [(_, fields)] = redis_client.xrange(settings.BILLING_EVENTS_STREAM)
    event = json.loads(fields["event"])
    row = Outbox.objects.get()
    sub = Subscription.objects.get()
    assert event == {
        "eventId": str(row.event_id),
        "userId": "1001",
        "oldStatus": "INACTIVE",
        "newStatus": "ACTIVE",
        "provider": "stripe",
        "subscriptionId": "sub_1",
        "billingSubscriptionId": str(sub.pk),
        "productId": "price_m",
        "entitlements": ["premium"],
        "expiresAt": event["expiresAt"],
        "accessEndsAt": event["expiresAt"],
        "isSubscribed": True,
        "environment": "production",
        "occurredAt": T0.isoformat().replace("+00:00", "Z"),
    }
    assert event["expiresAt"].endswith("Z") and event["expiresAt"].startswith(str((T0 + timedelta(days=30)).date()))


@pytest.mark.django_db
def test_is_subscribed_counts_the_users_other_subscriptions(django_capture_on_commit_callbacks):
    apply_snapshot(snap(Status.ACTIVE, sub_id="sub_a"), WEBHOOK)
    apply_snapshot(snap(Status.ACTIVE, sub_id="sub_b"), WEBHOOK)
    apply_snapshot(snap(Status.REVOKED, 1, sub_id="sub_a"), WEBHOOK)
    last = Outbox.objects.order_by("id").last().payload
    assert (last["subscriptionId"], last["newStatus"], last["isSubscribed"]) == ("sub_a", "REVOKED", True)
    apply_snapshot(snap(Status.EXPIRED, 1, sub_id="sub_b"), WEBHOOK)
    assert Outbox.objects.order_by("id").last().payload["isSubscribed"] is False


@pytest.mark.django_db
def test_relay_when_redis_was_down(django_capture_on_commit_callbacks, redis_client, settings):
    with django_capture_on_commit_callbacks(execute=True):
        apply_snapshot(snap(Status.ACTIVE), WEBHOOK)
    assert entitlement_cache.get("1001")[0]["status"] == "ACTIVE"
    up_url = settings.REDIS_URL

    settings.REDIS_URL = f"redis://127.0.0.1:{closed_port()}/0"  # Redis goes down
    with django_capture_on_commit_callbacks(execute=True):
        result = apply_snapshot(snap(Status.REVOKED, 1), WEBHOOK)  # the write itself must not fail
    assert result.new_status == Status.REVOKED
    assert relay_outbox() == 0  # the beat relay cannot reach Redis either
    settings.REDIS_URL = up_url  # Redis is back

    assert Subscription.objects.get().status == Status.REVOKED  # committed state intact
    row = Outbox.objects.get(payload__newStatus="REVOKED")
    # one attempt (after commit); the beat relay then skipped the server its process saw fail just now
    assert row.published_at is None and row.attempts == 1 and "Error" in row.last_error
    assert redis_client.xlen(settings.BILLING_EVENTS_STREAM) == 1
    assert entitlement_cache.get("1001")[0]["status"] == "ACTIVE"  # stale: the refresh could not run

    assert relay_outbox() == 1  # Redis is back
    assert relay_outbox() == 0  # and only once
    row.refresh_from_db()
    assert row.published_at is not None and row.last_error == ""
    events = stream_events()
    assert [e["newStatus"] for e in events] == ["ACTIVE", "REVOKED"]
    assert events[1]["eventId"] == str(row.event_id)
    # the relay also repaired the user's cached entitlements
    assert entitlement_cache.get("1001")[0]["status"] == "REVOKED"


@pytest.mark.django_db
def test_stream_length_is_capped(redis_client, settings):
    settings.BILLING_EVENTS_STREAM_MAXLEN = 10
    statuses = [Status.ACTIVE, Status.CANCELED]
    for i in range(150):  # after-commit hooks do not run here: the rows wait for the relay
        apply_snapshot(snap(statuses[i % 2], i), WEBHOOK)
    assert relay_outbox() == 150
    # MAXLEN ~ trims whole stream nodes (100 entries by default): bounded, not exact
    assert 10 <= redis_client.xlen(settings.BILLING_EVENTS_STREAM) <= 110 < 150


def waiting_events(settings, count: int, *, first_user: int) -> None:
    """Status changes whose after-commit relay failed (Redis down): they wait in the outbox."""
    up_url = settings.REDIS_URL
    settings.REDIS_URL = f"redis://127.0.0.1:{closed_port()}/0"
    for i in range(count):
        apply_snapshot(snap(Status.ACTIVE, sub_id=f"sub_{i}", user_id=str(first_user + i)), WEBHOOK)
    settings.REDIS_URL = up_url


@pytest.mark.django_db(transaction=True, available_apps=["accounts", "billing", "webhooks"])
def test_two_relays_at_once_publish_each_event_exactly_once(redis_client, settings):
    waiting_events(settings, 60, first_user=2000)
    assert Outbox.objects.filter(published_at__isnull=True).count() == 60

    barrier = threading.Barrier(2)
    counts, errors = [], []

    def relay():
        try:
            barrier.wait(5)
            counts.append(outbox.publish_pending(limit=4))
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=relay) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors and sum(counts) == 60
    events = stream_events()
    assert len(events) == 60 and len({e["eventId"] for e in events}) == 60
    assert not Outbox.objects.filter(published_at__isnull=True).exists()


@pytest.mark.django_db(transaction=True, available_apps=["accounts", "billing", "webhooks"])
def test_a_relay_skips_rows_another_relay_holds_instead_of_waiting_for_them(redis_client, settings):
    import time

    import psycopg

    waiting_events(settings, 6, first_user=2100)
    held = list(Outbox.objects.order_by("id").values_list("pk", flat=True)[:3])
    db = connection.settings_dict
    with psycopg.connect(host=db["HOST"] or "127.0.0.1", port=db["PORT"] or 5432, user=db["USER"],
                         password=db["PASSWORD"], dbname=db["NAME"]) as other:  # a relay in the middle of its work
        other.execute("SELECT id FROM billing_outbox WHERE id = ANY(%s) FOR UPDATE", [held])
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '3s'")  # a relay that waited for the lock would fail, not hang
        started = time.monotonic()
        assert outbox.publish_pending() == 3  # the others, at once
        assert time.monotonic() - started < 2
        other.rollback()
    assert sorted(Outbox.objects.filter(published_at__isnull=True).values_list("pk", flat=True)) == held
    assert outbox.publish_pending() == 3  # released: published now, each once
    assert redis_client.xlen(settings.BILLING_EVENTS_STREAM) == 6
