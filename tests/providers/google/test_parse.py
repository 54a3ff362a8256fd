"""What each notification kind, notification type and subscription state does."""

import copy

import pytest

from billing.models import Subscription, Transaction
from billing.snapshots import TransactionKind

from .helpers import PACKAGE, inbound, load_sequence, process, push_request, subscription_notification

pytestmark = pytest.mark.django_db

STEPS = load_sequence("02_purchase_grace_renew_cancel_expire.json", user_id="42")
ACTIVE = STEPS[2]["subscriptionPurchaseV2"]  # acknowledged, renewed (..0), auto-renewing


def purchase(**changes) -> dict:
    data = copy.deepcopy(ACTIVE)
    data.update(changes)
    return data


def _parse(adapter, fake, notification):
    headers, body, query = push_request(fake, notification)
    return adapter.parse(inbound(adapter.authenticate(headers, body, query), body))


# Google's names (PROVIDERS.md §2.2), written out here rather than read from the code under test.
@pytest.mark.parametrize(("number", "name"), [
    (1, "SUBSCRIPTION_RECOVERED"), (2, "SUBSCRIPTION_RENEWED"), (3, "SUBSCRIPTION_CANCELED"),
    (4, "SUBSCRIPTION_PURCHASED"), (5, "SUBSCRIPTION_ON_HOLD"), (6, "SUBSCRIPTION_IN_GRACE_PERIOD"),
    (7, "SUBSCRIPTION_RESTARTED"), (8, "SUBSCRIPTION_PRICE_CHANGE_CONFIRMED"), (9, "SUBSCRIPTION_DEFERRED"),
    (10, "SUBSCRIPTION_PAUSED"), (11, "SUBSCRIPTION_PAUSE_SCHEDULE_CHANGED"), (12, "SUBSCRIPTION_REVOKED"),
    (13, "SUBSCRIPTION_EXPIRED"), (17, "SUBSCRIPTION_ITEMS_CHANGED"), (18, "SUBSCRIPTION_CANCELLATION_SCHEDULED"),
    (19, "SUBSCRIPTION_PRICE_CHANGE_UPDATED"), (20, "SUBSCRIPTION_PENDING_PURCHASE_CANCELED"),
    (22, "SUBSCRIPTION_PRICE_STEP_UP_CONSENT_UPDATED"), (99, "SUBSCRIPTION_UNKNOWN_99"),
])
def test_every_subscription_notification_type_rereads_the_state(adapter, google, number, name):
    google.set_purchase("tok-a", purchase())
    notification = subscription_notification("tok-a", number)
    headers, body, query = push_request(google, notification)
    assert adapter.authenticate(headers, body, query).event_type == name  # what support sees on the event
    result = process(adapter, google, notification)
    assert [c["method"] for c in google.calls] == ["get"]  # the state comes from the API, not the type
    assert result.snapshots[0].status == "ACTIVE"
    assert Subscription.objects.get(provider_subscription_id="tok-a").status == "ACTIVE"


@pytest.mark.parametrize(("state", "status"), [
    ("SUBSCRIPTION_STATE_ACTIVE", "ACTIVE"),
    ("SUBSCRIPTION_STATE_IN_GRACE_PERIOD", "ON_GRACE"),
    ("SUBSCRIPTION_STATE_ON_HOLD", "ON_HOLD"),
    ("SUBSCRIPTION_STATE_PAUSED", "PAUSED"),
    ("SUBSCRIPTION_STATE_CANCELED", "CANCELED"),
    ("SUBSCRIPTION_STATE_EXPIRED", "EXPIRED"),
    ("SUBSCRIPTION_STATE_PENDING", "INACTIVE"),
    ("SUBSCRIPTION_STATE_PENDING_PURCHASE_CANCELED", "INACTIVE"),
])
def test_every_subscription_state(adapter, google, state, status):
    # PAUSED / PENDING responses are built from the captured shape (none were captured).
    data = purchase(subscriptionState=state, acknowledgementState="ACKNOWLEDGEMENT_STATE_PENDING")
    if state.endswith("PAUSED"):
        data["pausedStateContext"] = {"autoResumeTime": "2025-11-10T00:52:48.269Z"}
    google.set_purchase("tok-s", data)
    process(adapter, google, subscription_notification("tok-s", 10 if "PAUSED" in state else 4))
    sub = Subscription.objects.get(provider_subscription_id="tok-s")
    assert sub.status == status
    acks = google.calls_of("acknowledge")
    if "PENDING" in state or state.endswith("EXPIRED"):
        assert acks == [] and sub.acknowledgement_due_at is None  # never acknowledge a pending purchase
    else:
        assert len(acks) == 1 and sub.acknowledged_at is not None


def test_unknown_state_fails_with_the_reason(adapter, google):
    from billing.providers.base import PermanentError

    google.set_purchase("tok-u", purchase(subscriptionState="SUBSCRIPTION_STATE_UNSPECIFIED"))
    with pytest.raises(PermanentError, match="UNSPECIFIED"):
        _parse(adapter, google, subscription_notification("tok-u", 4))


def test_free_trial_is_trial(adapter, google):
    data = purchase()
    data["lineItems"][0]["offerPhase"] = {"freeTrial": {}}
    google.set_purchase("tok-t", data)
    process(adapter, google, subscription_notification("tok-t", 4))
    sub = Subscription.objects.get(provider_subscription_id="tok-t")
    assert sub.status == "TRIAL"
    assert sub.transactions.get().amount_minor == 0


