"""The Play Developer API through the real client: failures then recovery, quota, verification,
re-poll, cancel, and staff revoke/defer (store first, then re-read and applied)."""

from datetime import timedelta

import pytest

from accounts.models import Subscriber
from billing.models import Subscription
from billing.providers.base import InvalidPurchase, PermanentError, StoreUnavailable, TransientError
from billing.providers.google import client, services
from billing.providers.google.admin import ACTIONS
from billing.store_actions import subscription_cancel
from billing.sweeps import subscription_resync
from billing.verification import PurchaseOwnedByAnotherUser, purchase_verify
from tests.factories import SubscriptionFactory, UserFactory

from .helpers import load_sequence, process, subscription_notification, token_of

pytestmark = pytest.mark.django_db

STEP = load_sequence("06_purchase_grace_hold_recover.json", user_id="42")[0]
TOKEN = token_of(STEP)


@pytest.mark.parametrize("status", [500, 503, 429])
def test_api_failure_is_transient_then_recovers(adapter, google, status):
    google.set_purchase(TOKEN, STEP["subscriptionPurchaseV2"])
    google.fail_next("get", status)
    with pytest.raises(TransientError):
        process(adapter, google, STEP["developerNotification"])
    assert not Subscription.objects.filter(provider_subscription_id=TOKEN).exists()
    process(adapter, google, STEP["developerNotification"])  # the retry
    assert Subscription.objects.get(provider_subscription_id=TOKEN).status == "ACTIVE"


@pytest.mark.parametrize("status", [404, 410])
def test_unknown_token_fails_with_the_reason(adapter, google, status):
    google.set_purchase(TOKEN, STEP["subscriptionPurchaseV2"])
    google.fail_next("get", status)
    with pytest.raises(PermanentError, match=str(status)):
        process(adapter, google, STEP["developerNotification"])


def test_unreachable_api_and_token_endpoint_are_transient(adapter, google, settings):
    google.set_purchase(TOKEN, STEP["subscriptionPurchaseV2"])
    google.fail_next("token", 400)  # e.g. the key was revoked: an operator fixes it, then retries succeed
    with pytest.raises(TransientError, match="access token"):
        process(adapter, google, STEP["developerNotification"])
    process(adapter, google, STEP["developerNotification"])
    assert Subscription.objects.get(provider_subscription_id=TOKEN).status == "ACTIVE"
    settings.GOOGLE_PLAY_API_ENDPOINT = "http://127.0.0.1:9/"  # nothing listens
    with pytest.raises(StoreUnavailable):
        client.subscription_get(TOKEN)


def test_quota_is_shared_by_all_callers(adapter, google, settings):
    # A sliding 60 s window: the three calls below fall in one window whenever the test runs.
    settings.GOOGLE_PLAY_QUOTA_PER_MINUTE = 2
    google.set_purchase("tok-q", STEP["subscriptionPurchaseV2"] | {"acknowledgementState":
                                                                    "ACKNOWLEDGEMENT_STATE_ACKNOWLEDGED"})
    process(adapter, google, subscription_notification("tok-q", 2))  # webhook: 1 call
    subscription_resync(subscription=Subscription.objects.get(provider_subscription_id="tok-q"))  # re-poll: 2
    with pytest.raises(StoreUnavailable, match="calls/minute"):  # verify: over budget, Google not called
        adapter.verify({"purchase_token": "tok-q", "product_id": "session_pro"}, user_id="42")
    assert len(google.calls) == 2


def test_quota_refusals_do_not_spend_the_budget(adapter, google, settings):
    settings.GOOGLE_PLAY_QUOTA_PER_MINUTE = 1
    google.set_purchase(TOKEN, STEP["subscriptionPurchaseV2"])
    client.subscription_get(TOKEN)
    for _ in range(3):
        with pytest.raises(client.QuotaExceeded):
            client.subscription_get(TOKEN)
    settings.GOOGLE_PLAY_QUOTA_PER_MINUTE = 2  # one more call fits: the refused ones were not counted
    client.subscription_get(TOKEN)
    assert len(google.calls_of("get")) == 2


