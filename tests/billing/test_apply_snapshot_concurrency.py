"""Two writers at once, on real PostgreSQL connections in threads: the row lock serializes them."""

import itertools
import threading
from datetime import timedelta
from functools import partial

import pytest
from django.db import connection, transaction

from billing.apply import apply_snapshot
from billing.models import Outbox, StatusChange, Subscription
from billing.snapshots import Cause, CauseKind
from billing.statuses import Status
from tests.factories import T0, snapshot

# Flushing only our apps' tables after each test (not dj-stripe's hundred) keeps these fast.
pytestmark = pytest.mark.django_db(transaction=True, available_apps=["accounts", "billing", "webhooks"])

WEBHOOK = Cause(CauseKind.WEBHOOK)


snap = partial(snapshot, sub_id="sub_c", store_product_id="price_m", user_id="42")


class Holder(threading.Thread):
    """Applies a snapshot inside a transaction it keeps open (row locked) until released."""

    def __init__(self, snapshot):
        super().__init__(daemon=True)
        self.snapshot, self.locked, self.release, self.result, self.error = snapshot, threading.Event(), \
            threading.Event(), None, None

    def run(self):
        try:
            with transaction.atomic():
                self.result = apply_snapshot(self.snapshot, WEBHOOK)
                self.locked.set()
                self.release.wait(10)
        except Exception as exc:  # surfaced by the test
            self.error = exc
            self.locked.set()
        finally:
            connection.close()


class Writer(threading.Thread):
    def __init__(self, snapshot):
        super().__init__(daemon=True)
        self.snapshot, self.done, self.result, self.error = snapshot, threading.Event(), None, None

    def run(self):
        try:
            self.result = apply_snapshot(self.snapshot, WEBHOOK)
        except Exception as exc:
            self.error = exc
        finally:
            self.done.set()
            connection.close()


def run_overlapping(first, second):
    """`second` starts while `first` holds the row; it must wait for `first` to commit."""
    holder, writer = Holder(first), Writer(second)
    holder.start()
    assert holder.locked.wait(10) and holder.error is None
    writer.start()
    blocked = not writer.done.wait(0.5)
    holder.release.set()
    holder.join(10)
    writer.join(10)
    assert holder.error is None and writer.error is None, (holder.error, writer.error)
    return blocked, holder.result, writer.result


def test_second_writer_waits_and_sees_the_first():
    apply_snapshot(snap(Status.ACTIVE, 0, expires_at=T0 + timedelta(days=30)), WEBHOOK)
    blocked, first, second = run_overlapping(snap(Status.CANCELED, 1), snap(Status.ON_GRACE, 2))
    assert blocked, "the second writer did not wait for the row lock"
    assert (first.old_status, first.new_status) == (Status.ACTIVE, Status.CANCELED)
    assert (second.old_status, second.new_status) == (Status.CANCELED, Status.ON_GRACE)
    assert list(StatusChange.objects.order_by("id").values_list("old_status", "new_status")) == [
        ("INACTIVE", "ACTIVE"), ("ACTIVE", "CANCELED"), ("CANCELED", "ON_GRACE")]
    assert [r.payload["newStatus"] for r in Outbox.objects.order_by("id")] == ["ACTIVE", "CANCELED", "ON_GRACE"]


def test_the_same_change_twice_at_once_is_one_change():
    apply_snapshot(snap(Status.ACTIVE, 0), WEBHOOK)
    blocked, first, second = run_overlapping(snap(Status.CANCELED, 1), snap(Status.CANCELED, 1))
    assert blocked
    assert {first.outcome, second.outcome} == {"updated", "unchanged"}
    assert StatusChange.objects.filter(new_status=Status.CANCELED).count() == 1
    assert Outbox.objects.filter(payload__newStatus="CANCELED").count() == 1


def test_no_lost_update_between_writers_of_different_fields():
    apply_snapshot(snap(Status.ACTIVE, 0, expires_at=T0 + timedelta(days=30), auto_renew=True), WEBHOOK)
    new_expiry = T0 + timedelta(days=60)
    run_overlapping(snap(Status.ACTIVE, 1, expires_at=new_expiry), snap(Status.ACTIVE, 2, auto_renew=False))
    sub = Subscription.objects.get()
    assert sub.expires_at == new_expiry and sub.auto_renew is False


def test_an_older_snapshot_arriving_during_a_newer_write_is_ignored():
    apply_snapshot(snap(Status.ACTIVE, 0), WEBHOOK)
    _, _, second = run_overlapping(snap(Status.REVOKED, 5), snap(Status.ACTIVE, 3))
    assert second.outcome == "stale"
    assert Subscription.objects.get().status == Status.REVOKED


def test_two_creators_of_the_same_new_subscription_make_one_row():
    blocked, first, second = run_overlapping(snap(Status.ACTIVE, 0, sub_id="sub_new"),
                                             snap(Status.ACTIVE, 0, sub_id="sub_new"))
    assert blocked, "the second creator did not wait for the first insert"
    assert Subscription.objects.filter(provider_subscription_id="sub_new").count() == 1
    assert {first.outcome, second.outcome} == {"created", "unchanged"}
    assert first.subscription_id == second.subscription_id
    assert StatusChange.objects.count() == 1 and Outbox.objects.count() == 1


def test_many_threads_racing_to_create_and_update():
    statuses = [Status.ACTIVE, Status.CANCELED, Status.ON_GRACE, Status.ON_HOLD, Status.EXPIRED, Status.REVOKED]
    barrier = threading.Barrier(len(statuses))
    errors = []

    def write(i, status):
        try:
            barrier.wait(5)
            apply_snapshot(snap(status, i, sub_id="sub_race"), WEBHOOK)
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=write, args=(i, s)) for i, s in enumerate(statuses)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert not errors
    sub = Subscription.objects.get(provider_subscription_id="sub_race")
    assert sub.last_event_at == T0 + timedelta(minutes=len(statuses) - 1)
    assert sub.status == Status.REVOKED  # the newest store state wins whatever the arrival order
    applied = list(StatusChange.objects.filter(ignored=False).order_by("id").values_list("old_status", "new_status"))
    # every recorded change starts where the previous one ended: none was lost or doubled
    for (_, prev_new), (old, _) in itertools.pairwise(applied):
        assert old == prev_new
    assert Outbox.objects.count() == len(applied)
