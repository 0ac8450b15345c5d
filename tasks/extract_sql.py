"""SQL extraction: one code path for PostgreSQL, MySQL/MariaDB and SQLite.

What it promises (SPEC §3): only the needed columns are read; the period filter is pushed
into the WHERE clause with bound parameters (identifiers come from validated config, values
are never formatted into SQL); a table or a user query is mapped onto canonical names; the
history the metrics need is fetched as a pushed-down aggregate, not by pulling all rows.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import pandas as pd
import sqlalchemy as sa

from tasks.config import SqlSource
from tasks.filtering import Condition, FilterSpec, compile_filter
from tasks.settings import FIELDS, REQUIRED_SOURCE_FIELDS

log = logging.getLogger(__name__)


class SourceSchemaError(ValueError):
    """The source lacks a table or a column the configuration maps; names which."""


@dataclass(frozen=True)
class SourceRelation:
    """The selectable a source reads from, and canonical field -> source column."""

    selectable: sa.FromClause
    columns: dict[str, str]

    def column(self, field: str) -> sa.ColumnElement:
        return self.selectable.c[self.columns[field]]


def _quoted_table(name: str) -> sa.TableClause:
    schema, _, table = name.rpartition(".")
    return sa.table(table, schema=schema or None)


def source_columns(connection: sa.Connection, source: SqlSource) -> list[str]:
    """The column names the configured table or query really has."""
    if source.table is not None:
        schema, _, table = source.table.rpartition(".")
        inspector = sa.inspect(connection)
        if not inspector.has_table(table, schema=schema or None):
            raise SourceSchemaError(f"table {source.table!r} does not exist in the source database")
        return [c["name"] for c in inspector.get_columns(table, schema=schema or None)]
    probe = sa.select(sa.text("*")).select_from(sa.text(f"({source.query}) AS probe")).where(sa.false())
    return list(connection.execute(probe).keys())


def relation_for(connection: sa.Connection, name: str, source: SqlSource) -> SourceRelation:
    """Map canonical fields onto the source's columns; fail clearly on a missing one."""
    available = source_columns(connection, source)
    lookup = {column.lower(): column for column in available}
    columns: dict[str, str] = {}
    problems: list[str] = []
    for field in FIELDS[name]:
        wanted = source.column_map.get(field, field)
        actual = lookup.get(wanted.lower())
        if actual is not None:
            columns[field] = actual
        elif field in source.column_map or field in REQUIRED_SOURCE_FIELDS[name]:
            problems.append(
                f"sources.{name}: column {wanted!r} (for field {field!r}) does not exist; "
                f"the source has: {', '.join(available)}"
            )
    if problems:
        raise SourceSchemaError("; ".join(problems))
    if source.table is not None:
        selectable: sa.FromClause = _quoted_table(source.table)
        for column in columns.values():
            selectable.append_column(sa.column(column))  # type: ignore[attr-defined]
    else:
        text = sa.text(source.query or "").columns(*(sa.column(c) for c in available))
        selectable = text.subquery("src")
    return SourceRelation(selectable, columns)


def extraction_query(
    relation: SourceRelation, where: sa.ColumnElement[bool] | None
) -> sa.Select:
    labelled = [relation.column(field).label(field) for field in relation.columns]
    query = sa.select(*labelled).select_from(relation.selectable)
    return query.where(where) if where is not None else query


def pushdown_predicate(
    relation: SourceRelation,
    *,
    dialect: str,
    timezone: str,
    period_spec: FilterSpec | None,
    extra_windows: list[FilterSpec],
    event_time: str | None,
) -> sa.ColumnElement[bool] | None:
    """(period filter) OR (any extra window) OR (event time is null).

    Rows whose event time is null are fetched on purpose: they belong to no period, and the
    filter stage quarantines them under `event_time_missing` instead of losing them.
    """
    if period_spec is None or event_time is None:
        return None
    columns = {field: relation.column(field) for field in relation.columns}
    parts = [compile_filter(period_spec, columns, dialect, timezone)]
    parts += [compile_filter(spec, columns, dialect, timezone) for spec in extra_windows]
    parts.append(relation.column(event_time).is_(None))
    return sa.or_(*parts)


