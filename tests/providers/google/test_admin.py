"""Google Play in the subscriptions admin (admin.py): the staff actions through the admin's own HTTP
views (the changelist action asks for a reason on the confirm-action page, then goes to Google, the
fake, and applies what it re-reads), and the list filter of purchases near their acknowledgement
deadline (Google refunds after 3 days)."""

from datetime import timedelta

import pytest
from django.contrib import admin
from django.contrib.auth.models import Permission
from django.contrib.messages.storage.fallback import FallbackStorage
from django.utils import timezone

from audit.models import AuditEntry
from billing.models import Subscription
from billing.providers.google.admin import ACTIONS
from tests.factories import SubscriptionFactory, UserFactory
from tests.fakes.google import rfc3339

from .conftest import load_sequence, push, token_of

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/billing/subscription/"
STEP = load_sequence("06_purchase_grace_hold_recover.json", user_id="42")[0]
TOKEN = token_of(STEP)


@pytest.fixture
def subscription(google):
    purchase = STEP["subscriptionPurchaseV2"]
    purchase["lineItems"][0]["expiryTime"] = rfc3339(timezone.now() + timedelta(days=10))  # Google's ms precision
    google.set_purchase(TOKEN, purchase)
    return push(google, STEP["developerNotification"]).subscription


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

def test_admin_action_asks_for_a_reason_then_revokes(google, subscription, rf):
    model_admin = admin.ModelAdmin(Subscription, admin.site)
    action = ACTIONS[0]

    def request(data):
        req = rf.post(CHANGELIST, data)
        req.user = UserFactory()
        req.session = {}
        req._messages = FallbackStorage(req)
        return req

    page = action(model_admin, request({"action": action.__name__}), Subscription.objects.filter(pk=subscription.pk))
    page.render()
    assert b'name="reason"' in page.content and google.calls_of("revoke") == []
    assert action(model_admin, request({"action": action.__name__, "apply": "1", "refund": "full",
                                        "reason": "chargeback threat"}),
                  Subscription.objects.filter(pk=subscription.pk)) is None
    subscription.refresh_from_db()
    assert subscription.status == "REVOKED" and len(google.calls_of("revoke")) == 1


def test_subscriptions_admin_filters_purchases_near_the_acknowledgement_deadline(client):
    client.force_login(UserFactory(username="support"))
    now = timezone.now()
    due_soon = SubscriptionFactory(provider="google", provider_subscription_id="tok-due-soon",
                                   acknowledgement_due_at=now + timedelta(hours=5))
    due_later = SubscriptionFactory(provider="google", provider_subscription_id="tok-due-later",
                                    acknowledgement_due_at=now + timedelta(days=2))
    acknowledged = SubscriptionFactory(provider="google", provider_subscription_id="tok-done",
                                       acknowledgement_due_at=now + timedelta(hours=5), acknowledged_at=now)

    response = client.get("/admin/billing/subscription/", {"google_ack": "24h"})
    assert response.status_code == 200
    listed = {s.pk for s in response.context["cl"].result_list}
    assert due_soon.pk in listed
    assert due_later.pk not in listed and acknowledged.pk not in listed
    assert b"Google acknowledgement" in response.content

    awaiting = client.get("/admin/billing/subscription/", {"google_ack": "awaiting"})
    assert {s.pk for s in awaiting.context["cl"].result_list} == {due_soon.pk, due_later.pk}


def test_defer_and_revoke_record_who_and_why_in_the_audit_log(client, google, subscription, staff):
    client.post(f"/admin/billing/subscription/{subscription.pk}/store-action/google_defer_renewal/",
                {"apply": "1", "days": "3", "reason": "outage goodwill"})
    client.post(f"/admin/billing/subscription/{subscription.pk}/store-action/google_revoke_with_refund/",
                {"apply": "1", "refund": "prorated", "reason": "chargeback threat"})
    defer, revoke = AuditEntry.objects.order_by("created_at", "id")
    assert (defer.action, defer.reason, defer.actor_user, defer.details["days"]) == (
        "store_defer", "outage goodwill", staff, 3)
    assert (revoke.action, revoke.reason, revoke.details["refund"], revoke.details["new_status"]) == (
        "store_revoke_refund", "chargeback threat", "prorated", "REVOKED")
    assert {defer.subscription_id, revoke.subscription_id} == {subscription.pk}


def test_revoking_with_a_refund_needs_the_refund_permission(client, google, subscription):
    agent = UserFactory(username="agent", is_superuser=False)
    agent.user_permissions.add(*Permission.objects.filter(
        content_type__app_label="billing", codename__in=["view_subscription", "change_subscription"]))
    client.force_login(agent)
    page = client.get(f"/admin/billing/subscription/{subscription.pk}/change/")
    assert b"store-action/google_defer_renewal/" in page.content
    assert b"store-action/google_revoke_with_refund/" not in page.content
    assert client.post(f"/admin/billing/subscription/{subscription.pk}/store-action/google_revoke_with_refund/",
                       {"apply": "1", "refund": "full", "reason": "x"}).status_code == 403
    client.post(CHANGELIST, {"action": "google_revoke_with_refund", "_selected_action": [subscription.pk],
                             "apply": "1", "refund": "full", "reason": "x"})
    assert google.calls_of("revoke") == []
    subscription.refresh_from_db()
    assert subscription.status == "ACTIVE"
