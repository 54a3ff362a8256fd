from datetime import timedelta

import pytest
from django.utils import timezone

from billing.models import Outbox, StatusChange, Subscription, Transaction
from billing.services import apply_snapshot
from billing.snapshots import Cause, CauseKind, Snapshot, TransactionKind, TransactionRecord
from billing.statuses import Status

pytestmark = pytest.mark.django_db


def snap(status, at, **kw):
    return Snapshot(provider="stripe", provider_subscription_id="sub_1", status=status, observed_at=at,
                    store_product_id="price_m", user_id="42", **kw)


def test_create_update_and_stale():
    t0 = timezone.now() - timedelta(hours=1)
    r = apply_snapshot(snap(Status.ACTIVE, t0, expires_at=t0 + timedelta(days=30), transactions=(
        TransactionRecord("in_1", TransactionKind.PURCHASE, t0, 999, "usd"),)), Cause(CauseKind.WEBHOOK, "e1"))
    assert r.outcome == "created" and r.status_changed
    sub = Subscription.objects.get()
    assert sub.subscriber.external_id == "42" and sub.product.store_product_id == "price_m"
    r2 = apply_snapshot(snap(Status.CANCELED, t0 + timedelta(minutes=5)), Cause(CauseKind.WEBHOOK, "e2"))
    assert r2.outcome == "updated" and r2.new_status == Status.CANCELED
    r3 = apply_snapshot(snap(Status.ACTIVE, t0 + timedelta(minutes=1), transactions=(
        TransactionRecord("in_1", TransactionKind.PURCHASE, t0, 999, "usd"),)), Cause(CauseKind.WEBHOOK, "e3"))
    assert r3.outcome == "stale"
    sub.refresh_from_db()
    assert sub.status == Status.CANCELED
    assert StatusChange.objects.filter(ignored=True).count() == 1
    assert Transaction.objects.count() == 1
    assert Outbox.objects.count() == 2
