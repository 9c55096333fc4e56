"""Saving a field of many rows, each its own value, in one UPDATE (DESIGN rule 11).

Django's `bulk_update` writes the same statement — `SET column = CASE id WHEN … THEN … END` — but
builds a `When` and a `Value` expression for every row and field and compiles each: on a batch of
inbound texts it cost more Python than the rows' own work. Here each value is prepared by its
field (`get_db_prep_save`, as a save would) and put in the statement as a parameter."""
from __future__ import annotations

from django.db import connection
from django.db.models import Model


def update_each(model: type[Model], rows: list[Model], fields: list[str], **same) -> int:
    """UPDATE the `fields` of `rows` (saved instances of `model`) to each one's own values, and
    the fields in `same` to one value for all, in one statement. Values are plain values, not
    expressions. Returns how many rows were updated."""
    if not rows:
        return 0
    meta = model._meta
    quote = connection.ops.quote_name
    pk = quote(meta.pk.column)
    casted = connection.features.requires_casted_case_in_updates  # PostgreSQL: CASE's type is not the column's
    assignments, params = [], []
    whens = " ".join(["WHEN %s THEN %s"] * len(rows))
    for name in fields:
        field = meta.get_field(name)
        case = f"CASE {pk} {whens} END"
        if casted:
            case = f"CAST({case} AS {field.cast_db_type(connection)})"
        assignments.append(f"{quote(field.column)} = {case}")
        for row in rows:
            params += [row.pk, _prepared(field, getattr(row, field.attname))]
    for name, value in same.items():
        field = meta.get_field(name)
        assignments.append(f"{quote(field.column)} = %s")
        params.append(_prepared(field, value))
    sql = (
        f"UPDATE {quote(meta.db_table)} SET {', '.join(assignments)} "
        f"WHERE {pk} IN ({', '.join(['%s'] * len(rows))})"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, *(row.pk for row in rows)])
        return cursor.rowcount


def _prepared(field, value):
    """The value as the database takes it; an expression (F("version") + 1) is refused plainly,
    not left for the database to choke on."""
    if hasattr(value, "resolve_expression"):
        raise TypeError(f"update_each takes plain values, not an expression, for {field.name}: {value!r}")
    return field.get_db_prep_save(value, connection)
