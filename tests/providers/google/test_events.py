"""Pushes through the real pipeline (POST /webhooks/google, then the drain): what each notification
kind, notification type and subscription state does; the captured Play lifecycles replayed step by
step (the fake answers subscriptionsv2.get with the paired captured response); two deployments sharing
one topic (GOOGLE_UNKNOWN_TOKEN_POLICY)."""

import copy
import itertools
from datetime import datetime

import pytest
import time_machine

from billing.models import Subscription, Transaction
from billing.snapshots import Environment, TransactionKind
from tests.factories import SubscriberFactory
from tests.helpers import deliver, drain
from webhooks.models import WebhookEvent

from .conftest import PACKAGE, load_sequence, push, push_request, sequence_names, subscription_notification, token_of

pytestmark = pytest.mark.django_db

STEPS = load_sequence("02_purchase_grace_renew_cancel_expire.json", user_id="42")
ACTIVE = STEPS[2]["subscriptionPurchaseV2"]  # acknowledged, renewed (..0), auto-renewing


def purchase(**changes) -> dict:
    data = copy.deepcopy(ACTIVE)
    data.update(changes)
    return data


# --- the webhook, end to end ---------------------------------------------------------------------

def test_captured_plan_change_lifecycle_through_the_webhook(client, google):
    steps = load_sequence("07_plan_change_1m_to_3m_then_renew.json", user_id="42")
    for i, (step, expected) in enumerate(zip(steps, ["ACTIVE", "ACTIVE", "EXPIRED", "ACTIVE"], strict=True)):
        google.set_purchase(token_of(step), step["subscriptionPurchaseV2"])
        delivered = push(google, step["developerNotification"], message_id=f"m-{i}")
        assert delivered.response.status_code == 200, delivered.response.content
        assert Subscription.objects.get(provider_subscription_id=token_of(step)).status == expected
        event = WebhookEvent.objects.get(provider="google", dedupe_key=f"m-{i}")
        assert event.status == "processed", event.error
        assert token_of(step) in event.store_ids and "authorization" not in {h.lower() for h in event.headers}
    old, new = (Subscription.objects.get(provider_subscription_id=token_of(s)) for s in steps[:2])
    assert old.replaced_by_id == new.pk and new.acknowledged_at is not None
    assert client.get("/api/subscriptions/check/42").status_code == 200


def test_duplicate_push_has_no_second_effect(google):
    step = load_sequence("06_purchase_grace_hold_recover.json")[0]
    google.set_purchase(token_of(step), step["subscriptionPurchaseV2"])
    headers, body, query = push_request(google, step["developerNotification"], message_id="dup-1")
    for _ in range(2):
        assert deliver("google", body, headers, query=query).response.status_code == 200
    assert WebhookEvent.objects.filter(provider="google").count() == 1
    assert len(google.calls_of("get")) == 1


# --- notification kinds, types and states --------------------------------------------------------

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
def test_every_subscription_notification_type_rereads_the_state(google, number, name):
    google.set_purchase("tok-a", purchase())
    delivered = push(google, subscription_notification("tok-a", number))
    assert delivered.event.event_type == name  # what support sees on the event
    assert [c["method"] for c in google.calls] == ["get"]  # the state comes from the API, not the type
    assert delivered.event.status == "processed"
    assert delivered.subscription.provider_subscription_id == "tok-a" and delivered.subscription.status == "ACTIVE"


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
def test_every_subscription_state(google, state, status):
    # PAUSED / PENDING responses are built from the captured shape (none were captured).
    data = purchase(subscriptionState=state, acknowledgementState="ACKNOWLEDGEMENT_STATE_PENDING")
    if state.endswith("PAUSED"):
        data["pausedStateContext"] = {"autoResumeTime": "2025-11-10T00:52:48.269Z"}
    google.set_purchase("tok-s", data)
    push(google, subscription_notification("tok-s", 10 if "PAUSED" in state else 4))
    sub = Subscription.objects.get(provider_subscription_id="tok-s")
    assert sub.status == status
    acks = google.calls_of("acknowledge")
    if "PENDING" in state or state.endswith("EXPIRED"):
        assert acks == [] and sub.acknowledgement_due_at is None  # never acknowledge a pending purchase
    else:
        assert len(acks) == 1 and sub.acknowledged_at is not None


