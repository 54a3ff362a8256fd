"""Rows → CSV or JSON lines, as a stream of bytes (memory flat whatever the number of rows).

Every export renders through here so CSV and JSON lines mean the same everywhere: a header row first
(CSV; JSON lines name each value), values already as text (times in UTC ISO 8601, amounts as decimal
strings) or integers; an absent value (None) is an empty CSV field and JSON null.

Two ways to the same bytes:
- `chunks(fmt, header, rows)`: rows already in Python (any database, any source);
- `queryset_chunks(fmt, columns, queryset)`: an export described by `Column`s. On PostgreSQL the
  formatting is done in SQL and the rows leave the server through `COPY (SELECT …) TO STDOUT` (psycopg's
  copy support): measured at many times Django's `.iterator()` + `csv.writer` (docs/finance.md "Exports").
  Elsewhere (SQLite) the same columns are formatted in Python from `.iterator()`. Both give identical
  bytes for the same rows (tests/finance/test_streaming.py holds them to it).
"""

import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from django.db import connections, transaction
from django.db.models import F, Func, TextField

from billing.money import EXPONENTS, exponent

FORMATS = ("csv", "jsonl")
CONTENT_TYPES = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}
CHUNK_BYTES = 64 * 1024  # one socket write per ~64 KiB: a write per row costs more than the row


def _blank_to_none(value):
    return None if value == "" else value


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


# --- exports described by columns -------------------------------------------------------------------

class _Sql(Func):
    """A SQL expression over model fields: `template` with {0}, {1}… for the fields (joined as needed)."""

    def __init__(self, template: str, *paths: str, output_field=None):
        super().__init__(*(F(p) for p in paths), output_field=output_field or TextField())
        self.sql_template = template

    def as_sql(self, compiler, connection, **extra_context):
        parts, params = [], []
        for expression in self.get_source_expressions():
            sql, expression_params = compiler.compile(expression)
            parts.append(f"({sql})")
            params.extend(expression_params)
        # Every field appears once in every template below, so the parameters keep their order.
        return self.sql_template.format(*parts), params


@dataclass(frozen=True)
class Column:
    """One column of an export: its name, the model fields it reads, how Python formats them, and the
    same formatting in PostgreSQL's SQL."""

    name: str
    paths: tuple[str, ...]
    python: Callable
    sql: str  # a template over the paths ({0}, {1}); its value is text or an integer, NULL when absent

    def __post_init__(self):
        if not self.name.isidentifier():  # written into SQL as is (the JSON lines' keys)
            raise ValueError(f"a column name must be an identifier, not {self.name!r}")

    def expression(self) -> _Sql:
        return _Sql(self.sql, *self.paths)


def text(name: str, path: str | None = None) -> Column:
    """Text as stored; an empty string is written as absent (an empty CSV field, JSON null)."""
    return Column(name, (path or name,), _blank_to_none, "NULLIF({0}, '')")


def integer(name: str, path: str | None = None) -> Column:
    return Column(name, (path or name,), lambda v: v, "{0}")


def moment(value: datetime | None) -> str | None:
    """UTC ISO 8601 as the API writes it: 2026-11-01T10:00:00Z, with microseconds only when there are any."""
    if value is None:
        return None
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ" if value.microsecond else "%Y-%m-%dT%H:%M:%SZ")


_MOMENT_SQL = ("CASE WHEN {0} IS NULL THEN NULL WHEN date_trunc('second', {0}) = {0}"
               " THEN to_char({0} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
               " ELSE to_char({0} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') END")


def timestamp(name: str, path: str | None = None) -> Column:
    # {0} three times: the template repeats one field, which carries no parameters (a plain column).
    return Column(name, (path or name,), moment, _MOMENT_SQL)


def decimal_string(amount_minor: int | None, currency: str | None) -> str | None:
    """Minor units as a decimal string with the currency's own decimals: 999 EUR → "9.99", 980 JPY → "980",
    1250 KWD → "1.250"."""
    if amount_minor is None:
        return None
    places = exponent(currency)
    return f"{Decimal(amount_minor).scaleb(-places):.{places}f}"


def _decimal_sql() -> str:
    cases = []
    for places in sorted(set(EXPONENTS.values())):
        codes = ", ".join(f"'{code}'" for code, p in sorted(EXPONENTS.items()) if p == places)
        rendered = "{0}::text" if places == 0 else f"round({{0}}::numeric / {10 ** places}, {places})::text"
        cases.append(f"WHEN upper({{1}}) IN ({codes}) THEN {rendered}")
    return (f"CASE WHEN {{0}} IS NULL THEN NULL {' '.join(cases)} "
            "ELSE round({0}::numeric / 100, 2)::text END")


