"""After-commit work is coalesced per transaction: a transaction applying several snapshots publishes
each of its events exactly once, in one relay call, and refreshes each user's cached entitlements; work
rolled back with a savepoint is not published, work added after the rollback is."""

from datetime import timedelta
from functools import partial

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from billing import entitlement_cache
from billing.apply import apply_snapshot
from billing.models import Outbox
from billing.snapshots import Cause, CauseKind
from billing.statuses import Status
from tests.factories import T0, ProductFactory, snapshot
from tests.helpers import stream_events

WEBHOOK = Cause(CauseKind.WEBHOOK, ref="evt")
DB = pytest.mark.django_db(transaction=True, available_apps=["accounts", "billing", "webhooks"])


snap = partial(snapshot, user_id="1001", store_product_id="price_m", expires_at=T0 + timedelta(days=30))


@DB
def test_one_transaction_of_several_snapshots_publishes_each_event_once_and_refreshes_each_user(
        redis_client, settings):
    ProductFactory(store_product_id="price_m")
    with CaptureQueriesContext(connection) as queries, transaction.atomic():
        for i in range(5):
            apply_snapshot(snap(Status.ACTIVE, sub_id=f"sub_{i}", user_id=str(3000 + i)), WEBHOOK)
        apply_snapshot(snap(Status.CANCELED, 1, sub_id="sub_0", user_id="3000"), WEBHOOK)
        assert stream_events() == []  # nothing leaves before the commit

    events = stream_events()
    rows = list(Outbox.objects.order_by("id"))
    assert [e["eventId"] for e in events] == [str(r.event_id) for r in rows] and len(rows) == 6
    assert [(e["userId"], e["newStatus"]) for e in events][-2:] == [("3004", "ACTIVE"), ("3000", "CANCELED")]
    assert all(r.published_at is not None for r in rows)
    claims = [q for q in queries.captured_queries if "SKIP LOCKED" in q["sql"] and "billing_outbox" in q["sql"]]
    assert len(claims) == 1  # one relay call for the whole transaction
    assert entitlement_cache.get("3000")[0]["status"] == "CANCELED"
    assert [entitlement_cache.get(str(3000 + i))[0]["status"] for i in range(1, 5)] == ["ACTIVE"] * 4


@DB
def test_a_rolled_back_savepoint_is_not_published_and_later_work_still_is(redis_client, settings):
    ProductFactory(store_product_id="price_m")
    with transaction.atomic():
        try:
            with transaction.atomic():  # the first work of the transaction, rolled back
                apply_snapshot(snap(Status.ACTIVE, sub_id="sub_gone", user_id="4000"), WEBHOOK)
                raise RuntimeError("the event failed")
        except RuntimeError:
            pass
        apply_snapshot(snap(Status.ACTIVE, sub_id="sub_kept", user_id="4001"), WEBHOOK)

    events = stream_events()
    assert [(e["userId"], e["subscriptionId"]) for e in events] == [("4001", "sub_kept")]
    assert entitlement_cache.get("4001")[0]["status"] == "ACTIVE"
    assert entitlement_cache.get("4000") is None
    assert not Outbox.objects.filter(published_at__isnull=True).exists()


@DB
def test_a_refresh_that_read_earlier_never_overwrites_a_newer_one(redis_client, settings):
    ProductFactory(store_product_id="price_m")
    apply_snapshot(snap(Status.ACTIVE, user_id="5000"), WEBHOOK)
    assert entitlement_cache.get("5000")[0]["status"] == "ACTIVE"
    # A concurrent refresh that took its version later (so read later) has already written:
    newer = int(redis_client.get(entitlement_cache.VERSION_COUNTER)) + 1000
    newer_view = [{"status": "PAUSED", "entitlements": ["newer view"]}]
    redis_client.set(entitlement_cache.key_for("5000"), entitlement_cache.encode("5000", newer_view))
    redis_client.set(entitlement_cache.VERSION_KEY.format("5000"), newer)
    apply_snapshot(snap(Status.CANCELED, 1, user_id="5000"), WEBHOOK)  # its refresh holds a lower version
    assert entitlement_cache.get("5000") == newer_view

    redis_client.set(entitlement_cache.VERSION_KEY.format("5000"), 1)  # an older writer's mark
    apply_snapshot(snap(Status.REVOKED, 2, user_id="5000"), WEBHOOK)
    assert entitlement_cache.get("5000")[0]["status"] == "REVOKED"
    assert redis_client.ttl(entitlement_cache.key_for("5000")) > 0