def test_unknown_state_fails_the_event_with_the_reason(google):
    google.set_purchase("tok-u", purchase(subscriptionState="SUBSCRIPTION_STATE_UNSPECIFIED"))
    event = push(google, subscription_notification("tok-u", 4)).event
    assert event.status == "failed" and event.next_attempt_at is None  # a retry cannot help: fix, then replay
    assert "PermanentError" in event.error and "UNSPECIFIED" in event.error
    assert not Subscription.objects.exists()


def test_free_trial_is_trial(google):
    data = purchase()
    data["lineItems"][0]["offerPhase"] = {"freeTrial": {}}
    google.set_purchase("tok-t", data)
    push(google, subscription_notification("tok-t", 4))
    sub = Subscription.objects.get(provider_subscription_id="tok-t")
    assert sub.status == "TRIAL"
    assert sub.transactions.get().amount_minor == 0


def test_expiry_is_the_latest_line_item_and_auto_renew_is_read(google):
    data = purchase()
    extra = copy.deepcopy(data["lineItems"][0])
    extra.update(productId="addon", expiryTime="2030-01-01T00:00:00Z", latestSuccessfulOrderId="GPA.1-2-3")
    data["lineItems"].append(extra)
    google.set_purchase("tok-m", data)
    push(google, subscription_notification("tok-m", 17))
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
def test_ignorable_notifications_are_answered_and_ignored(google, notification, reason):
    delivered = push(google, notification)
    assert delivered.response.status_code == 200
    assert delivered.event.status == "ignored" and reason in delivered.event.outcome
    assert delivered.subscriptions == [] and not Subscription.objects.exists()
    assert google.calls == []


def test_voided_subscription_purchase_is_revoked_with_a_refund(google):
    steps = load_sequence("01_purchase_cancel_uncancel_refund.json", user_id="42")
    token = token_of(steps[0])
    google.set_purchase(token, steps[0]["subscriptionPurchaseV2"])
    push(google, steps[0]["developerNotification"])
    google.set_purchase(token, steps[3]["subscriptionPurchaseV2"])  # Google's state after the refund
    google.void(token, "GPA.3354-3745-5570-25336")  # ...and its Voided Purchases API lists the order
    voided = {"version": "1.0", "packageName": PACKAGE, "eventTimeMillis": "1759723392088",
              "voidedPurchaseNotification": {"purchaseToken": token, "orderId": "GPA.3354-3745-5570-25336",
                                             "productType": 1, "refundType": 1}}
    push(google, voided)
    push(google, voided | {"eventTimeMillis": "1759723392089"})  # a redelivery: one refund
    sub = Subscription.objects.get(provider_subscription_id=token)
    assert sub.status == "REVOKED"
    listed = google.calls_of("voidedpurchases.list")[0]
    assert listed["query"]["type"] == "1" and listed["package"] == PACKAGE  # subscriptions included
    refund = Transaction.objects.get(provider_transaction_id="refund:GPA.3354-3745-5570-25336")
    assert refund.kind == TransactionKind.REFUND and refund.amount_minor == 1699 and refund.currency == "AUD"


def test_voided_order_of_a_live_subscription_records_only_the_refund(google):
    google.set_purchase("tok-v", purchase())
    push(google, subscription_notification("tok-v", 2))
    google.void("tok-v", "GPA.3375-6103-0197-44778")
    voided = {"version": "1.0", "packageName": PACKAGE, "eventTimeMillis": "1760057300000",
              "voidedPurchaseNotification": {"purchaseToken": "tok-v", "orderId": "GPA.3375-6103-0197-44778",
                                             "productType": 1, "refundType": 1}}
    push(google, voided)
    assert Subscription.objects.get(provider_subscription_id="tok-v").status == "ACTIVE"
    assert Transaction.objects.filter(provider_transaction_id="refund:GPA.3375-6103-0197-44778").exists()


