"""The app's URLs plus dj-stripe's own webhook view (`djstripe.urls`, as dj-stripe's docs mount it), for
bench/vs_djstripe.py: one app serves both sides, so they run with the same middleware and server."""

from django.urls import include, path

from billing.providers.stripe import client
from config.urls import urlpatterns as app_urlpatterns

# dj-stripe calls the stripe library's module-level API: point it where our client points (the Stripe API
# fake in the bench), as the app does before it feeds dj-stripe its mirror.
client.configure_library()

urlpatterns = [path("djstripe/", include("djstripe.urls", namespace="djstripe")), *app_urlpatterns]
