"""POST /api/subscriptions/<id>/cancel and /change-plan, with the stores' real adapters: the App Store
has no server-side cancel or plan change; Xsolla's subscriptions API is the local fake
(tests/fakes/xsolla.py), reached over HTTP.

Covered in the provider suites, against the same fakes: a cancel through Xsolla's API with the manage
scope, and Xsolla down → 502 with nothing changed (tests/providers/xsolla/test_api.py); a plan
change going through Stripe and the write path (tests/providers/stripe/test_api.py)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.authentication import clear_api_key_cache
from billing.models import StatusChange, Subscription
from tests.api_support import bearer, configure_jwt
from tests.factories import SubscriberFactory, SubscriptionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _auth(settings):
    configure_jwt(settings)
    clear_api_key_cache()


def xsolla_subscription(fake, user_id: str) -> Subscription:
    """An active Xsolla subscription of `user_id`, stored here and held by the fake subscriptions API
    (Xsolla knows the user by the app's user id)."""
    next_charge = (timezone.now() + timedelta(days=9)).replace(microsecond=0)
    fake.put_subscription(fake.subscription("10", user_id=user_id, date_next_charge=next_charge.isoformat()))
    return SubscriptionFactory(subscriber=SubscriberFactory(external_id=user_id), provider="xsolla",
                               provider_subscription_id="10", expires_at=next_charge)


def test_the_owner_may_cancel_through_the_store_others_may_not_see_it(client, fake_xsolla):
    sub = xsolla_subscription(fake_xsolla, "52")
    assert client.post(f"/api/subscriptions/{sub.pk}/cancel", **bearer("53")).status_code == 404
    assert fake_xsolla.requests == []  # nothing asked of the store for someone else's subscription

    response = client.post(f"/api/subscriptions/{sub.pk}/cancel", **bearer("52"))
    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "CANCELED" and response.json()["auto_renew"] is False
    assert response.json()["is_entitled"] is True  # until the period ends
    assert fake_xsolla.subscriptions["10"]["status"] == "non_renewing"
    change = StatusChange.objects.get(subscription=sub)
    assert change.cause == "api" and change.new_status == "CANCELED"


def test_store_managed_is_409_saying_where(client):
    sub = SubscriptionFactory(subscriber=SubscriberFactory(external_id="54"), provider="apple")
    response = client.post(f"/api/subscriptions/{sub.pk}/cancel", **bearer("54"))
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "not_supported"
    assert "Settings" in response.json()["error"]["message"]
    plan = client.post(f"/api/subscriptions/{sub.pk}/change-plan", {"price_id": "x"},
                       content_type="application/json", **bearer("54"))
    assert plan.status_code == 409 and "Settings" in plan.json()["error"]["message"]


def test_change_plan_needs_a_price_id(client, service_auth):
    sub = SubscriptionFactory(subscriber=SubscriberFactory(external_id="56"), provider="xsolla")
    missing = client.post(f"/api/subscriptions/{sub.pk}/change-plan", {}, content_type="application/json",
                          **service_auth("manage"))
    assert missing.status_code == 400 and "price_id" in missing.json()["error"]["message"]


def test_manage_scope_required_and_unknown_id_404(client, service_auth):
    sub = SubscriptionFactory(provider="xsolla")
    assert client.post(f"/api/subscriptions/{sub.pk}/cancel", **service_auth("read")).status_code == 403
    assert client.post("/api/subscriptions/999999/cancel", **service_auth("manage")).status_code == 404
    assert client.post("/api/subscriptions/abc/cancel", **service_auth("manage")).status_code == 404
