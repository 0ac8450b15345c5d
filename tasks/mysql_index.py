"""Reading a small period through its event-time index on MariaDB/MySQL.

tasks/extract_sql.extract_table asks for it; everything here is one decision: whether the
period's query should carry FORCE INDEX (and ORDER BY the primary key), measured below.
"""

from __future__ import annotations

import sqlalchemy as sa

# MariaDB scans the whole table for a period's rows even with an index on the event time
# (S = 100 k: two months are 18% of the table; it estimated 35%): reading them through the
# index in primary-key order took 0.64 s against the scan's 1.2 s. For 85% of the table the
# index was 2x slower than the scan, so it is used below this share only.
INDEX_RANGE_MAX_SHARE = 0.25
# ...and only where the table's rows fit in InnoDB's buffer pool: the index path looks
# every row up in the clustered index and sorts them by key, which stays cheap in memory.
# Two months of 10 M sales (1.77 M rows, 1.1 GB table) with MariaDB's default 128 MB pool:
# the index path 6.3-7.0 s and 4.6-5.0 server CPU-s, the scan 4.6-4.7 s and 4.6-4.7 CPU-s;
# the same table in a 2 GB pool: index 4.5-4.7 s (4.2 CPU-s), scan 4.7-4.9 s (4.6-4.9).


def with_event_time_index(
    connection: sa.Connection,
    query: sa.Select,
    selectable: sa.FromClause,
    table_name: str,
    column: str,
) -> sa.Select:
    """`query` read through an index that starts with the event-time column, in primary-key
    order, where the period's rows are under INDEX_RANGE_MAX_SHARE of the table; else
    `query` as it was (no such index, no primary key, a large share, or an InnoDB table
    larger than the server's buffer pool).

    The share is counted exactly on the index (a covering count, stopped at the cap: 0.06 s
    for 177 k of 1 M rows); the optimizer's own estimate was off by 2x either way. The
    ORDER BY keeps the order a full scan returns (InnoDB's clustered primary key), so the
    rows, and which of two copies of a transaction is "first", do not depend on the plan.
    """
    schema, _, table = table_name.rpartition(".")
    inspector = sa.inspect(connection)
    try:
        names = [
            index["name"] for index in inspector.get_indexes(table, schema=schema or None)
            if index["name"]
            and str((index.get("column_names") or [""])[0]).lower() == column.lower()
        ]
        if not names:
            return query
        primary_key = inspector.get_pk_constraint(table, schema=schema or None)
        key_columns = primary_key.get("constrained_columns") or []
        if not key_columns:
            return query
        table_rows, table_bytes, engine = connection.execute(
            sa.text(
                "SELECT table_rows, data_length, engine FROM information_schema.tables"
                " WHERE table_schema = COALESCE(:schema, DATABASE()) AND table_name = :table"
            ),
            {"schema": schema or None, "table": table},
        ).one_or_none() or (None, None, None)
        if str(engine or "").lower() == "innodb" and (table_bytes or 0) > buffer_pool_bytes(connection):
            return query
    except sa.exc.DBAPIError as exc:
        if exc.connection_invalidated:
            raise  # a lost connection is for the retry policy to judge, not a reason to scan
        return query
    except sa.exc.SQLAlchemyError:  # nothing to inspect (a view, say): read as it is
        return query
    if not table_rows:
        return query
    preparer = connection.dialect.identifier_preparer
    hint = f"FORCE INDEX ({preparer.quote(names[0])})"
    dialect_name = connection.dialect.name
    cap = int(INDEX_RANGE_MAX_SHARE * table_rows) + 1
    in_range = (
        sa.select(sa.literal(1)).select_from(selectable)
        .where(query.whereclause).with_hint(selectable, hint, dialect_name=dialect_name)
        .limit(cap).subquery("period_rows")
    )
    counted = connection.execute(sa.select(sa.func.count()).select_from(in_range)).scalar_one()
    if counted >= cap:
        return query
    table_text = preparer.format_table(selectable)  # type: ignore[arg-type]
    order = [sa.literal_column(f"{table_text}.{preparer.quote(name)}") for name in key_columns]
    return query.with_hint(selectable, hint, dialect_name=dialect_name).order_by(*order)


def buffer_pool_bytes(connection: sa.Connection) -> int:
    """InnoDB's buffer pool size (the server's setting: what an index lookup finds in memory)."""
    return int(connection.execute(sa.text("SELECT @@innodb_buffer_pool_size")).scalar_one())
