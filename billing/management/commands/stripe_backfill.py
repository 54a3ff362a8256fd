"""Import every existing Stripe subscription (and the prices, as catalogue Products): for a project
moving to this service with customers already on Stripe. Safe to run again: it applies the state
Stripe has now, through the one write path, and a re-run changes only what changed."""

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from tqdm import tqdm

from billing.apply import apply_snapshot
from billing.providers.base import NotConfigured
from billing.providers.stripe import client, mapping, services
from billing.snapshots import Cause, CauseKind


class Command(BaseCommand):
    help = "Import all Stripe subscriptions (any status) and prices from Stripe."

    def add_arguments(self, parser):
        parser.add_argument("--page-size", type=int, default=100, help="Objects per Stripe list call (max 100)")
        parser.add_argument("--mirror", action="store_true",
                            help="Also sync each subscription into dj-stripe's tables (slower: more API calls)")
        parser.add_argument("--no-progress", action="store_true", help="No progress bar (logs, cron)")

    def handle(self, *args, page_size: int, mirror: bool, no_progress: bool, **options):
        try:
            client.get_client()
        except NotConfigured as exc:
            raise CommandError(str(exc)) from exc
        page_size = max(1, min(page_size, 100))

        prices = 0
        listing = client.prices_list_all(page_size=page_size)
        for price in tqdm(listing, desc="prices", unit=" price", disable=no_progress):
            services.product_upsert_from_price(price=mapping.parse_price(price))
            prices += 1

        counts: dict[str, int] = {}
        orphans = 0
        cause = Cause(CauseKind.BACKFILL, ref="stripe_backfill")
        listing = client.subscriptions_list_all(page_size=page_size)
        for sub in tqdm(listing, desc="subscriptions", unit=" sub", disable=no_progress):
            result = apply_snapshot(services.subscription_state(sub, timezone.now()), cause)
            services.products_upsert_from_subscription(subscription=sub)
            counts[result.outcome] = counts.get(result.outcome, 0) + 1
            if not mapping.subscription_user_id(sub):
                orphans += 1
            if mirror:
                services.subscription_mirror(subscription=sub)
        summary = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items())) or "none"
        self.stdout.write(self.style.SUCCESS(
            f"Stripe backfill: {prices} prices; subscriptions: {summary}; "
            f"{orphans} without metadata.user_id (linked by customer when known, else orphans)."))
