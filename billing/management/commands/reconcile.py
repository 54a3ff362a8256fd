"""Reconcile subscriptions with their stores by hand (the beat job's walk): every difference recorded as
a drift (the admin's Drifts list), then applied; `--dry-run` records the drifts and applies nothing."""

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from billing.reconciliation import due_count, reconcilable_providers, reconcile
from billing.snapshots import Provider


class Command(BaseCommand):
    help = ("Re-read due subscriptions from their stores (live ones and those ended in the last "
            "RECONCILE_ENDED_DAYS, oldest confirmation first, within each store's budget); record drifts.")

    def add_arguments(self, parser):
        parser.add_argument("--provider", choices=[p for p in Provider.ALL if p != Provider.MANUAL])
        parser.add_argument("--limit", type=int, default=None, help="read at most this many subscriptions in all")
        parser.add_argument("--dry-run", action="store_true",
                            help="record the drifts found (marked not applied) and change no subscription")

    def handle(self, *args, provider=None, limit=None, dry_run=False, **options):
        if limit is not None and limit < 1:
            raise CommandError("--limit must be positive")
        providers = [provider] if provider else reconcilable_providers()
        if provider and provider not in reconcilable_providers():
            raise CommandError(f"{provider} cannot be re-read here: its API is not configured (or it has no re-read)")
        total = sum(due_count(p) for p in providers)
        if limit is not None:
            total = min(total, limit)
        with tqdm(total=total, unit="sub", file=self.stderr, disable=None) as bar:
            report = reconcile(provider=provider, limit=limit, dry_run=dry_run, progress=bar.update)
        for name, store in report.stores.items():
            outcomes = ", ".join(f"{n} {outcome}" for outcome, n in sorted(store.outcomes.items())) or "none applied"
            stopped = f"; stopped: {store.stopped}" if store.stopped else ""
            drifts = f"{store.drifts} drifts" + (" recorded, not applied (dry run)" if dry_run else "")
            self.stdout.write(f"{name}: {store.checked} read ({outcomes}), {drifts}, {store.failed} failed{stopped}")
        if not report.stores:
            self.stdout.write("No store can be re-read: none has its API configured.")
