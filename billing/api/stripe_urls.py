"""Stripe's web-subscription endpoints, included at /api/stripe/."""

from django.urls import path

from .stripe_views import CheckoutSessionApi, PortalSessionApi, SetupIntentApi, SubscriptionCreateApi

urlpatterns = [
    path("setup-intents", SetupIntentApi.as_view(), name="stripe-setup-intents"),
    path("subscriptions", SubscriptionCreateApi.as_view(), name="stripe-subscriptions"),
    path("checkout-sessions", CheckoutSessionApi.as_view(), name="stripe-checkout-sessions"),
    path("portal-sessions", PortalSessionApi.as_view(), name="stripe-portal-sessions"),
]
