"""manage.py export_transactions: the ledger's rows of a period as CSV or JSON lines (docs/finance.md "Exports")."""

import os
import tempfile
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from finance.streaming import FORMATS, queryset_chunks
from finance.transactions import COLUMNS, ENVIRONMENTS, BadExportRequest, export_parse

_NAMES = {"from": "--from", "to": "--to", "provider": "--provider", "environment": "--environment",
          "recorded_before": "--recorded-before"}


class Command(BaseCommand):
    help = ("Export the ledger (one row per transaction) that occurred on the UTC days --from..--to (both "
            "included), as CSV or JSON lines, to standard output or --output.")

    def add_arguments(self, parser):
        parser.add_argument("--from", dest="first", required=True, help="First UTC day, YYYY-MM-DD (by occurred_at)")
        parser.add_argument("--to", dest="last", required=True, help="Last UTC day, YYYY-MM-DD, included")
        parser.add_argument("--provider", help="Only this store (default: all)")
        parser.add_argument("--environment", default="production", help=f"{' | '.join(ENVIRONMENTS)} "
                                                                         "(default: production)")
        parser.add_argument("--recorded-before", dest="recorded_before",
                            help="Only rows recorded before this moment (ISO 8601, UTC when no offset): reproduces "
                                 "an export run then, byte for byte (default: now, printed on standard error)")
        parser.add_argument("--format", dest="fmt", default="csv", help=f"{' | '.join(FORMATS)} (default: csv)")
        parser.add_argument("--output", help="A file to write (default: standard output); written whole or not at all")

    def handle(self, *args, first, last, provider, environment, recorded_before, fmt, output, **options):
        if fmt not in FORMATS:
            raise CommandError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}.")
        try:
            export = export_parse(first=first, last=last, provider=provider, environment=environment,
                                  recorded_before=recorded_before, names=_NAMES)
        except BadExportRequest as exc:
            raise CommandError(str(exc)) from None
        queryset = export.queryset()
        # A bar only on a terminal (and only then the count query it needs); quiet in cron and pipes.
        show = self.stderr.isatty()
        rows = 0
        # The raw stream: Django's wrapper would end each redraw of the bar with a new line.
        with tqdm(total=queryset.count() if show else None, unit=" rows", file=self.stderr._out,
                  disable=not show) as bar:
            def progress(n: int) -> None:
                nonlocal rows
                rows += n
                bar.update(n)

            self._write(queryset_chunks(fmt, COLUMNS, queryset, progress=progress), output)
        moment = export.recorded_before_text
        # Information, not an error: unstyled (Django would colour standard error red).
        self.stderr.write(f"{rows:,} row{'' if rows == 1 else 's'} recorded before {moment} (pass --recorded-before "
                          f"{moment} to reproduce this export).", style_func=str)

    def _write(self, stream, output: str | None) -> None:
        if output is None:
            target = getattr(self.stdout._out, "buffer", None)  # binary standard output when there is one
            for chunk in stream:
                if target is None:
                    self.stdout._out.write(chunk.decode())
                else:
                    target.write(chunk)
            if target is not None:
                target.flush()
            return
        path = Path(output)
        # Written beside the target and renamed when complete: a failed export leaves no half file.
        fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or ".")
        try:
            with os.fdopen(fd, "wb") as handle:
                for chunk in stream:
                    handle.write(chunk)
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(temporary, 0o666 & ~umask)  # as a plain open() would have made it (mkstemp's is 0600)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
