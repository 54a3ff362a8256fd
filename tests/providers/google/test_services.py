"""Google Play's own writes (services.py). Acknowledgement: after the user link is settled, never
while pending, retried by the beat task well inside Google's 3-day deadline, and visible to support
when it is close. Staff actions at Google (revoke with a refund, defer the renewal): the store first,
then the purchase re-read and applied with the staff member and reason."""

from datetime import timedelta

import pytest
import time_machine
from django.conf import settings as django_settings
from django.utils import timezone

from billing.apply import subscription_link_subscriber
from billing.models import Subscription
from billing.providers.google import selectors, services, tasks
from billing.snapshots import Cause, CauseKind
from tests.factories import SubscriberFactory, SubscriptionFactory, UserFactory
from tests.fakes.google import rfc3339
from tests.helpers import drain
from webhooks.models import WebhookEvent

from .conftest import load_sequence, push, subscription_notification, token_of

pytestmark = pytest.mark.django_db


def _first_purchase(user_id="42"):
    step = load_sequence("06_purchase_grace_hold_recover.json", user_id=user_id)[0]
    return token_of(step), step


def test_acknowledged_after_linking_with_the_product_id(google):
    token, step = _first_purchase()
    google.set_purchase(token, step["subscriptionPurchaseV2"])
    push(google, step["developerNotification"])
    (ack,) = google.calls_of("acknowledge")
    assert ack["product"] == "session_pro" and ack["token"] == token and ack["body"] == {}
    sub = Subscription.objects.get(provider_subscription_id=token)
    assert sub.acknowledged_at is not None and sub.subscriber.external_id == "42"
    assert sub.acknowledgement_due_at.isoformat() == "2025-10-13T02:32:51.206000+00:00"  # startTime + 3 days
    assert [c["method"] for c in google.calls] == ["get", "acknowledge"]


def test_a_purchase_whose_processing_keeps_failing_is_acknowledged_before_googles_deadline(google):
    token, step = _first_purchase()
    bought = timezone.now()
    google.set_purchase(token, {**step["subscriptionPurchaseV2"], "startTime": rfc3339(bought)})
    google.fail_next("get", *[503] * 500)  # reading the purchase keeps failing; acknowledging works
    acknowledged_at = None
    with time_machine.travel(bought, tick=True) as clock:
        event = push(google, subscription_notification(token, 4)).event
        while acknowledged_at is None and timezone.now() < bought + timedelta(days=3):
            assert event.status == "received", event.outcome  # retried, never dead meanwhile
            clock.move_to(event.next_attempt_at)
            drain()
            event.refresh_from_db()
            if google.calls_of("acknowledge"):
                acknowledged_at = timezone.now()
        assert acknowledged_at is not None, "not acknowledged within Google's 3 days"
        # in time, and not before the usual path had a day to do it (after the user link, never pending)
        assert timedelta(hours=24) <= acknowledged_at - bought <= timedelta(hours=26)
        (ack,) = google.calls_of("acknowledge")
        assert (ack["token"], ack["product"]) == (token, "session_pro")
        assert "acknowledged at Google from the notification" in event.done_while_failing
        assert not Subscription.objects.exists()  # still failing: nothing applied

        google.stop_failing("get")  # Google's read works again: the event is processed as usual
        clock.move_to(event.next_attempt_at)
        drain()
    event.refresh_from_db()
    assert event.status == "processed", event.error
    sub = Subscription.objects.get(provider_subscription_id=token)
    assert sub.status == "ACTIVE" and sub.acknowledged_at is not None and sub.subscriber.external_id == "42"
    assert len(google.calls_of("acknowledge")) == 1  # Google says it is acknowledged: not asked again


def test_a_purchase_whose_processing_fails_for_good_is_acknowledged_at_once(google):
    token, step = _first_purchase()
    unreadable = {**step["subscriptionPurchaseV2"], "subscriptionState": "SUBSCRIPTION_STATE_UNSPECIFIED"}
    google.set_purchase(token, unreadable)  # our mapping refuses it: a permanent failure
    event = push(google, subscription_notification(token, 4)).event
    assert event.status == "failed"  # no retry will come: the sale is kept now, the fix and replay follow
    (ack,) = google.calls_of("acknowledge")
    assert (ack["token"], ack["product"]) == (token, "session_pro")
    assert "acknowledged at Google" in WebhookEvent.objects.get(pk=event.pk).done_while_failing


def test_a_purchase_google_does_not_know_is_not_acknowledged_from_its_notification(google):
    event = push(google, subscription_notification("tok-gone", 4)).event  # the fake answers 410
    assert event.status == "failed"
    assert google.calls_of("acknowledge") == [] and event.done_while_failing == ""


def test_failed_acknowledgement_is_retried_by_the_beat_task(google):
    token, step = _first_purchase()
    purchase = step["subscriptionPurchaseV2"]
    purchase["startTime"] = (timezone.now() - timedelta(hours=70)).isoformat()  # 2 hours before the deadline
    google.set_purchase(token, purchase)
    google.fail_next("acknowledge", 503)
    event = push(google, step["developerNotification"]).event
    # the webhook event is retried; the state is applied already
    assert event.status == "received" and event.next_attempt_at is not None
    assert "follow-up failed" in event.error and "Google answered 503" in event.error
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


def test_beat_task_does_nothing_while_google_play_is_not_configured(google, settings):
    token, step = _first_purchase()
    step["subscriptionPurchaseV2"]["startTime"] = timezone.now().isoformat()
    google.set_purchase(token, step["subscriptionPurchaseV2"])
    google.fail_next("acknowledge", 503)
    push(google, step["developerNotification"])
    settings.GOOGLE_SERVICE_ACCOUNT_FILE = ""
    assert tasks.acknowledge_due() == {"acknowledged": 0, "recorded": 0, "waiting": 0, "failed": 0}
    assert len(google.calls) == 2  # the push's get and its failed acknowledgement only
    assert Subscription.objects.get(provider_subscription_id=token).acknowledged_at is None


