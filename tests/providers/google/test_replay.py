"""Replay the captured Play lifecycles: each step's RTDN is pushed (Pub/Sub envelope, OIDC token), the
fake answers subscriptionsv2.get with the paired captured response, and the status is checked."""

import itertools
from datetime import datetime

import pytest

from billing.models import Subscription, Transaction
from billing.snapshots import Environment, TransactionKind

from .helpers import load_sequence, process, sequence_names, subscription_notification, token_of

pytestmark = pytest.mark.django_db

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
def test_replay_captured_lifecycle(adapter, google, name):
    steps = load_sequence(name, user_id="42")
    for step, expected in zip(steps, EXPECTED[name], strict=True):
        token = token_of(step)
        google.set_purchase(token, step["subscriptionPurchaseV2"])
        process(adapter, google, step["developerNotification"])
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


def test_pending_purchase_is_acknowledged_only_once_paid(adapter, google):
    """A purchase first reported PENDING (a slow payment method, then paid): the captured purchase's
    first step replayed with the PENDING state Google reports before the payment clears."""
    step = load_sequence("06_purchase_grace_hold_recover.json", user_id="42")[0]
    token = token_of(step)
    paid = step["subscriptionPurchaseV2"]
    google.set_purchase(token, {**paid, "subscriptionState": "SUBSCRIPTION_STATE_PENDING"})
    process(adapter, google, step["developerNotification"])
    sub = Subscription.objects.get(provider_subscription_id=token)
    assert sub.status == "INACTIVE" and sub.acknowledged_at is None
    assert google.calls_of("acknowledge") == []

    google.set_purchase(token, paid)  # the payment went through
    process(adapter, google, subscription_notification(token, 4))
    sub.refresh_from_db()
    assert sub.status == "ACTIVE" and sub.acknowledged_at is not None
    (ack,) = google.calls_of("acknowledge")
    assert ack["state"] == "SUBSCRIPTION_STATE_ACTIVE"


def test_renewals_are_distinct_transactions(adapter, google):
    steps = load_sequence("03_renew_x2_cancel_expire_resubscribe_grace_hold_expire.json")
    for step in steps:
        google.set_purchase(token_of(step), step["subscriptionPurchaseV2"])
        process(adapter, google, step["developerNotification"])
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


def test_grace_period_keeps_access_until_its_end(adapter, google):
    steps = load_sequence("02_purchase_grace_renew_cancel_expire.json")
    for step in steps[:2]:
        google.set_purchase(token_of(step), step["subscriptionPurchaseV2"])
        process(adapter, google, step["developerNotification"])
    sub = Subscription.objects.get(provider_subscription_id=token_of(steps[0]))
    assert sub.status == "ON_GRACE"
    assert sub.grace_until == datetime.fromisoformat("2025-10-10T00:52:48.269+00:00")
    assert sub.is_entitled(datetime.fromisoformat("2025-10-10T00:50:00+00:00"))
    assert not sub.is_entitled(datetime.fromisoformat("2025-10-10T00:53:00+00:00"))


@pytest.mark.parametrize("name", ["07_plan_change_1m_to_3m_then_renew.json",
                                  "10_plan_change_there_and_back_then_renew.json"])
def test_upgrade_chain_never_entitles_twice_and_carries_the_user(adapter, google, name):
    steps = load_sequence(name, user_id="77")
    seen = []
    for step in steps:
        token = token_of(step)
        google.set_purchase(token, step["subscriptionPurchaseV2"])
        process(adapter, google, step["developerNotification"])
        if token not in seen:
            seen.append(token)
        # at the time of this step, at most one of the user's Google subscriptions grants access
        when = datetime.fromisoformat(step["subscriptionPurchaseV2"]["startTime"].replace("Z", "+00:00"))
        subs = Subscription.objects.filter(provider="google")
        assert sum(s.is_entitled(when) for s in subs) <= 1, step["step_comment"]
    subs = {s.provider_subscription_id: s for s in Subscription.objects.filter(provider="google")}
    latest = subs[seen[-1]]
    for older, newer in itertools.pairwise(seen):
        assert subs[older].replaced_by_id == subs[newer].pk
    assert latest.replaced_by_id is None and latest.status == "ACTIVE"
    assert {s.subscriber.external_id for s in subs.values()} == {"77"}


def test_upgrade_carries_the_user_when_the_new_purchase_has_no_account_id(adapter, google):
    steps = load_sequence("07_plan_change_1m_to_3m_then_renew.json", user_id="55")
    google.set_purchase(token_of(steps[0]), steps[0]["subscriptionPurchaseV2"])
    process(adapter, google, steps[0]["developerNotification"])
    new = steps[1]["subscriptionPurchaseV2"]
    del new["externalAccountIdentifiers"]
    google.set_purchase(token_of(steps[1]), new)
    process(adapter, google, steps[1]["developerNotification"])
    sub = Subscription.objects.get(provider_subscription_id=token_of(steps[1]))
    assert sub.subscriber.external_id == "55"
    assert Subscription.objects.get(provider_subscription_id=token_of(steps[0])).replaced_by_id == sub.pk
