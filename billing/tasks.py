"""Periodic jobs (scheduled in CELERY_BEAT_SCHEDULE, editable in the admin). Thin: the work is in
billing.outbox and billing.sweeps."""

import logging

from celery import shared_task

from . import double_payments, entitlement_cache, outbox, sweeps

logger = logging.getLogger(__name__)


@shared_task(ignore_result=True)
def relay_outbox() -> int:
    """Publish what the after-commit relay left behind (Redis was down, a process died)."""
    return outbox.publish_pending()


@shared_task(ignore_result=True)
def expire_lapsed() -> int:
    """Entitled subscriptions past their access end become EXPIRED, and that is published."""
    return sweeps.subscriptions_expire_lapsed()


@shared_task(ignore_result=True)
def repoll_subscriptions() -> dict:
    """Ask the stores for subscriptions not confirmed lately or around their expiry (a bounded batch)."""
    report = sweeps.subscriptions_repoll()
    if report.applied or report.failed:
        logger.info("re-poll: %s, %d skipped, %d failed", report.applied, report.skipped, report.failed)
    return {"applied": report.applied, "skipped": report.skipped, "failed": report.failed}


@shared_task(ignore_result=True)
def forget_cached_entitlements(product_ids: list[int]) -> int:
    """After staff change what products grant: users of those products re-read their entitlements."""
    return entitlement_cache.forget_products(product_ids)


@shared_task(ignore_result=True)
def reconcile_double_payments() -> dict:
    """The daily sweep: open the double payments the after-commit check missed, end those no longer paid twice."""
    report = double_payments.sweep()
    return {"opened": report.opened, "ended": report.ended}
