"""Import every existing Stripe subscription (and the prices, as catalogue Products): for a project
moving to this service with customers already on Stripe. Safe to run again: it applies the state
Stripe has now, through the one write path, and a re-run changes only what changed."""

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from tqdm import tqdm

from billing.apply import apply_snapshot
from billing.providers.base import NotConfigured
from billing.providers.stripe import catalogue, mapping
from billing.providers.stripe.adapter import SUBSCRIPTION_EXPAND, StripeAdapter, plain
from billing.providers.stripe.client import get_client
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
            client = get_client()
        except NotConfigured as exc:
            raise CommandError(str(exc)) from exc
        page_size = max(1, min(page_size, 100))
        adapter = StripeAdapter()

        prices = 0
        listing = client.v1.prices.list({"limit": page_size, "expand": ["data.product"]})
        for price in tqdm(listing.auto_paging_iter(), desc="prices", unit=" price", disable=no_progress):
            catalogue.product_upsert_from_price(price=mapping.parse_price(plain(price)))
            prices += 1

        counts: dict[str, int] = {}
        orphans = 0
        cause = Cause(CauseKind.BACKFILL, ref="stripe_backfill")
        listing = client.v1.subscriptions.list({"status": "all", "limit": page_size,
                                                "expand": [f"data.{path}" for path in SUBSCRIPTION_EXPAND]})
        for obj in tqdm(listing.auto_paging_iter(), desc="subscriptions", unit=" sub", disable=no_progress):
            sub = plain(obj)
            result = apply_snapshot(adapter.snapshot(sub, timezone.now()), cause)
            catalogue.products_upsert_from_subscription(subscription=sub)
            counts[result.outcome] = counts.get(result.outcome, 0) + 1
            if not mapping.subscription_user_id(sub):
                orphans += 1
            if mirror:
                from billing.providers.stripe.mirror import subscription_mirror

                subscription_mirror(subscription=obj)
        summary = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items())) or "none"
        self.stdout.write(self.style.SUCCESS(
            f"Stripe backfill: {prices} prices; subscriptions: {summary}; "
            f"{orphans} without metadata.user_id (linked by customer when known, else orphans)."))
