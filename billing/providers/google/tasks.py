"""Periodic Google Play jobs (thin: the work is in services.py)."""

from celery import shared_task

from billing.providers import registry
from billing.snapshots import Provider

from . import services


@shared_task(name="billing.providers.google.tasks.acknowledge_due", ignore_result=True)
def acknowledge_due() -> dict:
    """Acknowledge purchases still unacknowledged (Google refunds them after 3 days). Nothing while
    Google Play is not configured (the registry's adapter says what is missing)."""
    report = services.AcknowledgementReport()
    if not registry.get_adapter(Provider.GOOGLE).missing_settings(for_api=True):
        report = services.purchases_acknowledge_due()
    return {"acknowledged": report.acknowledged, "recorded": report.recorded, "waiting": report.waiting,
            "failed": report.failed}
