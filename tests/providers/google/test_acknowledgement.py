"""Acknowledgement: after the user link is settled, never while pending, retried by the beat task
well inside Google's 3-day deadline, and visible to support when it is close."""

from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from billing.apply import subscription_link_subscriber
from billing.models import Subscription
from billing.providers.base import TransientError
from billing.providers.google import selectors, tasks
from billing.snapshots import Cause, CauseKind
from tests.factories import SubscriberFactory

from .helpers import load_sequence, process, token_of

pytestmark = pytest.mark.django_db


def _first_purchase(user_id="42"):
    step = load_sequence("06_purchase_grace_hold_recover.json", user_id=user_id)[0]
    return token_of(step), step


def test_acknowledged_after_linking_with_the_product_id(adapter, google):
    token, step = _first_purchase()
    google.set_purchase(token, step["subscriptionPurchaseV2"])
    process(adapter, google, step["developerNotification"])
    (ack,) = google.calls_of("acknowledge")
    assert ack["product"] == "session_pro" and ack["token"] == token and ack["body"] == {}
    sub = Subscription.objects.get(provider_subscription_id=token)
    assert sub.acknowledged_at is not None and sub.subscriber.external_id == "42"
    assert sub.acknowledgement_due_at.isoformat() == "2025-10-13T02:32:51.206000+00:00"  # startTime + 3 days
    assert [c["method"] for c in google.calls] == ["get", "acknowledge"]


def test_failed_acknowledgement_is_retried_by_the_beat_task(adapter, google):
    token, step = _first_purchase()
    purchase = step["subscriptionPurchaseV2"]
    purchase["startTime"] = (timezone.now() - timedelta(hours=70)).isoformat()  # 2 hours before the deadline
    google.set_purchase(token, purchase)
    google.fail_next("acknowledge", 503)
    with pytest.raises(TransientError):  # the webhook event is retried; the state is applied already
        process(adapter, google, step["developerNotification"])
    sub = Subscription.objects.get(provider_subscription_id=token)
    assert sub.status == "ACTIVE" and sub.acknowledged_at is None
    assert list(selectors.subscriptions_awaiting_acknowledgement(due_within=timedelta(hours=24))) == [sub]

    report = tasks.acknowledge_due()
    assert report["acknowledged"] == 1
    sub.refresh_from_db()
    assert sub.acknowledged_at is not None
    assert len(google.calls_of("acknowledge")) == 2
    assert list(selectors.subscriptions_awaiting_acknowledgement()) == []
    assert tasks.acknowledge_due() == {"acknowledged": 0, "recorded": 0, "waiting": 0, "failed": 0}


def test_beat_task_is_scheduled():
    entry = django_settings.CELERY_BEAT_SCHEDULE["google-acknowledge-due"]
    assert entry["task"] == tasks.acknowledge_due.name and entry["schedule"] <= 3600


def test_orphan_waits_for_a_user_then_is_acknowledged(adapter, google, settings):
    token, step = _first_purchase()
    purchase = step["subscriptionPurchaseV2"]
    del purchase["externalAccountIdentifiers"]
    purchase["startTime"] = timezone.now().isoformat()
    google.set_purchase(token, purchase)
    process(adapter, google, step["developerNotification"])
    sub = Subscription.objects.get(provider_subscription_id=token)
    assert sub.subscriber is None and sub.acknowledged_at is None
    assert google.calls_of("acknowledge") == []
    subscription_link_subscriber(subscription_id=sub.pk, subscriber=SubscriberFactory(external_id="9"),
                                 cause=Cause(CauseKind.STAFF, note="support linked"))
    assert tasks.acknowledge_due()["acknowledged"] == 1
    sub.refresh_from_db()
    assert sub.acknowledged_at is not None


def test_resubscribe_from_play_is_linked_through_the_expired_token_before_acknowledging(adapter, google):
    steps = load_sequence("03_renew_x2_cancel_expire_resubscribe_grace_hold_expire.json", user_id="31")
    old = steps[0]
    google.set_purchase(token_of(old), old["subscriptionPurchaseV2"])
    process(adapter, google, old["developerNotification"])
    new = steps[5]
    purchase = new["subscriptionPurchaseV2"]
    del purchase["externalAccountIdentifiers"]  # a Play subscription-center resubscribe carries none
    purchase["outOfAppPurchaseContext"] = {"expiredPurchaseToken": token_of(old)}
    google.set_purchase(token_of(new), purchase)
    process(adapter, google, new["developerNotification"])
    sub = Subscription.objects.get(provider_subscription_id=token_of(new))
    assert sub.subscriber.external_id == "31" and sub.acknowledged_at is not None
    assert "outOfAppPurchaseContext" not in google.purchases[token_of(new)]  # cleared by the acknowledgement


def test_store_already_acknowledged_is_recorded_by_the_beat(adapter, google):
    token, step = _first_purchase()
    step["subscriptionPurchaseV2"]["startTime"] = timezone.now().isoformat()
    google.set_purchase(token, step["subscriptionPurchaseV2"])
    google.fail_next("acknowledge", 500)
    with pytest.raises(TransientError):
        process(adapter, google, step["developerNotification"])
    google.purchases[token]["acknowledgementState"] = "ACKNOWLEDGEMENT_STATE_ACKNOWLEDGED"  # e.g. the app did
    assert tasks.acknowledge_due()["recorded"] == 1
    assert Subscription.objects.get(provider_subscription_id=token).acknowledged_at is not None
    assert len(google.calls_of("acknowledge")) == 1
