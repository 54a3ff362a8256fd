"""The daily metrics (MetricDay rows, see metrics_rebuild) per day, week or month, as CSV or JSON lines."""

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from finance.cli import add_output_arguments, day, open_output, write_chunks
from finance.metric_exports import HEADER, INTERVALS, metric_rows
from finance.streaming import chunks


class Command(BaseCommand):
    help = ("Export the metrics of --from … --to (UTC days, both included) per --interval: stocks (entitled, MRR) "
            "as of each interval's last day, flows summed.")

    def add_arguments(self, parser):
        parser.add_argument("--from", dest="first", required=True, type=day, help="First day, YYYY-MM-DD")
        parser.add_argument("--to", dest="last", required=True, type=day, help="Last day, YYYY-MM-DD (included)")
        parser.add_argument("--interval", choices=INTERVALS, default="day")
        add_output_arguments(parser)

    def handle(self, *args, first, last, interval, format, output, **options):
        if last < first:
            raise CommandError("--to is before --from.")
        rows = metric_rows(first, last, interval)
        with tqdm(rows, unit=" rows", file=self.stderr, disable=None) as progress, \
                open_output(self, output) as handle:
            write_chunks(handle, chunks(format, HEADER, progress))