def test_verify_applies_links_and_acknowledges(adapter, google):
    google.set_purchase(TOKEN, STEP["subscriptionPurchaseV2"])
    (result,) = purchase_verify(provider="google", user_id="42",
                                purchase={"provider": "google", "purchase_token": TOKEN, "product_id": "session_pro"})
    sub = Subscription.objects.get(pk=result.subscription_id)
    assert sub.status == "ACTIVE" and sub.subscriber.external_id == "42"
    assert sub.subscriber.google_obfuscated_account_id == "42"
    assert sub.acknowledged_at is not None and len(google.calls_of("acknowledge")) == 1
    with pytest.raises(PurchaseOwnedByAnotherUser) as caught:
        purchase_verify(provider="google", user_id="502", purchase={"purchase_token": TOKEN})
    assert caught.value.subscription == sub and not caught.value.claimed_by_store


def test_verify_links_a_purchase_without_account_id_to_the_caller(adapter, google):
    purchase = {k: v for k, v in STEP["subscriptionPurchaseV2"].items() if k != "externalAccountIdentifiers"}
    google.set_purchase(TOKEN, purchase)
    (result,) = purchase_verify(provider="google", user_id="501", purchase={"purchase_token": TOKEN})
    sub = Subscription.objects.get(pk=result.subscription_id)
    assert sub.subscriber.external_id == "501" and sub.acknowledged_at is not None


def test_verify_refuses_a_purchase_google_says_another_user_made(adapter, google):
    google.set_purchase(TOKEN, STEP["subscriptionPurchaseV2"])  # obfuscatedExternalAccountId "42"
    with pytest.raises(PurchaseOwnedByAnotherUser) as caught:
        purchase_verify(provider="google", user_id="501", purchase={"purchase_token": TOKEN})
    assert caught.value.claimed_by_store and caught.value.subscription.pk is None
    assert TOKEN in str(caught.value) and "another user" in str(caught.value)
    assert not Subscription.objects.exists() and not Subscriber.objects.exists()  # nothing of 42 copied to 501
    assert google.calls_of("acknowledge") == []


def test_verify_refuses_an_orphan_google_says_another_user_made(adapter, google):
    """The RTDN came first and left an orphan (e.g. policy or timing): the hint still counts."""
    SubscriptionFactory(provider="google", provider_subscription_id=TOKEN, subscriber=None)
    google.set_purchase(TOKEN, STEP["subscriptionPurchaseV2"])
    with pytest.raises(PurchaseOwnedByAnotherUser) as caught:
        purchase_verify(provider="google", user_id="501", purchase={"purchase_token": TOKEN})
    assert caught.value.subscription.provider_subscription_id == TOKEN and caught.value.subscription.pk
    assert Subscription.objects.get(provider_subscription_id=TOKEN).subscriber is None


@pytest.mark.parametrize(("body", "fail", "error"), [
    ({"purchase_token": TOKEN, "product_id": "session_pro"}, 410, InvalidPurchase),
    ({"purchase_token": TOKEN, "product_id": "other_product"}, None, InvalidPurchase),
    ({"product_id": "session_pro"}, None, InvalidPurchase),
    ({"purchase_token": TOKEN, "product_id": "session_pro"}, 503, StoreUnavailable),
])
def test_verify_errors(adapter, google, body, fail, error):
    google.set_purchase(TOKEN, STEP["subscriptionPurchaseV2"])
    if fail:
        google.fail_next("get", fail)
    with pytest.raises(error):
        adapter.verify(body, user_id="42")


