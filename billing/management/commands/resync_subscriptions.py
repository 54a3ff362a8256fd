"""Re-sync subscriptions from their stores (the beat re-poll, for a chosen selection), with progress."""

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from billing.models import Subscription
from billing.snapshots import Provider
from billing.statuses import Status
from billing.sweeps import subscriptions_resync


class Command(BaseCommand):
    help = "Fetch the current state of subscriptions from their stores and apply it (Cause: poll)."

    def add_arguments(self, parser):
        parser.add_argument("--provider", choices=[p for p in Provider.ALL if p != Provider.MANUAL])
        parser.add_argument("--status", choices=[s.value for s in Status], help="only subscriptions in this status")
        parser.add_argument("--limit", type=int, default=None, help="at most this many (oldest confirmation first)")
        parser.add_argument("--include-superseded", action="store_true")

    def handle(self, *args, provider=None, status=None, limit=None, include_superseded=False, **options):
        qs = Subscription.objects.exclude(provider=Provider.MANUAL)
        if provider:
            qs = qs.filter(provider=provider)
        if status:
            qs = qs.filter(status=status)
        if not include_superseded:
            qs = qs.filter(replaced_by__isnull=True)
        qs = qs.order_by("last_verified_at", "id")
        if limit is not None:
            if limit < 1:
                raise CommandError("--limit must be positive")
            qs = qs[:limit]
        subscriptions = list(qs)
        with tqdm(total=len(subscriptions), unit="sub", file=self.stderr, disable=None) as bar:
            report = subscriptions_resync(subscriptions, cause_ref="resync_subscriptions", progress=bar.update)
        outcomes = ", ".join(f"{n} {outcome}" for outcome, n in sorted(report.applied.items())) or "none applied"
        self.stdout.write(f"{len(subscriptions)} subscriptions: {outcomes}; {report.skipped} skipped "
                          f"(store cannot be re-polled or is not configured); {report.failed} failed "
                          "(left for the next run, see the log)")
