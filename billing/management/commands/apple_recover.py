"""Recover App Store notifications we missed (an outage, a wrong URL): walk Apple's notification history
and feed every signedPayload through the webhook's own path (verify → store once → process).
Notifications we already have are recognised by their notificationUUID and not processed twice."""

import json
import logging
from collections import Counter
from datetime import UTC, datetime, time, timedelta

from appstoreserverlibrary.models.NotificationHistoryRequest import NotificationHistoryRequest
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from tqdm import tqdm

from billing.providers import registry
from billing.providers.apple.client import api_call
from billing.providers.base import NotConfigured, PermanentError, Rejected, StoreUnavailable, TransientError
from webhooks.services import event_store

logger = logging.getLogger(__name__)

HISTORY_DAYS = 180  # Apple keeps the notification history this long


def _moment(value: str) -> datetime:
    parsed = parse_datetime(value)
    if parsed is None:
        day = parse_date(value)
        if day is None:
            raise ValueError(f"not a date: {value!r} (use YYYY-MM-DD or an ISO 8601 date-time)")
        parsed = datetime.combine(day, time.min)
    return parsed if timezone.is_aware(parsed) else parsed.replace(tzinfo=UTC)


class Command(BaseCommand):
    help = ("Walk the App Store's notification history (the last 180 days) and ingest every notification we "
            "missed, exactly as if Apple had delivered it.")

    def add_arguments(self, parser):
        parser.add_argument("--since", required=True, type=_moment, help="Start: YYYY-MM-DD or ISO date-time (UTC)")
        parser.add_argument("--until", type=_moment, default=None, help="End (default: now)")
        parser.add_argument("--environment", choices=["production", "sandbox"], default=None,
                            help="Which App Store to ask (default: APPLE_ENVIRONMENT)")
        parser.add_argument("--only-failures", action="store_true",
                            help="Only notifications Apple failed to deliver to us")

    def handle(self, *args, since, until, environment, only_failures, **options):
        now = timezone.now()
        until = until or now
        if since >= until:
            raise CommandError("--since must be before --until.")
        if since < now - timedelta(days=HISTORY_DAYS):
            raise CommandError(f"Apple keeps the notification history for {HISTORY_DAYS} days: --since must be after "
                               f"{(now - timedelta(days=HISTORY_DAYS)).date().isoformat()}.")
        if environment is None:
            environment = "production" if settings.APPLE_ENVIRONMENT == "Production" else "sandbox"
        apple_environment = "Production" if environment == "production" else "Sandbox"
        adapter = registry.get_adapter("apple")
        try:
            adapter.ensure_configured(for_api=True)
        except NotConfigured as exc:
            raise CommandError(str(exc)) from None

        request = NotificationHistoryRequest(startDate=int(since.timestamp() * 1000),
                                             endDate=int(until.timestamp() * 1000),
                                             onlyFailures=True if only_failures else None)
        counts: Counter = Counter()
        token = None
        with tqdm(desc=f"App Store {environment} history", unit=" notifications", file=self.stderr) as progress:
            while True:
                try:
                    page = api_call(apple_environment, "get_notification_history", token, request)
                except (StoreUnavailable, PermanentError, NotConfigured) as exc:
                    self._summary(counts)
                    raise CommandError(f"The notification history could not be read: {exc}. Run again to "
                                       "continue (what was stored is kept).") from None
                for item in page.notificationHistory or []:
                    counts[self._ingest(adapter, item.signedPayload)] += 1
                    progress.update(1)
                if not page.hasMore or not page.paginationToken:
                    break
                token = page.paginationToken
        self._summary(counts)

    def _ingest(self, adapter, signed_payload: str | None) -> str:
        if not signed_payload:
            return "empty"
        body = json.dumps({"signedPayload": signed_payload}).encode()
        try:
            verified = adapter.authenticate({}, body, {})
        except Rejected as exc:
            logger.warning("apple_recover: notification rejected (%s): %s", exc.code, exc.reason)
            return "rejected"
        except TransientError as exc:
            logger.warning("apple_recover: notification not verified yet: %s", exc)
            return "not verified (run again)"
        event_id = event_store(provider="apple", verified=verified, body=body,
                               headers={"X-Recovered-By": "apple_recover"})
        return "recovered" if event_id is not None else "already had"

    def _summary(self, counts: Counter) -> None:
        order = ("recovered", "already had", "rejected", "not verified (run again)", "empty")
        parts = [f"{counts[k]} {k}" for k in order if counts.get(k)]
        self.stdout.write(f"{sum(counts.values())} notifications read: " + (", ".join(parts) or "none"))
