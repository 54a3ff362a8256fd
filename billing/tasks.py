"""Periodic jobs (scheduled in CELERY_BEAT_SCHEDULE, editable in the admin). Thin: the work is in
billing.outbox, billing.sweeps and billing.reconciliation."""

import logging
import time

from celery import shared_task
from django.conf import settings

from . import double_payments, entitlement_cache, outbox, reconciliation, sweeps

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


@shared_task(ignore_result=True)
def reconcile_subscriptions() -> list[str]:
    """Start one reconciliation run per store that can be re-read (each on the `slow` queue, in parallel)."""
    providers = reconciliation.reconcilable_providers()
    for provider in providers:
        reconcile_store.delay(provider)
    return providers


@shared_task(ignore_result=True)
def reconcile_store(provider: str) -> dict:
    """Walk the store's due subscriptions for at most RECONCILE_RUN_SECONDS, within its budget."""
    deadline = time.monotonic() + settings.RECONCILE_RUN_SECONDS
    report = reconciliation.reconcile(provider=provider, deadline=deadline).stores.get(provider)
    if report is None:
        return {}
    if report.checked or report.failed or report.stopped:
        logger.info("reconciliation of %s: %d read, %d drifts, %d failed%s", provider, report.checked, report.drifts,
                    report.failed, f"; stopped: {report.stopped}" if report.stopped else "")
    return {"checked": report.checked, "drifts": report.drifts, "failed": report.failed, "stopped": report.stopped}
