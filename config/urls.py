from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    # The console's and finance's pages under admin/: before the admin's catch-all.
    path("", include("support.urls")),
    path("", include("finance.urls")),
    path("admin/", admin.site.urls),
    path("", include("billing.urls")),
    path("", include("webhooks.urls")),
    path("", include("operations.urls")),
]

# Errors outside DRF's views (unknown URLs, uncaught exceptions) answer JSON too (config/api_errors.py).
handler400 = "config.api_errors.bad_request"
handler404 = "config.api_errors.not_found"
handler500 = "config.api_errors.server_error"