def test_orphan_waits_for_a_user_then_is_acknowledged(google, settings):
    token, step = _first_purchase()
    purchase = step["subscriptionPurchaseV2"]
    del purchase["externalAccountIdentifiers"]
    purchase["startTime"] = timezone.now().isoformat()
    google.set_purchase(token, purchase)
    push(google, step["developerNotification"])
    sub = Subscription.objects.get(provider_subscription_id=token)
    assert sub.subscriber is None and sub.acknowledged_at is None
    assert google.calls_of("acknowledge") == []
    subscription_link_subscriber(subscription_id=sub.pk, subscriber=SubscriberFactory(external_id="9"),
                                 cause=Cause(CauseKind.STAFF, note="support linked"))
    assert tasks.acknowledge_due()["acknowledged"] == 1
    sub.refresh_from_db()
    assert sub.acknowledged_at is not None


def test_resubscribe_from_play_is_linked_through_the_expired_token_before_acknowledging(google):
    steps = load_sequence("03_renew_x2_cancel_expire_resubscribe_grace_hold_expire.json", user_id="31")
    old = steps[0]
    google.set_purchase(token_of(old), old["subscriptionPurchaseV2"])
    push(google, old["developerNotification"])
    new = steps[5]
    purchase = new["subscriptionPurchaseV2"]
    del purchase["externalAccountIdentifiers"]  # a Play subscription-center resubscribe carries none
    purchase["outOfAppPurchaseContext"] = {"expiredPurchaseToken": token_of(old)}
    google.set_purchase(token_of(new), purchase)
    push(google, new["developerNotification"])
    sub = Subscription.objects.get(provider_subscription_id=token_of(new))
    assert sub.subscriber.external_id == "31" and sub.acknowledged_at is not None
    assert "outOfAppPurchaseContext" not in google.purchases[token_of(new)]  # cleared by the acknowledgement


def test_store_already_acknowledged_is_recorded_by_the_beat(google):
    token, step = _first_purchase()
    step["subscriptionPurchaseV2"]["startTime"] = timezone.now().isoformat()
    google.set_purchase(token, step["subscriptionPurchaseV2"])
    google.fail_next("acknowledge", 500)
    event = push(google, step["developerNotification"]).event
    assert event.status == "received" and "follow-up failed" in event.error and "500" in event.error
    google.purchases[token]["acknowledgementState"] = "ACKNOWLEDGEMENT_STATE_ACKNOWLEDGED"  # e.g. the app did
    assert tasks.acknowledge_due()["recorded"] == 1
    assert Subscription.objects.get(provider_subscription_id=token).acknowledged_at is not None
    assert len(google.calls_of("acknowledge")) == 1


# --- staff actions at Google ---------------------------------------------------------------------

STEP = load_sequence("06_purchase_grace_hold_recover.json", user_id="42")[0]
TOKEN = token_of(STEP)


@pytest.mark.parametrize("refund", ["full", "prorated"])
def test_staff_revoke_with_refund(google, refund):
    google.set_purchase(TOKEN, STEP["subscriptionPurchaseV2"])
    push(google, STEP["developerNotification"])
    sub = Subscription.objects.get(provider_subscription_id=TOKEN)
    staff = UserFactory()
    services.subscription_revoke_at_google(subscription=sub, refund=refund, reason="fraud report", staff_user=staff)
    (call,) = google.calls_of("revoke")
    assert call["body"] == {"revocationContext": {f"{refund}Refund": {}}}
    sub.refresh_from_db()
    assert sub.status == "REVOKED"
    change = sub.status_changes.filter(new_status="REVOKED").get()
    assert change.staff_user == staff and "fraud report" in change.note
    # the RTDN that follows re-reads the same state: still REVOKED
    push(google, subscription_notification(TOKEN, 13))
    sub.refresh_from_db()
    assert sub.status == "REVOKED"


def test_staff_defer_moves_the_renewal_with_the_etag(google):
    google.set_purchase(TOKEN, STEP["subscriptionPurchaseV2"])
    push(google, STEP["developerNotification"])
    sub = Subscription.objects.get(provider_subscription_id=TOKEN)
    before = sub.expires_at
    etag = google.purchases[TOKEN]["etag"]
    services.subscription_defer_at_google(subscription=sub, days=7, reason="outage goodwill", staff_user=UserFactory())
    (call,) = google.calls_of("defer")
    assert call["body"]["deferralContext"] == {"deferDuration": "604800s", "etag": etag, "validateOnly": False}
    sub.refresh_from_db()
    assert sub.expires_at - before == timedelta(days=7)


def test_staff_actions_need_a_reason_and_a_google_subscription(google):
    google.set_purchase(TOKEN, STEP["subscriptionPurchaseV2"])
    push(google, STEP["developerNotification"])
    sub = Subscription.objects.get(provider_subscription_id=TOKEN)
    with pytest.raises(services.StoreActionError, match="reason"):
        services.subscription_defer_at_google(subscription=sub, days=7, reason=" ", staff_user=UserFactory())
    other = SubscriptionFactory(provider="stripe", provider_subscription_id="sub_other")
    with pytest.raises(services.StoreActionError, match="not a Google Play subscription"):
        services.subscription_revoke_at_google(subscription=other, refund="full", reason="fraud",
                                               staff_user=UserFactory())
    assert google.calls_of("defer") == [] and google.calls_of("revoke") == []
