"""GET /api/schema/ (OpenAPI 3) and /api/docs/ (Swagger UI served from our own static files)."""

import pytest
from drf_spectacular.validation import validate_schema

pytestmark = pytest.mark.django_db


def test_schema_is_valid_openapi_with_every_endpoint(client):
    response = client.get("/api/schema/?format=json")
    assert response.status_code == 200
    schema = response.json()
    validate_schema(schema)
    assert schema["openapi"].startswith("3.")
    for path in ("/api/subscriptions/check/{user_id}", "/api/users/{user_id}/subscriptions",
                 "/api/me/subscriptions", "/api/subscriptions/verify", "/api/subscriptions/{subscription_id}/cancel",
                 "/api/subscriptions/{subscription_id}/change-plan", "/health"):
        assert path in schema["paths"], path
    check = schema["paths"]["/api/subscriptions/check/{user_id}"]["get"]
    assert {} in check["security"]  # anonymous from trusted networks
    answer = schema["components"]["schemas"]["CheckAnswer"]["properties"]
    assert {"user_id", "is_subscribed", "status", "as_of", "last_confirmed_at"} <= set(answer)
    assert {"ApiKey", "BearerJWT"} <= set(schema["components"]["securitySchemes"])


def test_docs_page_uses_local_assets(client):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "drf_spectacular_sidecar/swagger-ui-dist" in html
    assert "cdn.jsdelivr" not in html
