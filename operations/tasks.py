"""Operations' beat job (thin: the work is in alerts/)."""

from celery import shared_task

from .alerts.lifecycle import alerts_check


@shared_task(name="operations.tasks.check_alerts", ignore_result=True)
def check_alerts() -> dict:
    """Beat: look for what needs an operator, announce new alerts, remind, resolve (docs/operations.md "Alerts")."""
    return alerts_check().as_dict()
