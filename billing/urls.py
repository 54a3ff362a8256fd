from django.urls import include, path

urlpatterns = [
    path("", include("billing.api.urls")),
    path("api/stripe/", include("billing.api.stripe_urls")),
]
