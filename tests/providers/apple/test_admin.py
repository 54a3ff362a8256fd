"""The App Store's staff actions (billing/providers/apple/admin.py), through the admin's own HTTP views
and the App Store Server API fake (the official library's client, signed requests): extend the renewal
date, answer a CONSUMPTION_REQUEST (from the subscription or from the webhook event), and look up an
order id from a receipt e-mail. The automatic answer: test_services.py."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone

from audit.models import AuditEntry
from billing.models import Subscription
from billing.statuses import Status
from tests.factories import UserFactory

from .conftest import consumption_request

pytestmark = pytest.mark.django_db



def action_url(sub: Subscription, name: str) -> str:
    return f"/admin/billing/subscription/{sub.pk}/store-action/{name}/"


@pytest.fixture
def lead(client):
    user = UserFactory(username="support-lead")
    client.force_login(user)
    return user


def calls(fake, method: str, path_start: str) -> list[dict]:
    return [r for r in fake.requests if r["method"] == method and r["path"].startswith(path_start)]


# --- Extend the renewal date -------------------------------------------------------------------------

def test_extend_the_renewal_date_from_the_subscription_page(client, fake_appstore, apple_sub, lead, active_txn):
    before = apple_sub.expires_at
    page = client.get(f"/admin/billing/subscription/{apple_sub.pk}/change/")
    assert action_url(apple_sub, "apple_extend_renewal_date").encode() in page.content
    form = client.get(action_url(apple_sub, "apple_extend_renewal_date"))
    assert b'name="days"' in form.content and b'name="reason"' in form.content

    done = client.post(action_url(apple_sub, "apple_extend_renewal_date"),
                       {"apply": "1", "days": "14", "reason_code": "3", "reason": "outage on 2 Dec"}, follow=True)
    assert "renewal date extended by 14 days at Apple, and re-read" in done.content.decode()
    [call] = calls(fake_appstore, "PUT", f"/inApps/v1/subscriptions/extend/{apple_sub.provider_subscription_id}")
    assert (call["body"]["extendByDays"], call["body"]["extendReasonCode"]) == (14, 3)
    assert call["body"]["requestIdentifier"] and call["token"] is not None  # signed with our In-App Purchase key
    apple_sub.refresh_from_db()
    assert apple_sub.expires_at - before == timedelta(days=14)  # Apple's new renewal date, re-read
    assert apple_sub.status == Status.ACTIVE
    entry = AuditEntry.objects.get(action="store_extend")
    assert (entry.actor_user, entry.reason, entry.subscription_id) == (lead, "outage on 2 Dec", apple_sub.pk)
    assert entry.details["days"] == 14 and entry.details["request_identifier"] == call["body"]["requestIdentifier"]


def test_apple_refusing_an_extension_is_shown_and_nothing_changes(client, fake_appstore, apple_sub, lead):
    fake_appstore.extensions[apple_sub.provider_subscription_id] = 2  # two extensions this year already
    before = apple_sub.expires_at
    page = client.post(action_url(apple_sub, "apple_extend_renewal_date"),
                       {"apply": "1", "days": "7", "reason_code": "1", "reason": "goodwill"}, follow=True)
    assert "4030005" in page.content.decode() and "maximum number of extensions" in page.content.decode()
    apple_sub.refresh_from_db()
    assert apple_sub.expires_at == before
    assert not AuditEntry.objects.exists()


def test_extend_days_outside_apples_range_are_refused_by_the_form(client, fake_appstore, apple_sub, lead):
    page = client.post(action_url(apple_sub, "apple_extend_renewal_date"),
                       {"apply": "1", "days": "91", "reason_code": "1", "reason": "goodwill"})
    assert page.status_code == 200 and b"less than or equal to 90" in page.content
    assert calls(fake_appstore, "PUT", "/inApps/v1/subscriptions/extend/") == []


# --- Answer a CONSUMPTION_REQUEST ---------------------------------------------------------------------

def test_staff_answer_a_consumption_request_from_the_webhook_event(client, apple_chain, fake_appstore, apple_sub,
                                                                   lead, active_txn):
    event = consumption_request(apple_chain, active_txn)
    page = client.get(f"/admin/webhooks/webhookevent/{event.pk}/change/")
    link = action_url(apple_sub, "apple_answer_consumption_request") + f"?transaction_id={active_txn['transactionId']}"
    assert link.encode() in page.content

    form = client.get(link)
    assert f'value="{active_txn["transactionId"]}"'.encode() in form.content  # filled in from the event
    done = client.post(link, {"apply": "1", "transaction_id": active_txn["transactionId"], "customer_consented": "on",
                              "sample_content_provided": "on", "delivery_status": "DELIVERED",
                              "consumption_percentage": "33.5", "refund_preference": "DECLINE",
                              "reason": "used it for 10 days"}, follow=True)
    tid = active_txn["transactionId"]
    assert f"consumption information for transaction {tid} sent to Apple" in done.content.decode()
    assert fake_appstore.consumption[active_txn["transactionId"]] == [{
        "customerConsented": True, "sampleContentProvided": True, "deliveryStatus": "DELIVERED",
        "consumptionPercentage": 33500, "refundPreference": "DECLINE"}]
    entry = AuditEntry.objects.get(action="store_consumption_answer")
    assert entry.reason == "used it for 10 days" and entry.details["delivery_status"] == "DELIVERED"
    apple_sub.refresh_from_db()
    assert apple_sub.status == Status.ACTIVE  # nothing changes until Apple decides


def test_the_answer_needs_the_customers_consent(client, fake_appstore, apple_sub, lead):
    page = client.post(action_url(apple_sub, "apple_answer_consumption_request"),
                       {"apply": "1", "delivery_status": "DELIVERED", "reason": "r"})
    assert page.status_code == 200 and b"This field is required" in page.content
    assert fake_appstore.consumption == {}


def test_from_the_subscription_the_latest_payment_is_answered(client, fake_appstore, apple_sub, lead, active_txn):
    client.post(action_url(apple_sub, "apple_answer_consumption_request"),
                {"apply": "1", "customer_consented": "on", "delivery_status": "UNDELIVERED_SERVER_OUTAGE",
                 "reason": "our outage"})
    assert fake_appstore.consumption[active_txn["transactionId"]][0]["deliveryStatus"] == "UNDELIVERED_SERVER_OUTAGE"


# --- Look up an order id ------------------------------------------------------------------------------

def test_look_up_an_order_id_links_to_the_subscription_we_hold(client, apple_chain, fake_appstore, apple_sub, lead,
                                                               active_txn):
    fake_appstore.add_order("MK5TTTVWJH", apple_chain, [active_txn])
    listing = client.get("/admin/billing/subscription/")
    assert b"/admin/billing/subscription/apple-order-lookup/" in listing.content

    page = client.get("/admin/billing/subscription/apple-order-lookup/", {"order_id": "mk5tttvwjh"})
    text = page.content.decode()
    assert page.status_code == 200 and active_txn["transactionId"] in text and active_txn["productId"] in text
    assert f"/admin/billing/subscription/{apple_sub.pk}/change/" in text and "user 77" in text
    [call] = calls(fake_appstore, "GET", "/inApps/v1/lookup/")
    assert call["path"].endswith("/MK5TTTVWJH")


def test_look_up_an_unknown_order_says_so(client, fake_appstore, apple_sub, lead):
    page = client.get("/admin/billing/subscription/apple-order-lookup/", {"order_id": "NOPE123"})
    assert "Apple knows no order NOPE123" in page.content.decode()


def test_viewers_cannot_extend(client, fake_appstore, apple_sub):
    viewer = UserFactory(username="viewer", is_superuser=False)
    viewer.user_permissions.add(Permission.objects.get(content_type__app_label="billing", codename="view_subscription"))
    client.force_login(viewer)
    assert client.post(action_url(apple_sub, "apple_extend_renewal_date"),
                       {"apply": "1", "days": "3", "reason_code": "1", "reason": "x"}).status_code == 403
    assert calls(fake_appstore, "PUT", "/inApps/v1/subscriptions/extend/") == []
    assert timezone.now() < apple_sub.expires_at


def test_the_order_lookup_needs_the_view_permission(client, fake_appstore, apple_sub):
    client.force_login(UserFactory(username="nobody", is_superuser=False))
    assert client.get("/admin/billing/subscription/apple-order-lookup/", {"order_id": "X1"}).status_code == 403
    assert calls(fake_appstore, "GET", "/inApps/v1/lookup/") == []
