"""How a period's rows are read on MariaDB/MySQL: by a primary-key range, through the
event-time index, or by a full scan.

tasks/extract_sql.extract_table asks for it; everything here is one decision, measured
below. Every plan returns the rows a full scan returns, in the same order (InnoDB's
clustered primary key), so which of two copies of a transaction is "first" does not depend
on the plan.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa

# Sales tables are written as orders happen, so an auto-increment key follows the order
# time and a month's rows lie in one stretch of the key. Where the period's rows span under
# this share of the key, that stretch is read by a primary-key range instead of the whole
# table. 10 M sales, two months (1.77 M rows, the last 18 % of the key), table 1.1 GB,
# MariaDB's default 128 MB buffer pool (`mariadb` CLI, ×3): key range 2.5-2.6 s, full scan
# 6.2-7.5 s; finding the range on the event-time index 0.5 s; the 16.5 k rows without a
# time below the range (spread over the table, so one page read each) 1.2-1.4 s. The
# period's read as the extract runs it (beside the history): 12.0-12.9 s -> 9.1-9.5 s,
# MariaDB 11.6-13.5 -> 9.1-9.5 CPU-s, the same frame. Where the key does not follow the
# time (random ids, back-filled history) the range is most of the key and the plans below
# decide as before.
KEY_RANGE_MAX_SHARE = 0.5
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


def period_reads(
    connection: sa.Connection,
    query: sa.Select,
    selectable: sa.FromClause,
    table_name: str,
    column: str,
    *,
    dated: sa.ColumnElement[bool],
    undated: sa.ColumnElement[bool],
    dated_on_column_only: bool,
) -> list[sa.Select]:
    """The queries that read `query`'s rows (its WHERE is `dated OR undated`), in order.

    `dated`: the period and its extra windows on the event-time `column`; `undated`: the
    rows whose event time is null or no instant, which the period's read fetches too (they
    are few: the filter stage quarantines them).

    - Key range: where `dated` reads only `column` (`dated_on_column_only`: then the
      event-time index covers finding the range) and its rows span under
      KEY_RANGE_MAX_SHARE of an integer primary key, three reads: the undated rows below
      the range, the range itself, the undated rows above it.
    - Event-time index: `query` with FORCE INDEX in key order, where the period is under
      INDEX_RANGE_MAX_SHARE of the table and the table fits in InnoDB's buffer pool.
    - Otherwise `query` as it is (no such index, no primary key, a view...).

    The reads run on one connection inside one transaction, which extract_table opens in
    REPEATABLE READ: they see one snapshot, the one the range was found in.
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
            return [query]
        primary_key = inspector.get_pk_constraint(table, schema=schema or None)
        key_columns = primary_key.get("constrained_columns") or []
        if not key_columns:
            return [query]
        preparer = connection.dialect.identifier_preparer
        hinted = _hinted(connection, f"FORCE INDEX ({preparer.quote(names[0])})", selectable)
        table_text = preparer.format_table(selectable)  # type: ignore[arg-type]
        keys = [sa.literal_column(f"{table_text}.{preparer.quote(name)}") for name in key_columns]
        if len(keys) == 1 and dated_on_column_only:
            ranged = _key_range_reads(connection, query, selectable, hinted, keys[0], dated, undated)
            if ranged is not None:
                return ranged
        table_rows, table_bytes, engine = connection.execute(
            sa.text(
                "SELECT table_rows, data_length, engine FROM information_schema.tables"
                " WHERE table_schema = COALESCE(:schema, DATABASE()) AND table_name = :table"
            ),
            {"schema": schema or None, "table": table},
        ).one_or_none() or (None, None, None)
        if str(engine or "").lower() == "innodb" and (table_bytes or 0) > buffer_pool_bytes(connection):
            return [query]
    except sa.exc.DBAPIError as exc:
        if exc.connection_invalidated:
            raise  # a lost connection is for the retry policy to judge, not a reason to scan
        return [query]
    except sa.exc.SQLAlchemyError:  # nothing to inspect (a view, say): read as it is
        return [query]
    if not table_rows:
        return [query]
    # The share is counted exactly on the index (a covering count, stopped at the cap: 0.06 s
    # for 177 k of 1 M rows); the optimizer's own estimate was off by 2x either way.
    cap = int(INDEX_RANGE_MAX_SHARE * table_rows) + 1
    in_range = hinted(sa.select(sa.literal(1)).select_from(selectable).where(query.whereclause))
    counted = connection.execute(
        sa.select(sa.func.count()).select_from(in_range.limit(cap).subquery("period_rows"))
    ).scalar_one()
    if counted >= cap:
        return [query]
    return [hinted(query).order_by(*keys)]


def _key_range_reads(
    connection: sa.Connection,
    query: sa.Select,
    selectable: sa.FromClause,
    hinted: Callable[[sa.Select], sa.Select],
    key: sa.ColumnElement,
    dated: sa.ColumnElement[bool],
    undated: sa.ColumnElement[bool],
) -> list[sa.Select] | None:
    """The key-range plan, or None where the dated rows' keys are not a narrow integer range.

    Every dated row's key is in [low, high] (they are its least and greatest), so the range
    read holds them all, with the undated rows between; the undated rows outside it are
    found through the event-time index (FORCE INDEX: ordered by the key, the optimizer would
    otherwise walk the key from its start). Each read is in key order and the three follow
    each other in the key, so together they are the full scan's rows in its order.
    """
    low, high = connection.execute(
        hinted(sa.select(sa.func.min(key), sa.func.max(key)).select_from(selectable).where(dated))
    ).one()
    first, last = connection.execute(sa.select(sa.func.min(key), sa.func.max(key)).select_from(selectable)).one()
    if not all(isinstance(value, int) for value in (first, last)):
        return None  # an empty table, or a key that is not an integer
    if low is None:  # nothing in the period: only the undated rows, if any
        return [hinted(query.where(undated)).order_by(key)]
    if high - low + 1 > KEY_RANGE_MAX_SHARE * (last - first + 1):
        return None
    return [
        hinted(query.where(undated, key < low)).order_by(key),
        query.where(key.between(low, high)).order_by(key),
        hinted(query.where(undated, key > high)).order_by(key),
    ]


def _hinted(connection: sa.Connection, hint: str, selectable: sa.FromClause) -> Callable[[sa.Select], sa.Select]:
    dialect_name = connection.dialect.name

    def hinted(select: sa.Select) -> sa.Select:
        return select.with_hint(selectable, hint, dialect_name=dialect_name)

    return hinted


def buffer_pool_bytes(connection: sa.Connection) -> int:
    """InnoDB's buffer pool size (the server's setting: what an index lookup finds in memory)."""
    return int(connection.execute(sa.text("SELECT @@innodb_buffer_pool_size")).scalar_one())
