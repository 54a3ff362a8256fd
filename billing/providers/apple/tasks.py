"""Beat job: Apple retries a failed delivery only 5 times in production (never in sandbox), so ask the
App Store which notifications it failed to deliver and ingest them through the webhook's own path."""

import logging
from datetime import timedelta
from io import StringIO

from celery import shared_task
from django.core.management import call_command
from django.utils import timezone

from billing.providers import registry

logger = logging.getLogger(__name__)

LOOKBACK = timedelta(days=2)


@shared_task(name="billing.providers.apple.tasks.recover_failed_notifications", acks_late=True)
def recover_failed_notifications() -> str:
    if registry.get_adapter("apple").missing_settings(for_api=True):
        return "skipped: the App Store Server API is not configured"
    out = StringIO()
    since = (timezone.now() - LOOKBACK).isoformat()
    call_command("apple_recover", "--since", since, "--only-failures", stdout=out, stderr=StringIO())
    summary = out.getvalue().strip()
    logger.info("apple recover: %s", summary)
    return summary
