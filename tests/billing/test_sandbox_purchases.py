"""Sandbox and test purchases in a production deployment (billing/sandbox_purchases.py, applied by the
write path): recorded and visible, never entitled, unless the store's setting or the tester allow-list
says so; the check API, the list API and the stream agree because the stored status does."""

from datetime import timedelta

import pytest
from django.utils import timezone

from billing.apply import apply_snapshot
from billing.models import Outbox, StatusChange, Subscription, Transaction
from billing.selectors import check_answer
from billing.snapshots import Cause, CauseKind, TransactionKind, TransactionRecord
from billing.statuses import Status
from tests.factories import snapshot
from tests.fakes.google import rfc3339
from tests.providers.google.conftest import push, subscription_notification
from tests.providers.google.test_events import purchase

pytestmark = pytest.mark.django_db

WEBHOOK = Cause(CauseKind.WEBHOOK, ref="evt")
NOW = timezone.now()
STORES = {"apple": "APPLE_ALLOW_SANDBOX", "google": "GOOGLE_ALLOW_TEST_PURCHASES",
          "stripe": "STRIPE_ALLOW_TEST_MODE", "xsolla": "XSOLLA_ALLOW_DRY_RUN"}


@pytest.fixture
def production(settings):
    """A production deployment as the defaults make it with DEBUG off: live Stripe key, Apple production."""
    settings.DEBUG = False
    settings.APPLE_ENVIRONMENT = "Production"
    settings.STRIPE_LIVE_MODE = True
    for name in STORES.values():
        setattr(settings, name, False)
    settings.TEST_PURCHASE_USER_IDS = []
    return settings


def test_purchase(provider: str, minutes: int = 0, *, environment="sandbox", user_id="42", **fields):
    return snapshot(Status.ACTIVE, at=NOW - timedelta(minutes=60 - minutes), provider=provider, sub_id=f"{provider}-1",
                    user_id=user_id, environment=environment, expires_at=NOW + timedelta(days=30), **fields)


test_purchase.__test__ = False  # a builder, not a test


@pytest.mark.parametrize("provider", sorted(STORES))
def test_a_test_purchase_is_recorded_but_not_entitled(production, client, service_auth, provider):
    paid = TransactionRecord("t-1", TransactionKind.PURCHASE, NOW - timedelta(hours=1), 999, "USD")
    apply_snapshot(test_purchase(provider, transactions=(paid,)), WEBHOOK)
    sub = Subscription.objects.get()
    assert (sub.environment, sub.status, sub.subscriber.external_id) == ("sandbox", Status.INACTIVE, "42")
    assert Transaction.objects.get().environment == "sandbox"  # the money fact is kept, marked sandbox
    note = StatusChange.objects.get(subscription=sub).note
    assert f"{STORES[provider]} is off" in note and "the store says ACTIVE" in note  # support sees why
    assert check_answer("42")["is_subscribed"] is False
    item = client.get("/api/users/42/subscriptions", **service_auth("read")).json()["items"][0]
    assert (item["status"], item["is_entitled"], item["environment"]) == ("INACTIVE", False, "sandbox")
    assert not Outbox.objects.exists()  # nothing granted: nothing for consumers

    apply_snapshot(test_purchase(provider, 1), WEBHOOK)  # the store's next word: no second note
    assert StatusChange.objects.count() == 1


@pytest.mark.parametrize("provider", sorted(STORES))
def test_a_listed_tester_is_entitled(production, provider):
    production.TEST_PURCHASE_USER_IDS = ["7", "42"]
    apply_snapshot(test_purchase(provider), WEBHOOK)
    assert Subscription.objects.get().status == Status.ACTIVE
    assert check_answer("42")["is_subscribed"] is True
    assert Outbox.objects.get().payload["isSubscribed"] is True


@pytest.mark.parametrize("provider", sorted(STORES))
def test_the_stores_setting_grants_access_to_everyone(production, provider):
    setattr(production, STORES[provider], True)
    apply_snapshot(test_purchase(provider), WEBHOOK)
    assert check_answer("42")["is_subscribed"] is True


@pytest.mark.parametrize(("setting", "value", "provider"), [
    ("APPLE_ENVIRONMENT", "Sandbox", "apple"),  # a deployment configured for Apple's sandbox
    ("STRIPE_LIVE_MODE", False, "stripe"),  # a deployment with a test-mode key
])
def test_a_test_deployment_of_the_store_grants_its_test_purchases(production, setting, value, provider):
    setattr(production, setting, value)
    apply_snapshot(test_purchase(provider), WEBHOOK)
    assert check_answer("42")["is_subscribed"] is True


def test_production_purchases_are_untouched(production):
    apply_snapshot(test_purchase("google", environment="production"), WEBHOOK)
    assert Subscription.objects.get().status == Status.ACTIVE


def test_a_tester_removed_from_the_list_loses_access_with_the_next_state_and_the_stream_says_so(production):
    production.TEST_PURCHASE_USER_IDS = ["42"]
    apply_snapshot(test_purchase("google"), WEBHOOK)
    production.TEST_PURCHASE_USER_IDS = []
    apply_snapshot(test_purchase("google", 5), WEBHOOK)
    assert Subscription.objects.get().status == Status.INACTIVE
    last = Outbox.objects.order_by("id").last().payload
    assert (last["oldStatus"], last["newStatus"], last["isSubscribed"]) == ("ACTIVE", "INACTIVE", False)


def test_a_google_test_purchase_through_the_webhook(production, google, django_capture_on_commit_callbacks):
    state = purchase(testPurchase={})  # a license tester's purchase
    state["lineItems"][0]["expiryTime"] = rfc3339(NOW + timedelta(days=30))
    google.set_purchase("tok-test", state)
    push(google, subscription_notification("tok-test", 4))
    sub = Subscription.objects.get(provider_subscription_id="tok-test")
    assert (sub.environment, sub.status) == ("sandbox", Status.INACTIVE)
    assert check_answer(sub.subscriber.external_id)["is_subscribed"] is False

    production.GOOGLE_ALLOW_TEST_PURCHASES = True
    with django_capture_on_commit_callbacks(execute=True):  # the cache refresh after commit
        push(google, subscription_notification("tok-test", 2))
    assert check_answer(sub.subscriber.external_id)["is_subscribed"] is True


@pytest.mark.parametrize(("debug", "entitled"), [(True, True), (False, False)])
def test_unset_store_settings_follow_debug(production, debug, entitled):
    """The documented default: test purchases grant access on a development machine only."""
    production.DEBUG = debug
    production.GOOGLE_ALLOW_TEST_PURCHASES = None  # not set in the environment
    apply_snapshot(test_purchase("google"), WEBHOOK)
    assert check_answer("42")["is_subscribed"] is entitled
