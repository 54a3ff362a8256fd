"""Periodic Google Play jobs (thin: the work is in acknowledgement.py)."""

from celery import shared_task

from . import acknowledgement


@shared_task(ignore_result=True)
def acknowledge_due() -> dict:
    """Acknowledge purchases still unacknowledged (Google refunds them after 3 days)."""
    report = acknowledgement.acknowledge_due()
    return {"acknowledged": report.acknowledged, "recorded": report.recorded, "waiting": report.waiting,
            "failed": report.failed}
