"""`manage.py erase_subscriber` and the subscribers admin's erase action: refused while a paid
subscription is live (unless --force), then no column of the database names the customer, the ledger's
totals are unchanged, the check API says not subscribed and the stream says so."""

import pytest
from django.core.management import CommandError, call_command
from django.db.models import Count, Sum

from accounts.models import Subscriber
from audit.models import AuditEntry, Note
from billing.models import StatusChange, Subscription, Transaction
from privacy.models import Erasure
from tests.helpers import stream_events
from tests.privacy.conftest import database_hits, make_customer
from webhooks.models import WebhookEvent

pytestmark = pytest.mark.django_db


def ledger():
    return (Transaction.objects.values("currency", "kind").annotate(total=Sum("amount_minor"), n=Count("id"))
            .order_by("currency", "kind"))


def test_refused_while_a_paid_subscription_is_live_naming_it(customer):
    with pytest.raises(CommandError) as refused:
        call_command("erase_subscriber", customer.user_id, "--reason", "ticket 1")
    message = str(refused.value)
    assert "stripe subscription sub_ZQ7391 (ACTIVE" in message and "cancel" in message and "at the store" in message
    assert Subscriber.objects.get(pk=customer.subscriber.pk).email == customer.email  # nothing changed
    assert not Erasure.objects.exists()


def test_dry_run_says_what_would_change_and_changes_nothing(customer, capsys):
    before = database_hits(customer.email)
    call_command("erase_subscriber", customer.user_id, "--reason", "ticket 2", "--force", "--dry-run")
    out = capsys.readouterr().out
    assert "Dry run" in out and "stripe:sub_ZQ7391" in out and "webhook events emptied: 3" in out
    assert database_hits(customer.email) == before
    assert Subscription.objects.get(pk=customer.stripe_sub.pk).status == "ACTIVE"
    assert not Erasure.objects.exists()


def test_forced_erasure_leaves_nothing_that_names_the_customer(customer, client, django_capture_on_commit_callbacks,
                                                               capsys):
    with django_capture_on_commit_callbacks(execute=True):
        other = make_customer(suffix="QX5510", live=False)  # another customer, untouched
    assert client.get(f"/api/subscriptions/check/{customer.user_id}").json()["is_subscribed"] is True  # cached
    totals = list(ledger())
    for secret in customer.secrets:
        assert database_hits(secret), secret  # the search finds them before

    with django_capture_on_commit_callbacks(execute=True):
        call_command("erase_subscriber", customer.user_id, "--reason", "GDPR ticket 3", "--force")
    out = capsys.readouterr().out
    assert "Erased as erased-" in out and "stripe:sub_ZQ7391" in out

    for secret in customer.secrets:
        assert database_hits(secret) == [], secret
    assert list(ledger()) == totals  # finance totals unchanged, every row kept
    answer = client.get(f"/api/subscriptions/check/{customer.user_id}").json()
    assert answer["is_subscribed"] is False and answer["user_id"] == customer.user_id

    # the stream: the revocation, under the id consumers know
    last = [e for e in stream_events() if e["userId"] == customer.user_id][-1]
    assert (last["newStatus"], last["isSubscribed"], last["subscriptionId"]) == ("REVOKED", False, "sub_ZQ7391")

    erasure = Erasure.objects.get()
    subscriber = Subscriber.objects.get(pk=customer.subscriber.pk)
    assert subscriber.external_id == erasure.pseudonym and erasure.pseudonym.startswith("erased-")
    assert erasure.reason == "GDPR ticket 3" and erasure.forced and "manage.py erase_subscriber" in erasure.actor_label
    assert erasure.counts["webhook_events_emptied"] == 3 and erasure.counts["subscriptions_revoked"] == 1
    # kept under the pseudonym: subscriptions, ledger, history; the events' rows and dedupe keys
    assert Subscription.objects.filter(subscriber=subscriber).count() == 2
    assert StatusChange.objects.filter(subscription__subscriber=subscriber, note__contains="privacy erasure").exists()
    assert WebhookEvent.objects.filter(dedupe_key="evt_ZQ7391_1", body=b"").exists()
    assert Note.objects.get(subscriber=subscriber).text == "[erased: privacy request]"
    assert AuditEntry.objects.filter(action="erase_subscriber", subscriber=subscriber).exists()
    # the other customer is untouched
    for secret in other.secrets:
        assert database_hits(secret), secret
    assert client.get("/api/subscriptions/check/cust-QX5510").json()["user_id"] == "cust-QX5510"


def test_without_a_live_paid_subscription_no_force_is_needed(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        lapsed = make_customer(suffix="LP2201", live=False)
    with django_capture_on_commit_callbacks(execute=True):
        call_command("erase_subscriber", lapsed.user_id, "--reason", "ticket 4")
    # nothing to revoke: the stream still hears that the user is gone, not subscribed (no status change)
    last = [e for e in stream_events() if e["userId"] == lapsed.user_id][-1]
    assert (last["oldStatus"], last["newStatus"], last["isSubscribed"]) == ("EXPIRED", "EXPIRED", False)
    assert last["subscriptionId"] == "sub_LP2201"
    for secret in lapsed.secrets:
        assert database_hits(secret) == [], secret
    with pytest.raises(CommandError, match="No subscriber"):
        call_command("erase_subscriber", lapsed.user_id, "--reason", "again")


def test_the_admin_action_asks_for_a_reason_and_refuses_a_live_payer(customer, client):
    from tests.factories import UserFactory

    staff = UserFactory(username="privacy-officer")
    client.force_login(staff)
    url = "/admin/accounts/subscriber/"
    page = client.post(url, {"action": "erase_personal_data", "_selected_action": [customer.subscriber.pk]})
    text = page.content.decode()
    assert page.status_code == 200 and "reason" in text and "stripe:sub_ZQ7391" in text  # says who still pays
    refused = client.post(url, {"action": "erase_personal_data", "_selected_action": [customer.subscriber.pk],
                                "apply": "1", "reason": "ticket 5"}, follow=True)
    assert "cancel (or refund) it at the store first" in refused.content.decode()
    assert not Erasure.objects.exists()
    client.post(url, {"action": "erase_personal_data", "_selected_action": [customer.subscriber.pk],
                      "apply": "1", "reason": "ticket 5", "force": "on"})
    erasure = Erasure.objects.get()
    assert erasure.actor_user == staff and erasure.reason == "ticket 5"
    assert Subscriber.objects.get(pk=customer.subscriber.pk).external_id == erasure.pseudonym
