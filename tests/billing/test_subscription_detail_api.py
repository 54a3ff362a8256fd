"""GET /api/subscriptions/<id>: the list item's fields plus its status in plain language; read like the
list (a service key with `read`, or the owner's token); anyone else gets 404, as for an unknown id."""

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.authentication import clear_api_key_cache
from billing.statuses import Status
from tests.api_support import bearer, configure_jwt
from tests.factories import SubscriberFactory, SubscriptionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _auth(settings):
    configure_jwt(settings)
    clear_api_key_cache()


@pytest.fixture
def sub():
    now = timezone.now()
    return SubscriptionFactory(subscriber=SubscriberFactory(external_id="61"), status=Status.ON_GRACE,
                               expires_at=now - timedelta(days=1), grace_until=now + timedelta(days=2, hours=1))


def test_a_service_reads_the_list_items_fields_and_the_explanation(client, service_auth, sub):
    response = client.get(f"/api/subscriptions/{sub.pk}", **service_auth("read"))
    assert response.status_code == 200
    body = response.json()
    listed = client.get("/api/users/61/subscriptions", **service_auth("read")).json()["items"][0]
    assert {k: v for k, v in body.items() if k not in ("explanation", "status_label")} == listed
    assert body["status"] == "ON_GRACE" and body["status_label"] == "In grace period"
    assert body["explanation"].startswith("In grace period: the renewal payment failed")
    assert "Stripe keeps access until " in body["explanation"] and "(in 2 days)" in body["explanation"]


def test_the_owner_reads_it_with_their_token(client, sub):
    response = client.get(f"/api/subscriptions/{sub.pk}", **bearer("61"))
    assert response.status_code == 200 and response.json()["id"] == str(sub.pk)


@pytest.mark.parametrize("path", ["{pk}", "999999", "0", "abc", "99999999999999999999", "-1"])
def test_another_users_or_no_subscription_is_404_alike(client, sub, path):
    response = client.get(f"/api/subscriptions/{path.format(pk=sub.pk)}", **bearer("62"))
    assert response.status_code == 404
    assert response.json() == {"error": {"code": "not_found", "message": "Not found."}}


def test_unknown_ids_are_404_for_services_too(client, service_auth, sub):
    assert client.get(f"/api/subscriptions/{sub.pk + 1000}", **service_auth("read")).status_code == 404


def test_an_orphan_is_read_by_services_only(client, service_auth):
    orphan = SubscriptionFactory(subscriber=None)
    assert client.get(f"/api/subscriptions/{orphan.pk}", **service_auth("read")).json()["user_id"] is None
    assert client.get(f"/api/subscriptions/{orphan.pk}", **bearer("61")).status_code == 404


def test_a_key_without_read_or_no_credentials_is_refused(client, service_auth, sub):
    response = client.get(f"/api/subscriptions/{sub.pk}", **service_auth("check"))
    assert response.status_code == 403 and response.json()["error"]["code"] == "permission_denied"
    assert client.get(f"/api/subscriptions/{sub.pk}").status_code in (401, 403)


def test_it_is_in_the_openapi_schema(admin_client):
    schema = admin_client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    operation = schema["paths"]["/api/subscriptions/{subscription_id}"]["get"]
    assert operation["operationId"] == "subscriptions_retrieve"
    assert set(operation["responses"]) >= {"200", "403", "404"}
    detail = schema["components"]["schemas"]["SubscriptionDetail"]
    assert {"explanation", "status_label", "status", "expires_at"} <= set(detail["properties"])
