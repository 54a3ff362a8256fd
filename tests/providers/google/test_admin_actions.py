"""Staff actions on Google subscriptions through the admin's own HTTP views: the changelist action
asks for a reason on an intermediate page, then goes to Google (the fake) and applies what it re-reads."""

from datetime import timedelta

import pytest
from django.utils import timezone

from billing.models import Subscription
from tests.factories import UserFactory
from tests.fakes.google import rfc3339

from .helpers import load_sequence, process, token_of

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/billing/subscription/"
STEP = load_sequence("06_purchase_grace_hold_recover.json", user_id="42")[0]
TOKEN = token_of(STEP)


@pytest.fixture
def subscription(adapter, google):
    purchase = STEP["subscriptionPurchaseV2"]
    purchase["lineItems"][0]["expiryTime"] = rfc3339(timezone.now() + timedelta(days=10))  # Google's ms precision
    google.set_purchase(TOKEN, purchase)
    process(adapter, google, STEP["developerNotification"])
    return Subscription.objects.get(provider_subscription_id=TOKEN)


@pytest.fixture
def staff(client):
    user = UserFactory(username="support-lead")
    client.force_login(user)
    return user


def test_defer_action_asks_for_a_reason_then_defers_at_google(client, google, subscription, staff, caplog):
    caplog.set_level("INFO", logger="billing.providers.google.services")
    before = subscription.expires_at
    etag = google.purchases[TOKEN]["etag"]

    page = client.post(CHANGELIST, {"action": "google_defer_renewal", "_selected_action": [subscription.pk]})
    assert page.status_code == 200
    assert b"Defer renewal at Google Play" in page.content
    assert b'name="reason"' in page.content and b'name="days"' in page.content
    assert google.calls_of("defer") == []  # nothing happens before staff confirm

    done = client.post(CHANGELIST, {"action": "google_defer_renewal", "_selected_action": [subscription.pk],
                                    "apply": "1", "days": "7", "reason": "outage goodwill"}, follow=True)
    assert done.status_code == 200
    assert b"next renewal deferred by 7 days at Google, and re-read" in done.content
    (call,) = google.calls_of("defer")
    assert call["body"]["deferralContext"] == {"deferDuration": "604800s", "etag": etag, "validateOnly": False}
    subscription.refresh_from_db()
    assert subscription.expires_at - before == timedelta(days=7)
    assert subscription.status == "ACTIVE" and subscription.is_entitled(before + timedelta(days=6))
    # a defer changes no status, so no history row: the log keeps who did it and why
    assert any("support-lead" in r.getMessage() and "outage goodwill" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(("days", "reason", "complaint"), [
    ("7", "", b"This field is required"),
    ("0", "goodwill", b"greater than or equal to 1"),
    ("400", "goodwill", b"less than or equal to 365"),
])
def test_defer_action_without_a_valid_form_shows_it_again_and_does_nothing(client, google, subscription, staff,
                                                                           days, reason, complaint):
    page = client.post(CHANGELIST, {"action": "google_defer_renewal", "_selected_action": [subscription.pk],
                                    "apply": "1", "days": days, "reason": reason})
    assert page.status_code == 200 and complaint in page.content
    assert google.calls_of("defer") == []


def test_defer_refused_by_google_is_shown_to_staff(client, google, subscription, staff):
    google.fail_next("defer", 409)  # the purchase changed at Google since the etag was read
    before = subscription.expires_at
    done = client.post(CHANGELIST, {"action": "google_defer_renewal", "_selected_action": [subscription.pk],
                                    "apply": "1", "days": "3", "reason": "goodwill"}, follow=True)
    assert done.status_code == 200 and b"409" in done.content
    subscription.refresh_from_db()
    assert subscription.expires_at == before
    assert len(google.calls_of("defer")) == 1