def test_expiry_is_the_latest_line_item_and_auto_renew_is_read(adapter, google):
    data = purchase()
    extra = copy.deepcopy(data["lineItems"][0])
    extra.update(productId="addon", expiryTime="2030-01-01T00:00:00Z", latestSuccessfulOrderId="GPA.1-2-3")
    data["lineItems"].append(extra)
    google.set_purchase("tok-m", data)
    process(adapter, google, subscription_notification("tok-m", 17))
    sub = Subscription.objects.get(provider_subscription_id="tok-m")
    assert sub.expires_at.year == 2030 and sub.auto_renew is True
    assert sub.amount_minor == 1699 and sub.currency == "AUD"


@pytest.mark.parametrize(("notification", "reason"), [
    ({"version": "1.0", "packageName": PACKAGE, "eventTimeMillis": "1", "testNotification": {"version": "1.0"}},
     "test notification"),
    ({"version": "1.0", "packageName": PACKAGE, "eventTimeMillis": "1", "oneTimeProductNotification": {
        "version": "1.0", "notificationType": 1, "purchaseToken": "otp", "sku": "coins_100"}}, "one-time product"),
    ({"version": "1.0", "packageName": PACKAGE, "eventTimeMillis": "1", "pendingRefundReviewNotification": {}},
     "not handled"),
    ({**subscription_notification("tok-x", 4), "packageName": "com.other.app"}, "not this deployment"),
    ({"version": "1.0", "packageName": PACKAGE, "eventTimeMillis": "1", "voidedPurchaseNotification": {
        "purchaseToken": "otp", "orderId": "GPA.9", "productType": 2, "refundType": 1}}, "one-time purchase"),
])
def test_ignorable_notifications_are_answered_and_ignored(adapter, google, notification, reason):
    result = _parse(adapter, google, notification)
    assert result.snapshots == [] and reason in result.ignored_reason
    assert google.calls == []


def test_voided_subscription_purchase_is_revoked_with_a_refund(adapter, google):
    steps = load_sequence("01_purchase_cancel_uncancel_refund.json", user_id="42")
    token = steps[0]["developerNotification"]["subscriptionNotification"]["purchaseToken"]
    google.set_purchase(token, steps[0]["subscriptionPurchaseV2"])
    process(adapter, google, steps[0]["developerNotification"])
    google.set_purchase(token, steps[3]["subscriptionPurchaseV2"])  # Google's state after the refund
    voided = {"version": "1.0", "packageName": PACKAGE, "eventTimeMillis": "1759723392088",
              "voidedPurchaseNotification": {"purchaseToken": token, "orderId": "GPA.3354-3745-5570-25336",
                                             "productType": 1, "refundType": 1}}
    process(adapter, google, voided)
    process(adapter, google, voided | {"eventTimeMillis": "1759723392089"})  # a redelivery: one refund
    sub = Subscription.objects.get(provider_subscription_id=token)
    assert sub.status == "REVOKED"
    refund = Transaction.objects.get(provider_transaction_id="refund:GPA.3354-3745-5570-25336")
    assert refund.kind == TransactionKind.REFUND and refund.amount_minor == 1699 and refund.currency == "AUD"


def test_voided_order_of_a_live_subscription_records_only_the_refund(adapter, google):
    google.set_purchase("tok-v", purchase())
    process(adapter, google, subscription_notification("tok-v", 2))
    voided = {"version": "1.0", "packageName": PACKAGE, "eventTimeMillis": "1760057300000",
              "voidedPurchaseNotification": {"purchaseToken": "tok-v", "orderId": "GPA.3375-6103-0197-44778",
                                             "productType": 1, "refundType": 1}}
    process(adapter, google, voided)
    assert Subscription.objects.get(provider_subscription_id="tok-v").status == "ACTIVE"
    assert Transaction.objects.filter(provider_transaction_id="refund:GPA.3375-6103-0197-44778").exists()


def test_pending_plan_change_does_not_replace_and_its_cancellation_rereads_the_old(adapter, google):
    google.set_purchase("old", purchase())
    process(adapter, google, subscription_notification("old", 4))
    pending = purchase(subscriptionState="SUBSCRIPTION_STATE_PENDING", linkedPurchaseToken="old",
                       acknowledgementState="ACKNOWLEDGEMENT_STATE_PENDING")
    del pending["externalAccountIdentifiers"]
    google.set_purchase("new", pending)
    process(adapter, google, subscription_notification("new", 4))
    old, new = (Subscription.objects.get(provider_subscription_id=t) for t in ("old", "new"))
    assert new.status == "INACTIVE" and old.replaced_by_id is None and old.status == "ACTIVE"
    assert new.subscriber_id == old.subscriber_id  # the user carried over through the linked token
    google.set_purchase("new", pending | {"subscriptionState": "SUBSCRIPTION_STATE_PENDING_PURCHASE_CANCELED"})
    result = process(adapter, google, subscription_notification("new", 20))
    assert [s.provider_subscription_id for s in result.snapshots] == ["new", "old"]
    old.refresh_from_db()
    assert old.replaced_by_id is None and old.status == "ACTIVE"
    assert google.calls_of("acknowledge") == []
