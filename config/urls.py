from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("billing.urls")),
    path("", include("webhooks.urls")),
    path("", include("operations.urls")),
    path("", include("finance.urls")),
    path("", include("support.urls")),
]

# Errors outside DRF's views (unknown URLs, uncaught exceptions) answer JSON too (config/api_errors.py).
handler400 = "config.api_errors.bad_request"
handler404 = "config.api_errors.not_found"
handler500 = "config.api_errors.server_error"
