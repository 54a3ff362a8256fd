"""Undo a staff fix from its audit entry (support/undo.py, /admin/support/undo/<id>/): the previous state
comes back through the write path and is published on the stream; the original and the undo both stay;
an entry cannot be undone twice; a subscription that changed since refuses."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEntry
from billing import staff as fixes
from billing.apply import apply_snapshot
from billing.models import Subscription
from billing.snapshots import Cause, CauseKind, Snapshot
from billing.statuses import Status
from support.undo import UndoRefused, entry_undo
from tests.factories import EntitlementFactory, SubscriberFactory, UserFactory
from tests.helpers import stream_events

pytestmark = pytest.mark.django_db


@pytest.fixture
def agent(client):
    user = UserFactory(username="agent.lee")
    client.force_login(user)
    return user


def undo_url(entry):
    return reverse("support-undo", args=[entry.pk])


def stripe_subscription(user_id="2001", minutes_ago=30):
    at = timezone.now() - timedelta(minutes=minutes_ago)
    result = apply_snapshot(Snapshot(provider="stripe", provider_subscription_id=f"sub_{user_id}",
                                     status=Status.ACTIVE, observed_at=at, store_product_id="price_monthly",
                                     user_id=user_id, expires_at=at + timedelta(days=30), auto_renew=True),
                            Cause(CauseKind.WEBHOOK, ref="evt"))
    return Subscription.objects.get(pk=result.subscription_id)


def test_undo_a_grant_from_its_page(client, agent, django_capture_on_commit_callbacks):
    user = SubscriberFactory(external_id="2002")
    with django_capture_on_commit_callbacks(execute=True):
        grant = fixes.manual_grant(subscriber=user, entitlement=EntitlementFactory(name="premium"), until=None,
                                   reason="wrong user, oops", staff_user=agent)
    entry = AuditEntry.objects.get(action="grant")
    page = client.get(undo_url(entry)).content.decode()
    assert "Revoke the grant" in page and 'name="reason"' in page

    refused = client.post(undo_url(entry), {"reason": "  "})
    assert "This field is required" in refused.content.decode()
    assert Subscription.objects.get(pk=grant.pk).status == Status.ACTIVE

    with django_capture_on_commit_callbacks(execute=True):
        done = client.post(undo_url(entry), {"reason": "granted to the wrong user"})
    assert done.status_code == 302
    grant.refresh_from_db()
    assert grant.status == Status.REVOKED
    assert client.get("/api/subscriptions/check/2002", REMOTE_ADDR="127.0.0.1").json()["is_subscribed"] is False
    undo = AuditEntry.objects.get(undoes=entry)
    assert (undo.action, undo.actor_user, undo.reason) == ("undo_grant", agent, "granted to the wrong user")
    assert AuditEntry.objects.count() == 2  # the original stays
    assert [(e["userId"], e["oldStatus"], e["newStatus"]) for e in stream_events()] == [
        ("2002", "INACTIVE", "ACTIVE"), ("2002", "ACTIVE", "REVOKED")]

    again = client.get(undo_url(entry)).content.decode()
    assert "Already undone by agent.lee" in again
    assert client.post(undo_url(entry), {"reason": "twice"}).status_code == 409
    with pytest.raises(UndoRefused, match="Already undone"):
        entry_undo(entry_id=entry.pk, reason="twice", staff_user=agent)
    with pytest.raises(UndoRefused, match="itself an undo"):
        entry_undo(entry_id=undo.pk, reason="undo the undo", staff_user=agent)
    assert AuditEntry.objects.count() == 2


def test_undo_a_revoke_restores_what_it_took_and_publishes(agent, django_capture_on_commit_callbacks):
    sub = stripe_subscription("2003")
    before = Subscription.objects.get(pk=sub.pk)
    with django_capture_on_commit_callbacks(execute=True):
        fixes.subscription_revoke(subscription=sub, reason="suspected fraud", staff_user=agent)
    assert Subscription.objects.get(pk=sub.pk).status == Status.REVOKED
    entry = AuditEntry.objects.get(action="revoke")

    with django_capture_on_commit_callbacks(execute=True):
        undo = entry_undo(entry_id=entry.pk, reason="not fraud after all", staff_user=agent)
    sub.refresh_from_db()
    assert (sub.status, sub.expires_at, sub.auto_renew) == (Status.ACTIVE, before.expires_at, before.auto_renew)
    assert sub.is_entitled(timezone.now())
    assert (undo.action, undo.undoes, undo.details["after"]["status"]) == ("undo_revoke", entry, "ACTIVE")
    assert [(e["oldStatus"], e["newStatus"]) for e in stream_events()][-2:] == [
        ("ACTIVE", "REVOKED"), ("REVOKED", "ACTIVE")]
    assert sub.status_changes.filter(new_status="ACTIVE", cause="staff", staff_user=agent,
                                     note="not fraud after all").exists()


def test_undo_an_extension_puts_the_end_back(agent):
    user = SubscriberFactory(external_id="2004")
    first_end = (timezone.now() + timedelta(days=3)).replace(microsecond=0)
    grant = fixes.manual_grant(subscriber=user, entitlement=EntitlementFactory(name="premium"), until=first_end,
                               reason="trial extension", staff_user=agent)
    fixes.manual_extend(subscription=grant, until=first_end + timedelta(days=30), reason="goodwill",
                        staff_user=agent)
    entry_undo(entry_id=AuditEntry.objects.get(action="extend").pk, reason="too generous", staff_user=agent)
    grant.refresh_from_db()
    assert (grant.status, grant.expires_at) == (Status.ACTIVE, first_end)


def test_undo_a_move_gives_it_back(agent):
    sub = stripe_subscription("2005")
    fixes.subscription_move(subscription=sub, subscriber=SubscriberFactory(external_id="2006"), reason="asked to",
                            staff_user=agent)
    entry_undo(entry_id=AuditEntry.objects.get(action="move").pk, reason="wrong account", staff_user=agent)
    assert Subscription.objects.get(pk=sub.pk).subscriber.external_id == "2005"
    assert AuditEntry.objects.get(action="undo_move").undoes.action == "move"


def test_a_newer_store_event_since_the_fix_refuses_the_undo(client, agent):
    sub = stripe_subscription("2007", minutes_ago=60)
    fixes.subscription_revoke(subscription=sub, reason="fraud", staff_user=agent)
    entry = AuditEntry.objects.get(action="revoke")
    # The store renews it after the revoke: its state is newer than the fix.
    apply_snapshot(Snapshot(provider="stripe", provider_subscription_id="sub_2007", status=Status.ACTIVE,
                            observed_at=timezone.now() + timedelta(seconds=1), expires_at=timezone.now()
                            + timedelta(days=31)), Cause(CauseKind.WEBHOOK, ref="evt_renewal"))
    page = client.get(undo_url(entry)).content.decode()
    assert "changed since this fix" in page and 'name="reason"' not in page
    with pytest.raises(UndoRefused, match="changed since this fix"):
        entry_undo(entry_id=entry.pk, reason="try", staff_user=agent)
    assert not AuditEntry.objects.filter(undoes=entry).exists()


def test_what_cannot_be_undone_says_so(client, agent):
    sub = stripe_subscription("2008")
    # Linking an orphan has no previous owner to go back to.
    orphan = apply_snapshot(Snapshot(provider="google", provider_subscription_id="tok", status=Status.ACTIVE,
                                     observed_at=timezone.now()), Cause(CauseKind.WEBHOOK))
    fixes.subscription_move(subscription=Subscription.objects.get(pk=orphan.subscription_id),
                            subscriber=sub.subscriber, reason="found the user", staff_user=agent)
    entry = AuditEntry.objects.get(action="link")
    assert "cannot be undone" in client.get(undo_url(entry)).content.decode()


def test_undo_needs_the_fix_permission(client, agent):
    user = SubscriberFactory(external_id="2009")
    fixes.manual_grant(subscriber=user, entitlement=EntitlementFactory(name="premium"), until=None,
                       reason="r", staff_user=agent)
    viewer = UserFactory(username="viewer", is_superuser=False)
    client.force_login(viewer)
    assert client.get(undo_url(AuditEntry.objects.get())).status_code == 403
