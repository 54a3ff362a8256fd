"""POST /api/subscriptions/<id>/cancel and /change-plan."""

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.authentication import clear_api_key_cache
from billing import providers
from billing.models import StatusChange
from billing.providers.base import NotSupported, ProviderAdapter, StoreUnavailable
from billing.snapshots import Snapshot
from billing.statuses import Status
from tests.api_support import api_key, bearer, configure_jwt, with_key
from tests.factories import SubscriberFactory, SubscriptionFactory

pytestmark = pytest.mark.django_db


class StoreManaged(ProviderAdapter):
    name = "apple"

    def cancel(self, subscription):
        raise NotSupported("Apple subscriptions are managed by the user in Settings > Apple ID > Subscriptions.")


class WebStore(ProviderAdapter):
    """Cancels at period end and reports the new state, as a web store's API does."""

    name = "xsolla"
    down = False

    def cancel(self, subscription):
        if self.down:
            raise StoreUnavailable("timeout")
        return Snapshot(provider="xsolla", provider_subscription_id=subscription.provider_subscription_id,
                        status=Status.CANCELED, observed_at=timezone.now(), auto_renew=False,
                        canceled_at=timezone.now())

    def change_plan(self, subscription, *, price_id):
        return Snapshot(provider="xsolla", provider_subscription_id=subscription.provider_subscription_id,
                        status=Status.ACTIVE, observed_at=timezone.now(), store_product_id=price_id)


@pytest.fixture(autouse=True)
def stores(settings):
    configure_jwt(settings)
    clear_api_key_cache()
    web = WebStore()
    providers.register("apple", StoreManaged())
    providers.register("xsolla", web)
    yield web
    providers.unregister("apple")
    providers.unregister("xsolla")


def test_cancel_goes_through_the_store_and_the_write_path(client):
    sub = SubscriptionFactory(subscriber=SubscriberFactory(external_id="51"), provider="xsolla")
    response = client.post(f"/api/subscriptions/{sub.pk}/cancel", **with_key(api_key("manage")))
    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "CANCELED" and response.json()["auto_renew"] is False
    assert response.json()["is_entitled"] is True  # until the period ends
    change = StatusChange.objects.get(subscription=sub)
    assert change.cause == "api" and change.new_status == "CANCELED"


def test_owner_may_cancel_others_may_not_see_it(client):
    sub = SubscriptionFactory(subscriber=SubscriberFactory(external_id="52"), provider="xsolla")
    assert client.post(f"/api/subscriptions/{sub.pk}/cancel", **bearer("53")).status_code == 404
    assert client.post(f"/api/subscriptions/{sub.pk}/cancel", **bearer("52")).status_code == 200


def test_store_managed_is_409_saying_where(client):
    sub = SubscriptionFactory(subscriber=SubscriberFactory(external_id="54"), provider="apple")
    response = client.post(f"/api/subscriptions/{sub.pk}/cancel", **bearer("54"))
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "not_supported"
    assert "Settings" in response.json()["error"]["message"]
    plan = client.post(f"/api/subscriptions/{sub.pk}/change-plan", {"price_id": "x"},
                       content_type="application/json", **bearer("54"))
    assert plan.status_code == 409


def test_store_down_is_502(client, stores):
    stores.down = True
    sub = SubscriptionFactory(subscriber=SubscriberFactory(external_id="55"), provider="xsolla")
    response = client.post(f"/api/subscriptions/{sub.pk}/cancel", **with_key(api_key("manage")))
    assert response.status_code == 502 and response.json()["error"]["code"] == "store_unavailable"
    sub.refresh_from_db()
    assert sub.status == Status.ACTIVE


def test_change_plan(client):
    sub = SubscriptionFactory(subscriber=SubscriberFactory(external_id="56"), provider="xsolla",
                              last_event_at=timezone.now() - timedelta(days=1))
    response = client.post(f"/api/subscriptions/{sub.pk}/change-plan", {"price_id": "plan_yearly"},
                           content_type="application/json", **with_key(api_key("manage")))
    assert response.status_code == 200 and response.json()["plan_id"] == "plan_yearly"
    missing = client.post(f"/api/subscriptions/{sub.pk}/change-plan", {}, content_type="application/json",
                          **with_key(api_key("manage")))
    assert missing.status_code == 400 and "price_id" in missing.json()["error"]["message"]


def test_manage_scope_required_and_unknown_id_404(client):
    sub = SubscriptionFactory(provider="xsolla")
    assert client.post(f"/api/subscriptions/{sub.pk}/cancel", **with_key(api_key("read"))).status_code == 403
    assert client.post("/api/subscriptions/999999/cancel", **with_key(api_key("manage"))).status_code == 404
    assert client.post("/api/subscriptions/abc/cancel", **with_key(api_key("manage"))).status_code == 404
