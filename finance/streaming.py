"""Rows → CSV or JSON lines, as a stream of bytes (memory flat whatever the number of rows).

A first, plain version: the exports' owner may add faster paths (PostgreSQL `COPY … TO STDOUT`) behind
the same functions. Every export renders through here so CSV and JSON lines mean the same everywhere:
a header row first; values already as text (times in UTC ISO 8601, amounts as decimal strings)."""

import csv
import io
import json
from collections.abc import Iterable, Iterator, Sequence

FORMATS = ("csv", "jsonl")
CONTENT_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}


def csv_chunks(header: Sequence[str], rows: Iterable[Sequence], *, rows_per_chunk: int = 1000) -> Iterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    pending = 0
    for row in rows:
        writer.writerow(["" if value is None else value for value in row])
        pending += 1
        if pending >= rows_per_chunk:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
            pending = 0
    yield buffer.getvalue().encode()


def jsonl_chunks(header: Sequence[str], rows: Iterable[Sequence], *, rows_per_chunk: int = 1000) -> Iterator[bytes]:
    lines = []
    for row in rows:
        lines.append(json.dumps(dict(zip(header, row, strict=True)), ensure_ascii=False, separators=(",", ":")))
        if len(lines) >= rows_per_chunk:
            yield ("\n".join(lines) + "\n").encode()
            lines = []
    if lines:
        yield ("\n".join(lines) + "\n").encode()


def chunks(fmt: str, header: Sequence[str], rows: Iterable[Sequence]) -> Iterator[bytes]:
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    return csv_chunks(header, rows) if fmt == "csv" else jsonl_chunks(header, rows)
