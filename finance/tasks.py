"""Finance's periodic jobs (CELERY_BEAT_SCHEDULE, "# --- finance ---"); thin: the work is in finance.metrics."""

from datetime import date, timedelta

from celery import shared_task
from django.utils import timezone

from .metrics import metrics_rebuild_day


@shared_task(ignore_result=True)
def compute_daily_metrics(day: str | None = None) -> int:
    """The day before (UTC), shortly after midnight; or the day given (YYYY-MM-DD). Rebuilding is
    idempotent: a retry or a second run replaces the day's rows with the same ones."""
    which = date.fromisoformat(day) if day else timezone.now().date() - timedelta(days=1)
    return metrics_rebuild_day(which)