def test_repoll_fetches_the_current_state(adapter, google):
    google.set_purchase(TOKEN, STEP["subscriptionPurchaseV2"])
    process(adapter, google, STEP["developerNotification"])
    google.purchases[TOKEN]["subscriptionState"] = "SUBSCRIPTION_STATE_ON_HOLD"  # a notification we missed
    subscription_resync(subscription=Subscription.objects.get(provider_subscription_id=TOKEN))
    assert Subscription.objects.get(provider_subscription_id=TOKEN).status == "ON_HOLD"


def test_cancel_stops_renewal_at_google_and_keeps_access(adapter, google):
    google.set_purchase(TOKEN, STEP["subscriptionPurchaseV2"])
    process(adapter, google, STEP["developerNotification"])
    sub = Subscription.objects.get(provider_subscription_id=TOKEN)
    subscription_cancel(subscription=sub, actor="user 42")
    (call,) = google.calls_of("cancel")
    assert call["body"] == {"cancellationContext": {"cancellationType": "USER_REQUESTED_STOP_RENEWALS"}}
    sub.refresh_from_db()
    assert sub.status == "CANCELED" and sub.auto_renew is False and sub.expires_at is not None


@pytest.mark.parametrize("refund", ["full", "prorated"])
def test_staff_revoke_with_refund(adapter, google, refund):
    google.set_purchase(TOKEN, STEP["subscriptionPurchaseV2"])
    process(adapter, google, STEP["developerNotification"])
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
    process(adapter, google, subscription_notification(TOKEN, 13))
    sub.refresh_from_db()
    assert sub.status == "REVOKED"


def test_staff_defer_moves_the_renewal_with_the_etag(adapter, google):
    google.set_purchase(TOKEN, STEP["subscriptionPurchaseV2"])
    process(adapter, google, STEP["developerNotification"])
    sub = Subscription.objects.get(provider_subscription_id=TOKEN)
    before = sub.expires_at
    etag = google.purchases[TOKEN]["etag"]
    services.subscription_defer_at_google(subscription=sub, days=7, reason="outage goodwill", staff_user=UserFactory())
    (call,) = google.calls_of("defer")
    assert call["body"]["deferralContext"] == {"deferDuration": "604800s", "etag": etag, "validateOnly": False}
    sub.refresh_from_db()
    assert sub.expires_at - before == timedelta(days=7)


def test_staff_actions_need_a_reason_and_a_google_subscription(adapter, google):
    google.set_purchase(TOKEN, STEP["subscriptionPurchaseV2"])
    process(adapter, google, STEP["developerNotification"])
    sub = Subscription.objects.get(provider_subscription_id=TOKEN)
    with pytest.raises(services.StoreActionError, match="reason"):
        services.subscription_defer_at_google(subscription=sub, days=7, reason=" ", staff_user=UserFactory())
    assert google.calls_of("defer") == []


def test_admin_action_asks_for_a_reason_then_revokes(adapter, google, rf):
    from django.contrib import admin
    from django.contrib.messages.storage.fallback import FallbackStorage

    google.set_purchase(TOKEN, STEP["subscriptionPurchaseV2"])
    process(adapter, google, STEP["developerNotification"])
    sub = Subscription.objects.get(provider_subscription_id=TOKEN)
    model_admin = admin.ModelAdmin(Subscription, admin.site)
    action = ACTIONS[0]

    def request(data):
        req = rf.post("/admin/billing/subscription/", data)
        req.user = UserFactory()
        req.session = {}
        req._messages = FallbackStorage(req)
        return req

    page = action(model_admin, request({"action": action.__name__}), Subscription.objects.filter(pk=sub.pk))
    page.render()
    assert b'name="reason"' in page.content and google.calls_of("revoke") == []
    assert action(model_admin, request({"action": action.__name__, "apply": "1", "refund": "full",
                                        "reason": "chargeback threat"}),
                  Subscription.objects.filter(pk=sub.pk)) is None
    sub.refresh_from_db()
    assert sub.status == "REVOKED" and len(google.calls_of("revoke")) == 1
