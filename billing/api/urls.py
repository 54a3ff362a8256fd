"""The REST API, included at the site root. (Stripe's own endpoints: stripe_urls.py.)"""

from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerSplitView

from accounts.permissions import trusted_network_or_staff_only as private

from . import schema  # noqa: F401  (registers the OpenAPI extensions for our authentication)
from .check import CheckSubscriptionView
from .health import HealthApi
from .subscription_detail import SubscriptionDetailApi
from .views import (
    CancelSubscriptionApi,
    ChangePlanApi,
    MySubscriptionListApi,
    UserSubscriptionListApi,
    VerifyPurchaseApi,
)

urlpatterns = [
    path("health", HealthApi.as_view(), name="health"),
    path("api/subscriptions/check/<str:user_id>", CheckSubscriptionView.as_view(), name="subscriptions-check"),
    path("api/subscriptions/verify", VerifyPurchaseApi.as_view(), name="subscriptions-verify"),
    path("api/subscriptions/<str:subscription_id>", SubscriptionDetailApi.as_view(), name="subscriptions-detail"),
    path("api/subscriptions/<str:subscription_id>/cancel", CancelSubscriptionApi.as_view(),
         name="subscriptions-cancel"),
    path("api/subscriptions/<str:subscription_id>/change-plan", ChangePlanApi.as_view(),
         name="subscriptions-change-plan"),
    path("api/users/<str:user_id>/subscriptions", UserSubscriptionListApi.as_view(), name="users-subscriptions"),
    path("api/me/subscriptions", MySubscriptionListApi.as_view(), name="me-subscriptions"),
    # The schema and its docs: trusted networks and signed-in staff only (they map every endpoint). The
    # split Swagger view serves its script as a file, so the content security policy needs no inline script.
    path("api/schema/", private(SpectacularAPIView.as_view()), name="schema"),
    path("api/docs/", private(SpectacularSwaggerSplitView.as_view(url_name="schema")), name="docs"),
    path("api/redoc/", private(SpectacularRedocView.as_view(url_name="schema")), name="redoc"),
]
