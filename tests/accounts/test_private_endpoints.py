"""/health's details, the API schema and its docs: trusted networks and signed-in staff only; the bare
liveness answer stays public."""

import pytest
from django.db import connection

from tests.api_support import UNTRUSTED
from tests.factories import UserFactory
from tests.helpers import closed_port

DETAILS = {"database", "redis", "broker", "providers", "outbox_pending"}
PRIVATE = ("/api/schema/", "/api/docs/", "/api/redoc/")


@pytest.fixture
def internal(settings):
    settings.CHECK_API_TRUSTED_NETWORKS = ["10.20.0.0/16"]
    settings.TRUSTED_PROXIES = ["10.0.0.2/32"]


@pytest.mark.django_db
def test_health_is_bare_for_the_public(client, internal):
    response = client.get("/health", REMOTE_ADDR=UNTRUSTED)
    assert response.status_code == 200 and response.json() == {"status": "ok"}
    # Through the proxy, a public client is still the public.
    response = client.get("/health", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR=UNTRUSTED)
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_health_details_for_trusted_networks_and_staff(client, internal):
    body = client.get("/health", REMOTE_ADDR="10.20.1.1").json()
    assert body["status"] == "ok" and set(body) >= DETAILS
    body = client.get("/health", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="10.20.1.1").json()
    assert set(body) >= DETAILS
    client.force_login(UserFactory(username="oncall"))
    assert set(client.get("/health", REMOTE_ADDR=UNTRUSTED).json()) >= DETAILS


@pytest.mark.django_db
def test_a_signed_in_user_who_is_not_staff_sees_the_bare_answer(client, internal):
    client.force_login(UserFactory(username="former-staff", is_staff=False, is_superuser=False))
    assert client.get("/health", REMOTE_ADDR=UNTRUSTED).json() == {"status": "ok"}


@pytest.mark.django_db(transaction=True)
def test_database_unreachable_is_503_for_everyone(client, internal):
    connection.close()
    port = connection.settings_dict["PORT"]
    connection.settings_dict["PORT"] = closed_port()
    try:
        public = client.get("/health", REMOTE_ADDR=UNTRUSTED)
        trusted = client.get("/health", REMOTE_ADDR="10.20.1.1")
    finally:
        connection.close()
        connection.settings_dict["PORT"] = port
    assert public.status_code == 503 and public.json() == {"status": "error"}
    assert trusted.status_code == 503 and trusted.json()["database"] == "unavailable"


@pytest.mark.django_db
@pytest.mark.parametrize("path", PRIVATE)
def test_schema_and_docs_are_refused_to_the_public(client, internal, path):
    response = client.get(path, REMOTE_ADDR=UNTRUSTED)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
    proxied = client.get(path, REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR=UNTRUSTED)
    assert proxied.status_code == 403


@pytest.mark.django_db
@pytest.mark.parametrize("path", PRIVATE)
def test_schema_and_docs_for_trusted_networks_and_staff(client, internal, path):
    assert client.get(path, REMOTE_ADDR="10.20.1.1").status_code == 200
    client.force_login(UserFactory(username="developer"))
    assert client.get(path, REMOTE_ADDR=UNTRUSTED).status_code == 200


@pytest.mark.django_db
def test_swagger_ui_runs_without_inline_scripts(client, internal):
    # The content security policy allows scripts only from our own files: the page loads its script.
    page = client.get("/api/docs/", REMOTE_ADDR="10.20.1.1")
    html = page.content.decode()
    assert "<script>" not in html and "'self'" in page["Content-Security-Policy"]
    script = client.get("/api/docs/?script=", REMOTE_ADDR="10.20.1.1")
    assert script.status_code == 200 and "SwaggerUIBundle" in script.content.decode()