def test_pending_plan_change_does_not_replace_and_its_cancellation_rereads_the_old(google):
    google.set_purchase("old", purchase())
    push(google, subscription_notification("old", 4))
    pending = purchase(subscriptionState="SUBSCRIPTION_STATE_PENDING", linkedPurchaseToken="old",
                       acknowledgementState="ACKNOWLEDGEMENT_STATE_PENDING")
    del pending["externalAccountIdentifiers"]
    google.set_purchase("new", pending)
    push(google, subscription_notification("new", 4))
    old, new = (Subscription.objects.get(provider_subscription_id=t) for t in ("old", "new"))
    assert new.status == "INACTIVE" and old.replaced_by_id is None and old.status == "ACTIVE"
    assert new.subscriber_id == old.subscriber_id  # the user carried over through the linked token
    google.set_purchase("new", pending | {"subscriptionState": "SUBSCRIPTION_STATE_PENDING_PURCHASE_CANCELED"})
    delivered = push(google, subscription_notification("new", 20))
    assert {s.provider_subscription_id for s in delivered.subscriptions} == {"new", "old"}  # the old one re-read
    assert [c["token"] for c in google.calls_of("get")][-2:] == ["new", "old"]
    old.refresh_from_db()
    assert old.replaced_by_id is None and old.status == "ACTIVE"
    assert google.calls_of("acknowledge") == []


# --- the captured lifecycles ---------------------------------------------------------------------

# Google's two pending states (PROVIDERS.md §2.4): a purchase not paid yet is never acknowledged.
PENDING_STATES = ("SUBSCRIPTION_STATE_PENDING", "SUBSCRIPTION_STATE_PENDING_PURCHASE_CANCELED")

# What each step leaves the notified token at (RTDN 12 → REVOKED, and a later EXPIRED stays REVOKED).
EXPECTED = {
    "01_purchase_cancel_uncancel_refund.json": ["ACTIVE", "CANCELED", "ACTIVE", "REVOKED"],
    "02_purchase_grace_renew_cancel_expire.json": ["ACTIVE", "ON_GRACE", "ACTIVE", "CANCELED", "EXPIRED"],
    "03_renew_x2_cancel_expire_resubscribe_grace_hold_expire.json": [
        "ACTIVE", "ACTIVE", "ACTIVE", "CANCELED", "EXPIRED", "ACTIVE", "ON_GRACE", "ON_HOLD", "EXPIRED", "EXPIRED"],
    "04_purchase_grace_cancel_expire.json": ["ACTIVE", "ON_GRACE", "EXPIRED", "EXPIRED"],
    "05_purchase_grace_hold_cancel_expire.json": ["ACTIVE", "ON_GRACE", "ON_HOLD", "EXPIRED", "EXPIRED"],
    "06_purchase_grace_hold_recover.json": ["ACTIVE", "ON_GRACE", "ON_HOLD", "ACTIVE"],
    "07_plan_change_1m_to_3m_then_renew.json": ["ACTIVE", "ACTIVE", "EXPIRED", "ACTIVE"],
    "08_plan_change_then_grace_then_renew.json": ["ACTIVE", "ACTIVE", "EXPIRED", "ON_GRACE", "ACTIVE"],
    "09_plan_change_then_grace_hold_recover.json": ["ACTIVE", "ACTIVE", "EXPIRED", "ON_GRACE", "ON_HOLD", "ACTIVE"],
    "10_plan_change_there_and_back_then_renew.json": ["ACTIVE", "ACTIVE", "EXPIRED", "ACTIVE", "EXPIRED", "ACTIVE"],
    "11_developer_refund_revoke.json": ["ACTIVE", "REVOKED", "REVOKED"],
    "12_unredeemed_purchase_renew_then_refund.json": ["ACTIVE", "ACTIVE", "REVOKED", "REVOKED"],
}


