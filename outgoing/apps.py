"""Outgoing webhooks: status changes POSTed, signed, to endpoints registered in the admin, for
consumers that cannot read the Redis stream (docs/events.md)."""
from django.apps import AppConfig


class OutgoingConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "outgoing"
    verbose_name = "Outgoing webhooks"

    def ready(self):
        from webhooks import attention

        from . import inline  # models are loaded only now
        from .attention import delivery_rows

        inline.connect()
        # Dead deliveries join the admin's "Needs attention" box; webhooks does not import outgoing.
        if delivery_rows not in attention.SOURCES:
            attention.SOURCES.append(delivery_rows)
