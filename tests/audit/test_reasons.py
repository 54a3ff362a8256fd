"""Every staff change asks why and records who and why in the audit log, in the change's own
transaction: a grant, a revoke, a move, an identity edit (before/after); a missing reason is refused
with a message and changes nothing. (Replays: tests/webhooks/test_replay.py; re-sync:
tests/billing/test_admin.py.)"""

import uuid

import pytest
from django.urls import reverse

from accounts.models import Subscriber
from audit.models import AuditEntry
from billing.models import StatusChange, Subscription
from billing.statuses import Status
from tests.factories import EntitlementFactory, SubscriberFactory, SubscriptionFactory, UserFactory
from tests.helpers import stream_events

pytestmark = pytest.mark.django_db

SUBSCRIPTIONS = reverse("admin:billing_subscription_changelist")
SUBSCRIBERS = reverse("admin:accounts_subscriber_changelist")


@pytest.fixture
def staff(client):
    user = UserFactory(username="agent.kim")
    client.force_login(user)
    return user


def act(client, url, action, objects, **fields):
    return client.post(url, {"action": action, "_selected_action": [o.pk for o in objects], **fields}, follow=True)


def test_a_grant_records_who_and_why(client, staff, django_capture_on_commit_callbacks):
    user = SubscriberFactory(external_id="1003")
    premium = EntitlementFactory(name="premium")
    with django_capture_on_commit_callbacks(execute=True):
        act(client, SUBSCRIBERS, "grant_access", [user], apply="1", entitlement=premium.pk,
            until="2099-01-31", reason="  goodwill, ticket 88  ")
    grant = Subscription.objects.get(provider="manual")
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.actor_user, entry.actor_label, entry.reason) == (
        "grant", staff, "agent.kim", "goodwill, ticket 88")
    assert (entry.subscriber, entry.subscription_id) == (user, grant.pk)
    assert entry.details["undoable"] is True and entry.details["after"]["status"] == "ACTIVE"
    # The history row keeps working as before.
    assert StatusChange.objects.get(subscription=grant).note == "goodwill, ticket 88"
    assert [e["newStatus"] for e in stream_events()] == ["ACTIVE"]


@pytest.mark.parametrize("reason", ["", "   \n "])
def test_a_grant_without_a_reason_is_refused_and_changes_nothing(client, staff, reason):
    user = SubscriberFactory(external_id="1004")
    response = act(client, SUBSCRIBERS, "grant_access", [user], apply="1",
                   entitlement=EntitlementFactory(name="premium").pk, reason=reason)
    assert "This field is required" in response.content.decode()  # the page again, with the message
    assert not Subscription.objects.exists() and not AuditEntry.objects.exists()


def test_a_revoke_records_who_why_and_what_it_took(client, staff):
    sub = SubscriptionFactory(subscriber=SubscriberFactory(external_id="1005"), provider="stripe",
                              status=Status.ACTIVE)
    refused = act(client, SUBSCRIPTIONS, "revoke", [sub], apply="1", reason=" ")
    assert "This field is required" in refused.content.decode()
    assert Subscription.objects.get(pk=sub.pk).status == Status.ACTIVE and not AuditEntry.objects.exists()

    act(client, SUBSCRIPTIONS, "revoke", [sub], apply="1", reason="chargeback, ticket 90")
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.actor_user, entry.reason, entry.subscription_id) == (
        "revoke", staff, "chargeback, ticket 90", sub.pk)
    assert (entry.details["before"]["status"], entry.details["after"]["status"]) == ("ACTIVE", "REVOKED")


def test_a_move_to_another_user_records_both_owners(client, staff):
    sub = SubscriptionFactory(subscriber=SubscriberFactory(external_id="1006"), provider="stripe")
    refused = act(client, SUBSCRIPTIONS, "link_to_user", [sub], apply="1", user_id="1007", move="on")
    assert "This field is required" in refused.content.decode()
    act(client, SUBSCRIPTIONS, "link_to_user", [sub], apply="1", user_id="1007", move="on",
        reason="bought on the wrong account, ticket 91")
    assert Subscription.objects.get(pk=sub.pk).subscriber.external_id == "1007"
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.reason, entry.subscriber.external_id) == (
        "move", "bought on the wrong account, ticket 91", "1007")
    assert (entry.details["before"]["user_id"], entry.details["after"]["user_id"]) == ("1006", "1007")
    assert entry.details["undoable"] is True


def _subscriber_form(subscriber: Subscriber, **changes) -> dict:
    form = {"email": subscriber.email, "stripe_customer_id": subscriber.stripe_customer_id or "",
            "apple_app_account_token": subscriber.apple_app_account_token or "",
            "google_obfuscated_account_id": subscriber.google_obfuscated_account_id or "",
            "xsolla_user_id": subscriber.xsolla_user_id or "",
            "subscriptions-TOTAL_FORMS": "0", "subscriptions-INITIAL_FORMS": "0"}
    return {**form, **changes}


def test_an_identity_edit_needs_a_reason_and_records_before_and_after(client, staff):
    user = SubscriberFactory(external_id="1008", stripe_customer_id="cus_old")
    url = reverse("admin:accounts_subscriber_change", args=[user.pk])
    assert 'name="reason"' in client.get(url).content.decode()

    token = uuid.uuid4()
    refused = client.post(url, _subscriber_form(user, stripe_customer_id="cus_new", apple_app_account_token=token))
    assert refused.status_code == 200 and "This field is required" in refused.content.decode()
    user.refresh_from_db()
    assert user.stripe_customer_id == "cus_old" and not AuditEntry.objects.exists()

    saved = client.post(url, _subscriber_form(user, stripe_customer_id="cus_new", apple_app_account_token=token,
                                              reason="merged duplicate Stripe customer, ticket 92"))
    assert saved.status_code == 302
    user.refresh_from_db()
    assert user.stripe_customer_id == "cus_new"
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.actor_user, entry.subscriber, entry.reason) == (
        "identity_edit", staff, user, "merged duplicate Stripe customer, ticket 92")
    assert sorted(entry.details["changed"]) == ["apple_app_account_token", "stripe_customer_id"]
    assert entry.details["before"] == {"stripe_customer_id": "cus_old", "apple_app_account_token": None}
    assert entry.details["after"] == {"stripe_customer_id": "cus_new", "apple_app_account_token": str(token)}



def test_saving_a_subscriber_unchanged_records_nothing(client, staff):
    user = SubscriberFactory(external_id="1009", stripe_customer_id="cus_same")
    url = reverse("admin:accounts_subscriber_change", args=[user.pk])
    assert client.post(url, _subscriber_form(user, reason="looked at it")).status_code == 302
    assert not AuditEntry.objects.exists()
