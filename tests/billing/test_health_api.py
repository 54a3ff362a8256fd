"""GET /health: 200 with each dependency's state; 503 when the database is unreachable."""

import pytest
from django.db import connection

from billing.models import Outbox
from tests.factories import SubscriptionFactory
from tests.helpers import closed_port


@pytest.mark.django_db
def test_ok(client, settings):
    sub = SubscriptionFactory()
    Outbox.objects.create(subscription=sub, payload={})
    settings.STRIPE_SECRET_KEY = ""
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["database"] == "ok" and body["redis"] == "ok"
    assert body["broker"] == "in-process"  # the tests run Celery tasks eagerly
    assert set(body["providers"]) == {"stripe", "apple", "google", "xsolla"}
    assert body["providers"]["stripe"] == "not configured"
    assert set(body["providers"].values()) <= {"configured", "not configured"}
    assert body["outbox_pending"] == 1


@pytest.mark.django_db
def test_redis_down_is_degraded_not_down(client, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    response = client.get("/health")
    assert response.status_code == 200 and response.json()["redis"] == "unavailable"


@pytest.mark.django_db(transaction=True)
def test_database_unreachable_is_503(client):
    connection.close()
    port = connection.settings_dict["PORT"]
    connection.settings_dict["PORT"] = closed_port()
    try:
        response = client.get("/health")
    finally:
        connection.close()
        connection.settings_dict["PORT"] = port
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "error" and body["database"] == "unavailable" and body["outbox_pending"] is None
    assert client.get("/health").status_code == 200  # and back once it is reachable
