from django.urls import path

from .views import webhook_receive

# Stores are configured with the URL without a trailing slash; one is accepted too (no redirect: a
# redirect would turn the POST into a GET at some senders).
urlpatterns: list = [
    path("webhooks/<slug:provider>", webhook_receive, name="webhook-receive"),
    path("webhooks/<slug:provider>/", webhook_receive),
]
