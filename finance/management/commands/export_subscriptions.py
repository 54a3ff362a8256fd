"""Every subscription as it stood at a moment, rebuilt from the status history: the same answer for a
past moment whenever it is asked (docs/finance.md "Subscriptions as of a moment")."""

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone
from tqdm import tqdm

from billing.cli import moment
from billing.history import subscriptions_as_of
from billing.snapshots import Environment, Provider
from finance.cli import add_output_arguments, open_output, write_chunks
from finance.streaming import chunks
from finance.subscription_exports import HEADER, subscription_rows


class Command(BaseCommand):
    help = "Export every subscription as it stood at --as-of (status, product, price, period, entitled, user)."

    def add_arguments(self, parser):
        parser.add_argument("--as-of", required=True, type=moment,
                            help="The moment: YYYY-MM-DD (its 00:00) or an ISO date-time; UTC without an offset")
        parser.add_argument("--provider", choices=Provider.ALL)
        parser.add_argument("--environment", choices=[Environment.PRODUCTION, Environment.SANDBOX, "all"],
                            default="all", help="production, sandbox or all (default)")
        add_output_arguments(parser)

    def handle(self, *args, as_of, provider, environment, format, output: str | None, **options):
        if as_of > timezone.now():
            raise CommandError("--as-of is in the future: the answer could still change.")
        states = subscriptions_as_of(as_of, provider=provider,
                                     environment=None if environment == "all" else environment)
        with tqdm(states, unit=" subscriptions", file=self.stderr, disable=None) as progress, \
                open_output(self, output) as handle:
            write_chunks(handle, chunks(format, HEADER, subscription_rows(progress, as_of)))

