"""What operators run the service with: metrics, structured logs, alerts (docs/operations.md)."""
import os

from celery.signals import worker_process_shutdown
from django.apps import AppConfig
from prometheus_client import multiprocess


class OperationsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "operations"

    def ready(self):
        # Open alerts join the admin's "Needs attention" box; webhooks does not import operations.
        from webhooks import attention

        from .attention import alert_rows

        if alert_rows not in attention.SOURCES:
            attention.SOURCES.append(alert_rows)
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            worker_process_shutdown.connect(_mark_worker_process_dead, weak=False)


def _mark_worker_process_dead(pid=None, **kwargs):
    """A Celery pool process ends: its live gauges leave the sum (its counters stay, as they should)."""
    multiprocess.mark_process_dead(pid or os.getpid())
