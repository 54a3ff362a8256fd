"""What operators run the service with: metrics, structured logs, alerts (docs/operations.md)."""
from django.apps import AppConfig


class OperationsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "operations"

    def ready(self):
        # Open alerts join the admin's "Needs attention" box; webhooks does not import operations.
        from webhooks import attention

        from .attention import alert_rows

        if alert_rows not in attention.SOURCES:
            attention.SOURCES.append(alert_rows)