def test_every_captured_sequence_has_expectations():
    assert sorted(EXPECTED) == sequence_names()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_replay_captured_lifecycle(google, name):
    steps = load_sequence(name, user_id="42")
    for step, expected in zip(steps, EXPECTED[name], strict=True):
        token = token_of(step)
        google.set_purchase(token, step["subscriptionPurchaseV2"])
        push(google, step["developerNotification"])
        sub = Subscription.objects.get(provider="google", provider_subscription_id=token)
        assert sub.status == expected, f"{name}: {step['step_comment']}"
        assert sub.subscriber.external_id == "42"
        assert sub.environment == Environment.SANDBOX  # testPurchase
        assert sub.store_product_id.startswith("session_pro:session-pro-")
        # every purchase got acknowledged after it was linked, and the fact recorded
        assert sub.acknowledged_at is not None
    # each purchase acknowledged once, never while Google held it PENDING; every call authenticated
    # with the issued token
    acks = google.calls_of("acknowledge")
    assert acks and len({c["token"] for c in acks}) == len(acks)
    assert all(c["state"] not in PENDING_STATES for c in acks)
    assert all(c["authorization"].startswith("Bearer ya29.fake-") for c in google.calls)
    assert google.token_requests == 1  # the access token is reused across calls


def test_pending_purchase_is_acknowledged_only_once_paid(google):
    """A purchase first reported PENDING (a slow payment method, then paid): the captured purchase's
    first step replayed with the PENDING state Google reports before the payment clears."""
    step = load_sequence("06_purchase_grace_hold_recover.json", user_id="42")[0]
    token = token_of(step)
    paid = step["subscriptionPurchaseV2"]
    google.set_purchase(token, {**paid, "subscriptionState": "SUBSCRIPTION_STATE_PENDING"})
    push(google, step["developerNotification"])
    sub = Subscription.objects.get(provider_subscription_id=token)
    assert sub.status == "INACTIVE" and sub.acknowledged_at is None
    assert google.calls_of("acknowledge") == []

    google.set_purchase(token, paid)  # the payment went through
    push(google, subscription_notification(token, 4))
    sub.refresh_from_db()
    assert sub.status == "ACTIVE" and sub.acknowledged_at is not None
    (ack,) = google.calls_of("acknowledge")
    assert ack["state"] == "SUBSCRIPTION_STATE_ACTIVE"


def test_renewals_are_distinct_transactions(google):
    steps = load_sequence("03_renew_x2_cancel_expire_resubscribe_grace_hold_expire.json")
    for step in steps:
        google.set_purchase(token_of(step), step["subscriptionPurchaseV2"])
        push(google, step["developerNotification"])
    first = Subscription.objects.get(provider_subscription_id=token_of(steps[0]))
    txns = {t.provider_transaction_id: t for t in first.transactions.all()}
    assert set(txns) == {"GPA.3309-4032-8192-54127", "GPA.3309-4032-8192-54127..0", "GPA.3309-4032-8192-54127..1"}
    assert txns["GPA.3309-4032-8192-54127"].kind == TransactionKind.PURCHASE
    assert txns["GPA.3309-4032-8192-54127..1"].kind == TransactionKind.RENEWAL
    assert {t.amount_minor for t in txns.values()} == {1699} and {t.currency for t in txns.values()} == {"AUD"}
    # the pending renewal order of the grace period (latestOrderId ..0 of the second token) is no transaction
    second = Subscription.objects.get(provider_subscription_id=token_of(steps[5]))
    assert list(second.transactions.values_list("provider_transaction_id", flat=True)) == ["GPA.3326-4415-9310-90534"]
    assert Transaction.objects.filter(provider="google").count() == 4


