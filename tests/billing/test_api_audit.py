"""API calls that change something are in the audit log: who (the API key, or the end user's token),
for which user, what changed. A verify that changes nothing and the check API (read-only, the hot path)
write no entry."""

from datetime import timedelta

import pytest
from django.utils import timezone

from audit.models import AuditEntry
from tests.api_support import api_key, bearer, with_key
from tests.factories import SubscriberFactory, SubscriptionFactory

from .test_subscription_actions_api import _auth, xsolla_subscription  # noqa: F401 (fixtures)
from .test_verify_api import OTID, _deployment, sell, verify  # noqa: F401 (fixtures)

pytestmark = pytest.mark.django_db


def test_a_verify_by_an_api_key_is_recorded_once(client, sell):  # noqa: F811 (the fixture)
    sell(bought_by=61)
    key = api_key("verify", name="ios-backend")
    for _ in range(2):
        assert verify(client, {"provider": "apple", "user_id": "61", "transaction_id": OTID},
                      **with_key(key)).status_code == 200
    entry = AuditEntry.objects.get()  # the second verify confirmed what we held: nothing to record
    assert (entry.action, entry.actor_label, entry.subscriber.external_id) == (
        "api_verify", "API key ios-backend", "61")
    assert entry.actor_api_key.name == "ios-backend" and entry.actor_user is None
    assert entry.details["changes"][0]["outcome"] == "created"
    assert entry.details["changes"][0]["new_status"] == "ACTIVE"
    client.get("/api/subscriptions/check/61", REMOTE_ADDR="127.0.0.1")
    assert AuditEntry.objects.count() == 1  # the check API never writes the log


def test_a_cancel_by_a_service_and_by_the_user_are_recorded(client, fake_xsolla):
    sub = xsolla_subscription(fake_xsolla, "62")
    response = client.post(f"/api/subscriptions/{sub.pk}/cancel", **with_key(api_key("manage", name="crm")))
    assert response.status_code == 200, response.json()
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.actor_label, entry.subscription_id, entry.subscriber.external_id) == (
        "api_cancel", "API key crm", sub.pk, "62")
    assert (entry.details["before"]["auto_renew"], entry.details["after"]["auto_renew"]) == (True, False)
    assert (entry.details["before"]["status"], entry.details["after"]["status"]) == ("ACTIVE", "CANCELED")

    next_charge = (timezone.now() + timedelta(days=9)).replace(microsecond=0)
    fake_xsolla.put_subscription(fake_xsolla.subscription("11", user_id="63", date_next_charge=next_charge.isoformat()))
    other = SubscriptionFactory(subscriber=SubscriberFactory(external_id="63"), provider="xsolla",
                                provider_subscription_id="11", expires_at=next_charge)
    response = client.post(f"/api/subscriptions/{other.pk}/cancel", **bearer("63"))
    assert response.status_code == 200, response.json()
    mine = AuditEntry.objects.get(subscription_id=other.pk)
    assert (mine.action, mine.actor_label, mine.actor_api_key) == ("api_cancel", "end user 63 (app token)", None)


def test_a_refused_call_records_nothing(client):
    sub = SubscriptionFactory(subscriber=SubscriberFactory(external_id="64"), provider="apple")
    assert client.post(f"/api/subscriptions/{sub.pk}/cancel", **bearer("64")).status_code == 409
    assert not AuditEntry.objects.exists()
