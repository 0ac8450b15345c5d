"""The lifetime history's extract: the counted orders, read with the period's readers.

`history_query` pushes the filter (completed orders before as_of with a positive amount,
placeable order times) and the projection (six columns) into SQL; `extract_history` reads
those rows through tasks/sql_fastpath and folds them per (customer, currency) client-side
(tasks/history.py). Relations, column kinds and the per-dialect read expressions are
tasks/extract_sql.py's, shared with the period's extract.
"""

from __future__ import annotations

import pandas as pd
import sqlalchemy as sa

from tasks.config import SqlSource
from tasks.extract_sql import (
    SourceRelation,
    dialect_family,
    read_expression,
    relation_for,
)
from tasks.filter_sql import compile_filter
from tasks.filtering import DIALECTS, Condition, FilterSpec
from tasks.history import ORDER_COLUMNS, aggregate_history
from tasks.sql_fastpath import read_query, streams_server_text, utc_session

# The first whole day datetime64[ns] can hold: older order dates (year 1, say) cannot be
# placed in time by the staging casts, so the history leaves them out as it does garbage.
EARLIEST_ORDER_DATE = "1677-09-22"
ISO_TIME_PATTERN = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}([ T][0-9]{2}:[0-9]{2}(:[0-9]{2}([.][0-9]+)?)?)?"
    r"(Z|[+-][0-9]{2}(:?[0-9]{2})?)?$"
)


def _parseable_time(
    column: sa.ColumnElement, family: str, kind: str
) -> sa.ColumnElement[bool] | None:
    """Text event times that parse as a date ('2025-07-3x' does not): SQLite's text and a
    MySQL text column. Typed columns hold only dates; the lower bound is the caller's."""
    if family == "sqlite":
        return sa.func.datetime(column).is_not(None)
    if family == "mysql" and kind != "datetime":
        # The pattern rejects garbage that CAST would read leniently ('2025-07-3x' as July 3);
        # CAST rejects impossible dates the pattern lets through ('2025-02-30').
        return sa.and_(
            column.regexp_match(ISO_TIME_PATTERN), sa.cast(column, sa.DateTime()).is_not(None)
        )
    return None


def history_query(
    relation: SourceRelation,
    *,
    dialect: str,
    timezone: str,
    as_of: pd.Timestamp,
    revenue_statuses: list[str],
    server_text: bool = False,
) -> tuple[sa.Select, dict[str, str]]:
    """The orders the lifetime history counts, one row each (transaction_id, customer_id,
    currency, order_date, amount, discount_applied), with the kind of each output column
    (for the reader); `tasks.history` turns their money into cents and folds them.

    The filter and the projection are pushed down, so a month's run reads six columns of
    the counted orders, never every column of every row: completed orders before as_of with
    a positive amount; orders whose time the pipeline cannot place (garbled text, a zero
    date, year 1) are left out, as the staging casts leave them out of the period (and
    report them there). The amount and discount travel as they are stored; the cents are
    the client's (tasks/history.net_cents), which costs the database nothing per row.

    Why the rows and not a GROUP BY: exact duplicate rows (a re-ingested transaction) must
    count once, and the DISTINCT that needs in SQL, over most of the table, outgrows
    MariaDB's default in-memory temporary table (16 MB) and spills to disk: at 1 M
    transactions it took 10-15 s of the extract's 17 s; reading the rows and folding them
    in pandas takes a few seconds (bench/README.md). Aggregating in memory was no better:
    with 256 MB temporary tables the same GROUP BY took 7.9 s at S = 100 k.

    `server_text` as in `read_expression`.
    """
    family = DIALECTS.get(dialect, dialect)
    columns = {name: relation.column(name) for name in relation.columns}
    spec = FilterSpec(
        conditions=[
            Condition(field="order_date", operator="less_than", value=as_of.isoformat()),
            Condition(field="order_date", operator="greater_equal", value=EARLIEST_ORDER_DATE),
            Condition(field="status", operator="in", value=revenue_statuses),
            Condition(field="amount", operator="greater_than", value=0),
        ],
        caseSensitive=False,
        nullHandling="exclude",
    )
    where = compile_filter(spec, columns, dialect, timezone)
    valid = _parseable_time(columns["order_date"], family, relation.kinds.get("order_date", "any"))
    expressions: list[sa.ColumnElement] = []
    kinds: dict[str, str] = {}
    for name in ORDER_COLUMNS:
        if name not in columns:  # currency and the discount are optional (REQUIRED_SOURCE_FIELDS)
            expression, kinds[name] = sa.literal(None, sa.String()), "text"
        else:
            expression, kinds[name] = read_expression(
                columns[name], relation.kinds.get(name, "any"), family, server_text=server_text
            )
        expressions.append(expression.label(name))
    query = sa.select(*expressions).select_from(relation.selectable)
    return query.where(where if valid is None else sa.and_(where, valid)), kinds


def extract_history(
    engine: sa.Engine,
    source: SqlSource,
    *,
    timezone: str,
    as_of: pd.Timestamp,
    revenue_statuses: list[str],
    fast_path: bool = True,
) -> pd.DataFrame:
    """The lifetime history per (customer, currency): customer_id, currency,
    first_order_at, last_order_at, net_amount (exact whole cents / 100), order_count."""
    with engine.connect() as connection:
        family = dialect_family(connection.dialect)
        with utc_session(connection, family):
            relation = relation_for(connection, "transactions", source)
            query, kinds = history_query(
                relation,
                dialect=connection.dialect.name,
                timezone=timezone,
                as_of=as_of,
                revenue_statuses=revenue_statuses,
                server_text=fast_path and streams_server_text(connection),
            )
            orders = read_query(
                connection,
                query,
                kinds,
                datetimes=["order_date"],
                chunk_rows=source.chunk_rows,
                fast_path=fast_path,
                connectorx=fast_path,
                arrow=True,
            )
    return aggregate_history(orders)
