"""The one statement the ORM cannot express: INSERT … ON CONFLICT (…) DO NOTHING RETURNING ….

`bulk_create(ignore_conflicts=True)` returns neither the new ids nor which rows were inserted, and a
savepoint + `create()` + catching IntegrityError costs four statements per row where this costs one
statement for all of them. Used where rows are created on a hot path and a concurrent writer may
create the same ones (webhook events, new subscriptions)."""

import functools

from django.db import connection


def insert_ignoring_conflict(model, values: dict, *, conflict: tuple[str, ...]) -> int | None:
    """Insert one row (`values`: field name → value, FKs by id). Returns the new id, or None when a
    row with the same `conflict` fields exists."""
    rows = insert_rows_ignoring_conflict(model, [values], conflict=conflict, returning=(model._meta.pk.name,))
    return rows[0][0] if rows else None


def insert_rows_ignoring_conflict(model, rows: list[dict], *, conflict: tuple[str, ...],
                                  returning: tuple[str, ...]) -> list[tuple]:
    """Insert rows (each a dict of the same field names, in the same order), skipping those that
    conflict on `conflict`; returns the `returning` fields of the rows inserted. A conflicting row
    being inserted by another transaction makes PostgreSQL wait for it: skipped if it commits."""
    if not rows:
        return []
    names = tuple(rows[0])
    fields = _fields(model, names)
    params = [f.get_db_prep_save(row[name], connection) for row in rows for name, f in zip(names, fields, strict=True)]
    with connection.cursor() as cursor:
        cursor.execute(_sql(model, names, conflict, returning, len(rows)), params)
        return cursor.fetchall()


@functools.cache
def _fields(model, names: tuple[str, ...]) -> list:
    return [model._meta.get_field(name) for name in names]


@functools.lru_cache(maxsize=256)
def _sql(model, names: tuple[str, ...], conflict: tuple[str, ...], returning: tuple[str, ...], count: int) -> str:
    quote = connection.ops.quote_name

    def columns(field_names):
        return ", ".join(quote(f.column) for f in _fields(model, field_names))

    row = "(" + ", ".join(["%s"] * len(names)) + ")"
    # Identifiers come from the model, values are parameters.
    return (f"INSERT INTO {quote(model._meta.db_table)} ({columns(names)}) VALUES {', '.join([row] * count)} "  # noqa: S608
            f"ON CONFLICT ({columns(conflict)}) DO NOTHING RETURNING {columns(returning)}")


def update_rows(model, objs: list, fields: list[str]) -> None:
    """Write `fields` of each of `objs` (saved model instances) with one statement on PostgreSQL,
    `UPDATE … FROM (VALUES …)`, where Django's bulk_update builds a CASE per field and row and costs
    more than the saves it replaces. Elsewhere (SQLite in `make run`) a save per row."""
    if not objs:
        return
    if connection.vendor != "postgresql":
        for obj in objs:
            obj.save(update_fields=fields)
        return
    names = tuple(fields)
    columns = _fields(model, names)
    params = []
    for obj in objs:
        params.append(obj.pk)
        params.extend(f.get_db_prep_save(getattr(obj, f.attname), connection) for f in columns)
    with connection.cursor() as cursor:
        cursor.execute(_update_sql(model, names, len(objs)), params)


@functools.lru_cache(maxsize=256)
def _update_sql(model, names: tuple[str, ...], count: int) -> str:
    quote = connection.ops.quote_name
    pk = model._meta.pk
    columns = _fields(model, names)
    # VALUES has no column types of its own: each value is cast to its column's type.
    row = "(" + ", ".join(f"%s::{f.cast_db_type(connection)}" for f in [pk, *columns]) + ")"
    assignments = ", ".join(f"{quote(f.column)} = v.{quote(f.column)}" for f in columns)
    aliases = ", ".join(quote(f.column) for f in [pk, *columns])
    table = quote(model._meta.db_table)
    # Identifiers come from the model, values are parameters.
    return (f"UPDATE {table} SET {assignments} FROM (VALUES {', '.join([row] * count)}) AS v ({aliases}) "  # noqa: S608
            f"WHERE {table}.{quote(pk.column)} = v.{quote(pk.column)}")
