"""The retention job by hand (the daily beat job privacy.tasks.prune_retained), with a progress bar."""

from django.core.management.base import BaseCommand
from tqdm import tqdm

from privacy.retention import prune_retained


class Command(BaseCommand):
    help = "Prune raw data past its retention (RETENTION_* settings; docs/operations.md \"Retention\")."

    def handle(self, *args, **options):
        with tqdm(unit="row", file=self.stderr, disable=None, desc="pruned") as bar:
            report = prune_retained(progress=bar.update)
        for name, n in report.as_dict().items():
            self.stdout.write(f"{name.replace('_', ' ')}: {n}")
