"""The App Store's own writes (billing/providers/apple/services.py) seen from a CONSUMPTION_REQUEST:
the automatic answer (off by default; it needs declared consent) built from what we hold, sent to the
fake App Store Server API through the official client, and recorded in the audit log."""

import pytest

from audit.models import AuditEntry
from billing.models import Subscription
from billing.providers.apple import services
from billing.providers.staff_changes import StoreActionError
from tests.factories import SubscriptionFactory, UserFactory

from .conftest import consumption_request

pytestmark = pytest.mark.django_db


def test_automatic_answer_is_off_by_default(apple_chain, fake_appstore, apple_sub, active_txn):
    event = consumption_request(apple_chain, active_txn)
    assert event.outcome and "consumption request recorded for support" in event.outcome
    assert fake_appstore.consumption == {}


def test_automatic_answer_needs_declared_consent(apple_settings, apple_chain, fake_appstore, apple_sub, active_txn):
    apple_settings.APPLE_CONSUMPTION_AUTO_ANSWER = True
    consumption_request(apple_chain, active_txn)
    assert fake_appstore.consumption == {}  # Apple takes no answer without consent: nothing sent


def test_automatic_answer_from_what_we_know(apple_settings, apple_chain, fake_appstore, apple_sub, active_txn):
    apple_settings.APPLE_CONSUMPTION_AUTO_ANSWER = True
    apple_settings.APPLE_CONSUMPTION_CUSTOMER_CONSENTED = True
    apple_settings.APPLE_CONSUMPTION_REFUND_PREFERENCE = "GRANT_PRORATED"
    consumption_request(apple_chain, active_txn)
    [sent] = fake_appstore.consumption[active_txn["transactionId"]]
    assert sent["customerConsented"] is True and sent["deliveryStatus"] == "DELIVERED"
    assert sent["sampleContentProvided"] is False and sent["refundPreference"] == "GRANT_PRORATED"
    assert 32_000 <= sent["consumptionPercentage"] <= 34_000  # 10 of 30 days used
    entry = AuditEntry.objects.get(action="store_consumption_answer")
    assert entry.actor_label == "system" and entry.details["automatic"] is True


def test_an_orphan_purchase_is_answered_as_not_delivered(apple_sub, active_txn):
    Subscription.objects.filter(pk=apple_sub.pk).update(subscriber=None)
    apple_sub.refresh_from_db()
    answer = services.consumption_answer_from_what_we_know(apple_sub, active_txn)
    assert (answer.delivery_status, answer.consumption_percentage) == ("UNDELIVERED_OTHER", None)


def test_extend_is_refused_before_apple_is_asked_when_it_cannot_be_done(fake_appstore, apple_sub):
    staff = UserFactory(username="lead")
    with pytest.raises(StoreActionError, match="1 to 90 days"):
        services.subscription_extend_at_apple(subscription=apple_sub, days=91, reason_code=1, reason="x",
                                              staff_user=staff)
    with pytest.raises(StoreActionError, match="reason is required"):
        services.subscription_extend_at_apple(subscription=apple_sub, days=5, reason_code=1, reason=" ",
                                              staff_user=staff)
    viewer = UserFactory(username="viewer", is_superuser=False)
    with pytest.raises(StoreActionError, match="change_subscription"):
        services.subscription_extend_at_apple(subscription=apple_sub, days=5, reason_code=1, reason="x",
                                              staff_user=viewer)
    stripe_sub = SubscriptionFactory(provider="stripe", provider_subscription_id="sub_x")
    with pytest.raises(StoreActionError, match="not an App Store subscription"):
        services.subscription_extend_at_apple(subscription=stripe_sub, days=5, reason_code=1, reason="x",
                                              staff_user=staff)
    assert [r for r in fake_appstore.requests if r["method"] == "PUT"] == []
