"""Recompute the daily metrics of a range of days (each day replaced in one transaction; idempotent)."""

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from tqdm import tqdm

from finance.cli import day
from finance.metrics import metrics_rebuild


class Command(BaseCommand):
    help = "Recompute MetricDay rows for --from … --to (UTC days, both included) from the history and the ledger."

    def add_arguments(self, parser):
        parser.add_argument("--from", dest="first", required=True, type=day, help="First day, YYYY-MM-DD")
        parser.add_argument("--to", dest="last", required=True, type=day, help="Last day, YYYY-MM-DD (included)")
        parser.add_argument("--full", action="store_true",
                            help="Compute every day's stocks from every subscription (by default the first day is, "
                                 "and each next day is carried from the one before: the same rows, much faster)")

    def handle(self, *args, first, last, full, **options):
        if last < first:
            raise CommandError("--to is before --from.")
        today = timezone.now().date()
        if last >= today:
            raise CommandError(f"--to must be a day that has ended (before {today}): a day still running would "
                               "be computed from half of it.")
        days = (last - first).days + 1
        with tqdm(total=days, unit=" days", file=self.stderr, disable=None) as progress:
            written = metrics_rebuild(first, last, full=full, progress=progress.update)
        self.stderr.write(f"{days} days rebuilt, {written} rows.")
