"""What finance's commands share: the output (a file or standard output, written chunk by chunk) and
the date arguments (billing/cli.py's `moment` for date-times)."""

import argparse
from collections.abc import Iterable
from contextlib import contextmanager
from datetime import date

from django.utils.dateparse import parse_date

from .streaming import FORMATS


def day(value: str) -> date:
    """An argparse `type`: a date, YYYY-MM-DD (a UTC day)."""
    try:
        parsed = parse_date(value)
    except ValueError:
        parsed = None
    if parsed is None:
        raise argparse.ArgumentTypeError(f"{value!r} is not a date: give YYYY-MM-DD")
    return parsed


def add_output_arguments(parser) -> None:
    parser.add_argument("--format", choices=FORMATS, default="csv", help="csv (default) or jsonl (JSON lines)")
    parser.add_argument("--output", default=None, help="A file to write (default: standard output)")


@contextmanager
def open_output(command, path: str | None):
    """Where an export's bytes go: the file named, or the command's standard output."""
    if path is None or path == "-":
        out = command.stdout._out  # Django's OutputWrapper around sys.stdout (or a test's buffer)
        binary = getattr(out, "buffer", None)
        if binary is not None:
            out.flush()
            yield binary
            binary.flush()
        else:
            yield _TextSink(out)
        return
    with open(path, "wb") as handle:
        yield handle


class _TextSink:
    """A text stream taking bytes (a StringIO given to call_command)."""

    def __init__(self, out):
        self.out = out

    def write(self, chunk: bytes) -> None:
        self.out.write(chunk.decode())


def write_chunks(handle, chunks: Iterable[bytes]) -> None:
    for chunk in chunks:
        handle.write(chunk)
