"""Re-poll (GoogleAdapter.fetch through billing.sweeps): subscriptionsv2.get plus the mapping, applied."""

import pytest

from billing.models import Subscription
from billing.providers.google import services
from billing.sweeps import subscription_resync
from tests.factories import UserFactory

from .conftest import load_sequence, push, token_of

pytestmark = pytest.mark.django_db

STEP = load_sequence("06_purchase_grace_hold_recover.json", user_id="42")[0]
TOKEN = token_of(STEP)


def test_repoll_fetches_the_current_state(google):
    google.set_purchase(TOKEN, STEP["subscriptionPurchaseV2"])
    push(google, STEP["developerNotification"])
    google.purchases[TOKEN]["subscriptionState"] = "SUBSCRIPTION_STATE_ON_HOLD"  # a notification we missed
    subscription_resync(subscription=Subscription.objects.get(provider_subscription_id=TOKEN))
    assert Subscription.objects.get(provider_subscription_id=TOKEN).status == "ON_HOLD"
    assert [c["method"] for c in google.calls] == ["get", "acknowledge", "get"]


def test_repoll_after_a_staff_revoke_keeps_it_revoked(google):
    """Google reports a revoked purchase as EXPIRED: what we hold as REVOKED stays REVOKED on re-poll."""
    google.set_purchase(TOKEN, STEP["subscriptionPurchaseV2"])
    sub = push(google, STEP["developerNotification"]).subscription
    services.subscription_revoke_at_google(subscription=sub, refund="full", reason="fraud", staff_user=UserFactory())
    assert google.purchases[TOKEN]["subscriptionState"] == "SUBSCRIPTION_STATE_EXPIRED"
    sub.refresh_from_db()
    result = subscription_resync(subscription=sub)
    assert (result.old_status, result.new_status) == ("REVOKED", "REVOKED")
    sub.refresh_from_db()
    assert sub.status == "REVOKED"
