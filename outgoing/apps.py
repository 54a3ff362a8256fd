"""Outgoing webhooks: status changes POSTed, signed, to endpoints registered in the admin, for
consumers that cannot read the Redis stream (docs/events.md)."""
from django.apps import AppConfig


class OutgoingConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "outgoing"
    verbose_name = "Outgoing webhooks"

    def ready(self):
        from . import inline  # models are loaded only now

        inline.connect()