def test_grace_period_keeps_access_until_its_end(google):
    steps = load_sequence("02_purchase_grace_renew_cancel_expire.json")
    for step in steps[:2]:
        google.set_purchase(token_of(step), step["subscriptionPurchaseV2"])
        push(google, step["developerNotification"])
    sub = Subscription.objects.get(provider_subscription_id=token_of(steps[0]))
    assert sub.status == "ON_GRACE"
    assert sub.grace_until == datetime.fromisoformat("2025-10-10T00:52:48.269+00:00")
    assert sub.is_entitled(datetime.fromisoformat("2025-10-10T00:50:00+00:00"))
    assert not sub.is_entitled(datetime.fromisoformat("2025-10-10T00:53:00+00:00"))


@pytest.mark.parametrize("name", ["07_plan_change_1m_to_3m_then_renew.json",
                                  "10_plan_change_there_and_back_then_renew.json"])
def test_upgrade_chain_never_entitles_twice_and_carries_the_user(google, name, client, service_auth):
    steps = load_sequence(name, user_id="77")
    seen = []
    for step in steps:
        token = token_of(step)
        google.set_purchase(token, step["subscriptionPurchaseV2"])
        push(google, step["developerNotification"])
        if token not in seen:
            seen.append(token)
        # at the time of this step, at most one of the user's Google subscriptions grants access
        when = datetime.fromisoformat(step["subscriptionPurchaseV2"]["startTime"].replace("Z", "+00:00"))
        subs = Subscription.objects.filter(provider="google")
        assert sum(s.is_entitled(when) for s in subs) <= 1, step["step_comment"]
    subs = {s.provider_subscription_id: s for s in Subscription.objects.filter(provider="google")}
    latest = subs[seen[-1]]
    for older, newer in itertools.pairwise(seen):
        # A replaced subscription ends when its successor is applied, and names it.
        assert subs[older].replaced_by_id == subs[newer].pk
        assert subs[older].status == "EXPIRED", subs[older].status
        assert f"replaced by google:{newer}" in subs[older].status_changes.order_by("id").last().note
    assert latest.replaced_by_id is None and latest.status == "ACTIVE"
    assert {s.subscriber.external_id for s in subs.values()} == {"77"}
    listed = client.get("/api/users/77/subscriptions", **service_auth("read")).json()["items"]
    assert list(Subscription.objects.filter(status="ACTIVE").values_list("provider_subscription_id", flat=True)) == [
        seen[-1]]  # one live subscription for the purchase, not one per plan change
    assert {i["provider_subscription_id"]: i["replaced_by"] for i in listed}[seen[0]] == str(subs[seen[1]].pk)


def test_upgrade_carries_the_user_when_the_new_purchase_has_no_account_id(google):
    steps = load_sequence("07_plan_change_1m_to_3m_then_renew.json", user_id="55")
    google.set_purchase(token_of(steps[0]), steps[0]["subscriptionPurchaseV2"])
    push(google, steps[0]["developerNotification"])
    new = steps[1]["subscriptionPurchaseV2"]
    del new["externalAccountIdentifiers"]
    google.set_purchase(token_of(steps[1]), new)
    push(google, steps[1]["developerNotification"])
    sub = Subscription.objects.get(provider_subscription_id=token_of(steps[1]))
    assert sub.subscriber.external_id == "55"
    assert Subscription.objects.get(provider_subscription_id=token_of(steps[0])).replaced_by_id == sub.pk


# --- two deployments, one topic (GOOGLE_UNKNOWN_TOKEN_POLICY) ------------------------------------

STAGING = load_sequence("06_purchase_grace_hold_recover.json", user_id="staging-user-1")[0]
STAGING_TOKEN = token_of(STAGING)


def test_ignore_policy_ignores_a_token_nobody_here_claims(google, settings):
    settings.GOOGLE_UNKNOWN_TOKEN_POLICY = "ignore"
    google.set_purchase(STAGING_TOKEN, STAGING["subscriptionPurchaseV2"])
    event = push(google, STAGING["developerNotification"]).event
    assert event.status == "ignored" and "another deployment" in event.outcome
    assert not Subscription.objects.exists()
    assert google.calls_of("acknowledge") == []  # the other deployment acknowledges its own purchase


