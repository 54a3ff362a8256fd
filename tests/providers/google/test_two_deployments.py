"""Two deployments (staging and production) sharing one RTDN topic: GOOGLE_UNKNOWN_TOKEN_POLICY."""

import pytest

from billing.models import Subscription
from tests.factories import SubscriberFactory

from .helpers import load_sequence, process, token_of

pytestmark = pytest.mark.django_db

STEP = load_sequence("06_purchase_grace_hold_recover.json", user_id="staging-user-1")[0]
TOKEN = token_of(STEP)


def test_ignore_policy_ignores_a_token_nobody_here_claims(adapter, google, settings):
    settings.GOOGLE_UNKNOWN_TOKEN_POLICY = "ignore"
    google.set_purchase(TOKEN, STEP["subscriptionPurchaseV2"])
    result = process(adapter, google, STEP["developerNotification"])
    assert result.snapshots == [] and "another deployment" in result.ignored_reason
    assert not Subscription.objects.exists()
    assert google.calls_of("acknowledge") == []  # the other deployment acknowledges its own purchase


def test_ignore_policy_still_takes_our_users_purchases(adapter, google, settings):
    settings.GOOGLE_UNKNOWN_TOKEN_POLICY = "ignore"
    SubscriberFactory(external_id="staging-user-1")
    google.set_purchase(TOKEN, STEP["subscriptionPurchaseV2"])
    process(adapter, google, STEP["developerNotification"])
    sub = Subscription.objects.get(provider_subscription_id=TOKEN)
    assert sub.subscriber.external_id == "staging-user-1" and sub.acknowledged_at is not None


def test_orphan_policy_keeps_an_unclaimed_token_for_support(adapter, google, settings):
    settings.GOOGLE_UNKNOWN_TOKEN_POLICY = "orphan"
    purchase = STEP["subscriptionPurchaseV2"]
    purchase = {k: v for k, v in purchase.items() if k != "externalAccountIdentifiers"}
    google.set_purchase(TOKEN, purchase)
    process(adapter, google, STEP["developerNotification"])
    sub = Subscription.objects.get(provider_subscription_id=TOKEN)
    assert sub.subscriber is None and sub.status == "ACTIVE"


def test_known_subscriber_identity_is_found(adapter, google):
    subscriber = SubscriberFactory(external_id="1001", google_obfuscated_account_id="staging-user-1")
    google.set_purchase(TOKEN, STEP["subscriptionPurchaseV2"])
    process(adapter, google, STEP["developerNotification"])
    assert Subscription.objects.get(provider_subscription_id=TOKEN).subscriber == subscriber
