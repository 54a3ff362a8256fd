"""The operators' endpoints (GET /metrics), included at the site root."""

urlpatterns: list = []