_DECIMAL_SQL = _decimal_sql()


def amount(name: str, amount_path: str, currency_path: str) -> Column:
    return Column(name, (amount_path, currency_path), decimal_string, _DECIMAL_SQL)


def _formatted_rows(columns: Sequence[Column], queryset, progress) -> Iterator[list]:
    paths = [path for column in columns for path in column.paths]
    done = 0
    for raw in queryset.values_list(*paths).iterator(chunk_size=2000):
        row, at = [], 0
        for column in columns:
            width = len(column.paths)
            row.append(column.python(*raw[at:at + width]))
            at += width
        yield row
        done += 1
        if progress and done % 1000 == 0:
            progress(1000)
    if progress and done % 1000:
        progress(done % 1000)


def _json_object_sql(columns: Sequence[Column]) -> tuple[str, list[str]]:
    """One SQL template (and its fields) for a row as json.dumps writes it: compact, keys in the columns'
    order, non-ASCII as is (PostgreSQL's to_json escapes as Python's json does)."""
    members, paths = [], []
    for column in columns:
        shifted = column.sql.format(*(f"{{{len(paths) + k}}}" for k in range(len(column.paths))))
        members.append(f"'{json.dumps(column.name)}:' || COALESCE(to_json({shifted})::text, 'null')")
        paths.extend(column.paths)
    return "'{{' || " + " || ',' || ".join(members) + " || '}}'", paths


def _copy_sql(columns: Sequence[Column], queryset, fmt: str) -> tuple[str, list]:
    if fmt == "csv":
        aliases = {f"export_c{i}": column.expression() for i, column in enumerate(columns)}
        sql, params = queryset.annotate(**aliases).values_list(*aliases).query.sql_with_params()
        return f"COPY ({sql}) TO STDOUT WITH (FORMAT csv)", list(params)
    # JSON lines: one text value per row, in the queryset's own SELECT (so its ORDER BY holds), written
    # through CSV with a quote and a delimiter that JSON text never holds raw (to_json escapes them).
    template, paths = _json_object_sql(columns)
    rows = queryset.annotate(export_json=_Sql(template, *paths)).values_list("export_json")
    sql, params = rows.query.sql_with_params()
    return f"COPY ({sql}) TO STDOUT WITH (FORMAT csv, QUOTE E'\\x01', DELIMITER E'\\x02')", list(params)


def _copy_chunks(columns: Sequence[Column], queryset, fmt: str, progress) -> Iterator[bytes]:
    sql, params = _copy_sql(columns, queryset, fmt)
    connection = connections[queryset.db]
    connection.ensure_connection()
    buffer = bytearray()
    if fmt == "csv":
        header = io.StringIO()
        csv.writer(header, lineterminator="\n").writerow([column.name for column in columns])
        buffer += header.getvalue().encode()
    pending = 0
    # A raw psycopg cursor: COPY is one statement, so the rows are one consistent snapshot. In its own
    # transaction or savepoint: a client hanging up mid-export makes psycopg cancel the COPY, and only a
    # rollback to it leaves the connection (and a transaction around it) usable.
    with transaction.atomic(using=queryset.db), connection.connection.cursor() as cursor, \
            cursor.copy(sql, params) as copy:
        for block in copy:  # one block per row
            buffer += block
            pending += 1
            if len(buffer) >= CHUNK_BYTES:
                yield bytes(buffer)
                buffer.clear()
                if progress:
                    progress(pending)
                pending = 0
    if progress and pending:
        progress(pending)
    if buffer:
        yield bytes(buffer)


def uses_copy(queryset) -> bool:
    return connections[queryset.db].vendor == "postgresql"


def queryset_chunks(fmt: str, columns: Sequence[Column], queryset, *, progress: Callable[[int], None] | None = None,
                    use_copy: bool | None = None) -> Iterator[bytes]:
    """The queryset's rows (in its order) as CSV or JSON lines; `progress(n)` is told of rows as they go.
    `use_copy`: PostgreSQL's COPY (the default there) or the Python iterator (the default elsewhere)."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if use_copy if use_copy is not None else uses_copy(queryset):
        return _copy_chunks(columns, queryset, fmt, progress)
    return chunks(fmt, [column.name for column in columns], _formatted_rows(columns, queryset, progress))
