"""Recover App Store notifications we missed (an outage, a wrong URL): walk Apple's notification history
and feed every signedPayload through the webhook's own path (webhooks/recovery.py). Notifications we
already have are recognised by their notificationUUID and not processed twice."""

from collections import Counter

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from tqdm import tqdm

from billing.cli import moment
from billing.providers.base import NotConfigured, PermanentError, StoreUnavailable
from webhooks.recovery import missed_notifications_recover, summary


class Command(BaseCommand):
    help = ("Walk the App Store's notification history (the last 180 days) and ingest every notification we "
            "missed, exactly as if Apple had delivered it.")

    def add_arguments(self, parser):
        parser.add_argument("--since", required=True, type=moment, help="Start: YYYY-MM-DD or ISO date-time (UTC)")
        parser.add_argument("--until", type=moment, default=None, help="End (default: now)")
        parser.add_argument("--environment", choices=["production", "sandbox"], default=None,
                            help="Which App Store to ask (default: APPLE_ENVIRONMENT)")
        parser.add_argument("--only-failures", action="store_true",
                            help="Only notifications Apple failed to deliver to us")

    def handle(self, *args, since, until, environment, only_failures, **options):
        until = until or timezone.now()
        if since >= until:
            raise CommandError("--since must be before --until.")
        counts: Counter = Counter()
        try:
            with tqdm(desc=f"App Store {environment or ''} history".replace("  ", " "), unit=" notifications",
                      file=self.stderr) as progress:
                missed_notifications_recover(provider="apple", since=since, until=until,
                                             only_failures=only_failures, environment=environment,
                                             recovered_by="apple_recover", counts=counts, progress=progress)
        except (NotConfigured, ValueError) as exc:
            raise CommandError(str(exc)) from None
        except (StoreUnavailable, PermanentError) as exc:
            self.stdout.write(summary(counts))
            raise CommandError(f"The notification history could not be read: {exc}. Run again to continue (what "
                               "was stored is kept).") from None
        self.stdout.write(summary(counts))
