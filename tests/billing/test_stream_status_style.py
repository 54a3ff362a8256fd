"""BILLING_EVENTS_STATUS_STYLE: `simple` makes the stream say only whether the user is entitled
(`ACTIVE`) or not (`EXPIRED`), so that the integration guide's consumer, which acts on those two only,
never misses a refund, a hold or a revocation, and never reads a loss while the user is still
entitled elsewhere. `detailed` (the default) publishes the subscription's own status."""

import contextlib
import json
import os
import subprocess
import sys
from datetime import timedelta
from functools import partial
from pathlib import Path

import pytest
import redis

from billing.apply import apply_snapshot
from billing.snapshots import Cause, CauseKind
from billing.statuses import Status
from tests.factories import T0, ProductFactory, snapshot
from tests.helpers import stream_events

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
WEBHOOK = Cause(CauseKind.WEBHOOK, ref="evt")
snap = partial(snapshot, user_id="1001", store_product_id="price_m", expires_at=T0 + timedelta(days=30))


@pytest.fixture
def apply(django_capture_on_commit_callbacks):
    """Apply a store's state as a webhook would, with the after-commit relay to the stream."""
    ProductFactory(store_product_id="price_m", entitlements=["premium"])

    def run(status, minutes, sub_id="sub_1"):
        with django_capture_on_commit_callbacks(execute=True):
            apply_snapshot(snap(status, minutes, sub_id=sub_id), WEBHOOK)
    return run


def guide_consumer(settings) -> dict[int, bool]:
    """The integration guide's consumer, as written: it grants on ACTIVE, takes away on EXPIRED, and
    ignores every other status. Returns what it believes of each user."""
    r = redis.Redis.from_url(settings.REDIS_URL, decode_responses=True)
    with contextlib.suppress(redis.ResponseError):
        r.xgroup_create(settings.BILLING_EVENTS_STREAM, "guide", id="0", mkstream=True)
    believed = {}
    for _stream, entries in r.xreadgroup("guide", "c1", {settings.BILLING_EVENTS_STREAM: ">"}, count=100) or []:
        for message_id, data in entries:
            event = json.loads(data["event"])
            if event["newStatus"] == "ACTIVE":
                believed[int(event["userId"])] = True
            elif event["newStatus"] == "EXPIRED":
                believed[int(event["userId"])] = False
            r.xack(settings.BILLING_EVENTS_STREAM, "guide", message_id)
    return believed


@pytest.mark.parametrize("loss", [Status.REVOKED, Status.ON_HOLD, Status.PAUSED, Status.EXPIRED])
def test_simple_a_loss_reaches_the_guides_consumer_as_expired(settings, apply, loss):
    settings.BILLING_EVENTS_STATUS_STYLE = "simple"
    apply(Status.ACTIVE, 0)
    assert guide_consumer(settings) == {1001: True}

    apply(loss, 1)

    last = stream_events()[-1]
    assert (last["oldStatus"], last["newStatus"], last["isSubscribed"]) == ("ACTIVE", "EXPIRED", False)
    assert guide_consumer(settings) == {1001: False}


def test_simple_a_refund_while_entitled_elsewhere_reads_active(settings, apply):
    settings.BILLING_EVENTS_STATUS_STYLE = "simple"
    apply(Status.ACTIVE, 0, sub_id="sub_a")
    apply(Status.ACTIVE, 0, sub_id="sub_b")

    apply(Status.REVOKED, 1, sub_id="sub_a")

    last = stream_events()[-1]
    assert (last["subscriptionId"], last["newStatus"], last["isSubscribed"]) == ("sub_a", "ACTIVE", True)
    assert [e["newStatus"] for e in stream_events()] == ["ACTIVE", "ACTIVE", "ACTIVE"]
    assert guide_consumer(settings) == {1001: True}
    # the last subscription going too is a loss
    apply(Status.REVOKED, 2, sub_id="sub_b")
    assert stream_events()[-1]["newStatus"] == "EXPIRED"
    assert guide_consumer(settings) == {1001: False}


@pytest.mark.parametrize("kept", [Status.CANCELED, Status.ON_GRACE, Status.TRIAL])
def test_simple_an_entitled_status_reads_active(settings, apply, kept):
    settings.BILLING_EVENTS_STATUS_STYLE = "simple"
    apply(Status.ACTIVE, 0)
    apply(kept, 1)
    assert [(e["oldStatus"], e["newStatus"]) for e in stream_events()] == [("EXPIRED", "ACTIVE"), ("ACTIVE", "ACTIVE")]


def test_simple_keeps_every_other_field(settings, apply):
    settings.BILLING_EVENTS_STATUS_STYLE = "simple"
    apply(Status.ACTIVE, 0)
    [event] = stream_events()
    assert set(event) == {"eventId", "userId", "oldStatus", "newStatus", "provider", "subscriptionId",
                          "billingSubscriptionId", "productId", "entitlements", "expiresAt", "accessEndsAt",
                          "isSubscribed", "environment", "occurredAt"}
    assert (event["provider"], event["entitlements"], event["userId"]) == ("stripe", ["premium"], "1001")


def test_detailed_is_the_default_and_publishes_the_subscriptions_status(settings, apply):
    assert settings.BILLING_EVENTS_STATUS_STYLE == "detailed"
    apply(Status.ACTIVE, 0, sub_id="sub_a")
    apply(Status.ACTIVE, 0, sub_id="sub_b")
    apply(Status.REVOKED, 1, sub_id="sub_a")
    apply(Status.ON_HOLD, 2, sub_id="sub_b")
    assert [(e["oldStatus"], e["newStatus"], e["isSubscribed"]) for e in stream_events()] == [
        ("INACTIVE", "ACTIVE", True), ("INACTIVE", "ACTIVE", True), ("ACTIVE", "REVOKED", True),
        ("ACTIVE", "ON_HOLD", False)]


def test_an_unknown_style_stops_the_service_at_start():
    env = {**os.environ, "BILLING_EVENTS_STATUS_STYLE": "compact", "DJANGO_SETTINGS_MODULE": "config.settings"}
    result = subprocess.run([sys.executable, "-c", "import django; django.setup()"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "BILLING_EVENTS_STATUS_STYLE must be detailed or simple, not 'compact'" in result.stderr
