"""Every error a client of the API gets is JSON {"error": {"code", "message"}}, also those that no DRF
view produced (an unknown URL, an uncaught exception); the admin keeps its pages."""

import pytest

pytestmark = pytest.mark.django_db


def test_an_unknown_endpoint_is_a_json_404(client):
    response = client.get("/api/subscriptions/nope/nothing")
    assert response.status_code == 404 and response["Content-Type"] == "application/json"
    assert response.json() == {"error": {"code": "not_found",
                                         "message": "No such endpoint: /api/subscriptions/nope/nothing"}}


def test_an_uncaught_error_is_a_json_500(client, settings):
    settings.ROOT_URLCONF = "tests.config.urls_raising"
    client.raise_request_exception = False
    response = client.get("/api/fails")
    assert response.status_code == 500
    assert response.json() == {"error": {"code": "server_error", "message": "Internal error; it has been logged."}}


def test_the_admin_keeps_its_html_404(admin_client):
    response = admin_client.get("/admin/billing/nothing-here/")
    assert response.status_code == 404 and "application/json" not in response["Content-Type"]