def read_frames(
    connection: sa.Connection, query: sa.Select, chunk_rows: int
) -> Iterator[pd.DataFrame]:
    """Stream the result in chunks (server-side cursor where the driver has one)."""
    result = connection.execution_options(stream_results=True, yield_per=chunk_rows).execute(query)
    keys = list(result.keys())
    while rows := result.fetchmany(chunk_rows):
        yield pd.DataFrame.from_records(rows, columns=keys)


def extract_table(
    engine: sa.Engine,
    name: str,
    source: SqlSource,
    *,
    timezone: str = "UTC",
    period_spec: FilterSpec | None = None,
    extra_windows: list[FilterSpec] | None = None,
    event_time: str | None = None,
) -> pd.DataFrame:
    """The source's rows under canonical names, filtered in SQL where a filter is given."""
    with engine.connect() as connection:
        relation = relation_for(connection, name, source)
        where = pushdown_predicate(
            relation,
            dialect=engine.dialect.name,
            timezone=timezone,
            period_spec=period_spec,
            extra_windows=extra_windows or [],
            event_time=event_time,
        )
        query = extraction_query(relation, where)
        chunks = list(read_frames(connection, query, source.chunk_rows))
    if not chunks:
        return pd.DataFrame({field: pd.Series(dtype="object") for field in relation.columns})
    return pd.concat(chunks, ignore_index=True)


def history_query(
    relation: SourceRelation,
    *,
    dialect: str,
    timezone: str,
    as_of: pd.Timestamp,
    revenue_statuses: list[str],
) -> sa.Select:
    """Per (customer, currency): first/last completed order before as_of, net amount, count.

    Pushed down so that a month's run never pulls years of history. Exact duplicate rows
    (a re-ingested transaction) are collapsed by DISTINCT first; amounts must be positive.
    """
    columns = {field: relation.column(field) for field in relation.columns}
    spec = FilterSpec(
        conditions=[
            Condition(field="order_date", operator="less_than", value=as_of.isoformat()),
            Condition(field="status", operator="in", value=revenue_statuses),
            Condition(field="amount", operator="greater_than", value=0),
        ],
        caseSensitive=False,
        nullHandling="exclude",
    )
    discount = (
        sa.func.coalesce(columns["discount_applied"], 0)
        if "discount_applied" in columns
        else sa.literal(0)
    )
    currency = columns["currency"] if "currency" in columns else sa.literal(None)
    distinct_rows = (
        sa.select(
            columns["transaction_id"].label("transaction_id"),
            columns["customer_id"].label("customer_id"),
            currency.label("currency"),
            columns["order_date"].label("order_date"),
            columns["amount"].label("amount"),
            discount.label("discount"),
        )
        .select_from(relation.selectable)
        .where(compile_filter(spec, columns, dialect, timezone))
        .distinct()
        .subquery("orders")
    )
    return sa.select(
        distinct_rows.c.customer_id,
        distinct_rows.c.currency,
        sa.func.min(distinct_rows.c.order_date).label("first_order_at"),
        sa.func.max(distinct_rows.c.order_date).label("last_order_at"),
        sa.func.sum(distinct_rows.c.amount - distinct_rows.c.discount).label("net_amount"),
        sa.func.count().label("order_count"),
    ).group_by(distinct_rows.c.customer_id, distinct_rows.c.currency)


def extract_history(
    engine: sa.Engine,
    source: SqlSource,
    *,
    timezone: str,
    as_of: pd.Timestamp,
    revenue_statuses: list[str],
) -> pd.DataFrame:
    with engine.connect() as connection:
        relation = relation_for(connection, "transactions", source)
        query = history_query(
            relation,
            dialect=engine.dialect.name,
            timezone=timezone,
            as_of=as_of,
            revenue_statuses=revenue_statuses,
        )
        rows = connection.execute(query).fetchall()
    return pd.DataFrame.from_records(
        rows,
        columns=["customer_id", "currency", "first_order_at", "last_order_at", "net_amount",
                 "order_count"],
    )


def count_rows(engine: sa.Engine, name: str, source: SqlSource) -> int:
    with engine.connect() as connection:
        relation = relation_for(connection, name, source)
        query = sa.select(sa.func.count()).select_from(relation.selectable)
        return int(connection.execute(query).scalar_one())
