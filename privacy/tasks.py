"""The retention beat job (CELERY_BEAT_SCHEDULE "privacy-prune-retained", on the slow queue). Thin: the
work is in privacy/retention.py."""

from celery import shared_task

from .retention import prune_retained as prune


@shared_task(ignore_result=True)
def prune_retained() -> dict:
    """Prune raw data past its retention (RETENTION_* settings), in short batches."""
    return prune().as_dict()