def test_ignore_policy_still_takes_our_users_purchases(google, settings):
    settings.GOOGLE_UNKNOWN_TOKEN_POLICY = "ignore"
    SubscriberFactory(external_id="staging-user-1")
    google.set_purchase(STAGING_TOKEN, STAGING["subscriptionPurchaseV2"])
    push(google, STAGING["developerNotification"])
    sub = Subscription.objects.get(provider_subscription_id=STAGING_TOKEN)
    assert sub.subscriber.external_id == "staging-user-1" and sub.acknowledged_at is not None


def test_orphan_policy_keeps_an_unclaimed_token_for_support(google, settings):
    settings.GOOGLE_UNKNOWN_TOKEN_POLICY = "orphan"
    purchase = {k: v for k, v in STAGING["subscriptionPurchaseV2"].items() if k != "externalAccountIdentifiers"}
    google.set_purchase(STAGING_TOKEN, purchase)
    push(google, STAGING["developerNotification"])
    sub = Subscription.objects.get(provider_subscription_id=STAGING_TOKEN)
    assert sub.subscriber is None and sub.status == "ACTIVE"


def test_known_subscriber_identity_is_found(google):
    subscriber = SubscriberFactory(external_id="1001", google_obfuscated_account_id="staging-user-1")
    google.set_purchase(STAGING_TOKEN, STAGING["subscriptionPurchaseV2"])
    push(google, STAGING["developerNotification"])
    assert Subscription.objects.get(provider_subscription_id=STAGING_TOKEN).subscriber == subscriber



# --- a Play read that fails ------------------------------------------------------------------------

def test_a_failed_play_re_read_is_retried_within_seconds_and_access_follows(google):
    """Default retry settings: a purchase whose re-read fails twice is processed seconds later, not minutes."""
    google.set_purchase("tok-flaky", purchase(acknowledgementState="ACKNOWLEDGEMENT_STATE_PENDING"))
    google.fail_next("get", 503, 500)
    with time_machine.travel(datetime.now().astimezone(), tick=True) as clock:
        event = push(google, subscription_notification("tok-flaky", 4)).event
        first_wait = (event.next_attempt_at - event.received_at).total_seconds()
        assert event.status == "received" and "Google answered 503" in event.error
        assert first_wait <= 5.5  # the first retry within seconds (WEBHOOK_RETRY_BASE_SECONDS=5)
        clock.move_to(event.next_attempt_at)
        event = retry_due(event)
        assert event.status == "received" and "Google answered 500" in event.error
        clock.move_to(event.next_attempt_at)
        event = retry_due(event)
    assert event.status == "processed", event.error
    assert (event.processed_at - event.received_at).total_seconds() < 20  # three reads, access seconds later
    sub = Subscription.objects.get(provider_subscription_id="tok-flaky")
    assert sub.status == "ACTIVE" and sub.acknowledged_at is not None
    assert len(google.calls_of("get")) == 3


def retry_due(event: WebhookEvent) -> WebhookEvent:
    """The worker's drain once the clock reached the event's retry."""
    drain()
    event.refresh_from_db()
    return event


def test_a_missing_service_account_keeps_the_event_retrying_until_it_is_set(google, settings):
    google.set_purchase("tok-conf", purchase())
    path, settings.GOOGLE_SERVICE_ACCOUNT_FILE = settings.GOOGLE_SERVICE_ACCOUNT_FILE, ""
    event = push(google, subscription_notification("tok-conf", 2)).event
    assert event.status == "received" and event.next_attempt_at is not None  # not failed for good
    assert "NotConfigured" in event.error and "GOOGLE_SERVICE_ACCOUNT_FILE" in event.error

    settings.GOOGLE_SERVICE_ACCOUNT_FILE = path  # the operator fixes the deployment
    WebhookEvent.objects.filter(pk=event.pk).update(next_attempt_at=event.received_at)
    event = retry_due(event)
    assert event.status == "processed", event.error
    assert Subscription.objects.get(provider_subscription_id="tok-conf").status == "ACTIVE"
