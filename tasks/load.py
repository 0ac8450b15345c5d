"""The analytics database: one table per (kind, period), swapped in atomically.

Layout (SPEC §8.1, issue 5):
- `customer_performance_july2025`, `regional_summary_july2025`, `performance_trends_july2025`,
  `data_quality_issues_july2025`: one real table per kind and period, typed columns
  (NUMERIC money, timestamptz), with the seed's names.
- `customer_performance`, `regional_summary`, ...: a view per kind, the UNION ALL of its
  period tables, so month-on-month questions are one query (`WHERE period >= '2025-01'`).
- `data_quality_history`: each run's summary rows, appended (replaced per run id).

A period is loaded into `<name>__loading`, then, in the same transaction, the old table is
dropped and the new one renamed into place: readers see the old period or the new one,
never half of either, and a load that fails leaves the previous version untouched.
PostgreSQL gets COPY FROM STDIN; other dialects a single executemany per table.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from collections.abc import Iterable

import pandas as pd
import sqlalchemy as sa

from tasks.period import Period

log = logging.getLogger(__name__)

KINDS = ("customer_performance", "regional_summary", "performance_trends", "data_quality_issues")
MONEY_COLUMNS = {
    "total_revenue", "avg_order_value", "revenue_prev_period", "clv", "revenue",
}
HISTORY_TABLE = "data_quality_history"
_MONTHS = (
    "january", "february", "march", "april", "may", "june", "july", "august", "september",
    "october", "november", "december",
)
_PERIOD_TABLE_RE = re.compile(
    r"^(?P<kind>[a-z_]+)_(?P<month>" + "|".join(_MONTHS) + r")(?P<year>\d{4})$"
)


def column_type(name: str, dtype: object) -> sa.types.TypeEngine:
    if name in MONEY_COLUMNS:
        return sa.Numeric(16, 2)
    if isinstance(dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_any_dtype(dtype):
        return sa.DateTime(timezone=True)
    if pd.api.types.is_bool_dtype(dtype):
        return sa.Boolean()
    if pd.api.types.is_integer_dtype(dtype):
        return sa.BigInteger()
    if pd.api.types.is_float_dtype(dtype):
        return sa.Float(precision=53)
    return sa.Text()


def table_for(name: str, frame: pd.DataFrame, schema: str | None) -> sa.Table:
    columns = [sa.Column(c, column_type(c, frame[c].dtype)) for c in frame.columns]
    return sa.Table(name, sa.MetaData(schema=schema), *columns)


def _python_rows(frame: pd.DataFrame) -> list[dict[str, object]]:
    """Records with None for every kind of null (NaN, NA, NaT) and plain Python values."""
    clean = frame.astype(object).where(frame.notna(), None)
    return clean.to_dict("records")


def _copy_postgres(connection: sa.Connection, table: sa.Table, frame: pd.DataFrame) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    out = frame.copy()
    for column in out.columns:
        if isinstance(out[column].dtype, pd.DatetimeTZDtype):
            out[column] = out[column].dt.strftime("%Y-%m-%d %H:%M:%S%z")
    out = out.astype(object).where(out.notna(), None)
    for row in out.itertuples(index=False, name=None):
        writer.writerow(["\\N" if v is None else v for v in row])
    buffer.seek(0)
    target = ".".join(
        f'"{part}"' for part in ([table.schema] if table.schema else []) + [table.name]
    )
    columns = ", ".join(f'"{c.name}"' for c in table.columns)
    cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.copy_expert(
            f"COPY {target} ({columns}) FROM STDIN WITH (FORMAT csv, NULL '\\N')", buffer
        )
    finally:
        cursor.close()


def bulk_insert(connection: sa.Connection, table: sa.Table, frame: pd.DataFrame) -> None:
    if frame.empty:
        return
    if connection.dialect.name == "postgresql":
        _copy_postgres(connection, table, frame)
    else:
        connection.execute(table.insert(), _python_rows(frame))


def period_tables(inspector: sa.Inspector, schema: str | None) -> dict[str, list[tuple[Period, str]]]:
    found: dict[str, list[tuple[Period, str]]] = {}
    for name in inspector.get_table_names(schema=schema):
        match = _PERIOD_TABLE_RE.match(name)
        if match and match["kind"] in KINDS:
            period = Period(int(match["year"]), _MONTHS.index(match["month"]) + 1)
            found.setdefault(match["kind"], []).append((period, name))
    return found


def _qualified(name: str, schema: str | None) -> str:
    return f'"{schema}"."{name}"' if schema else f'"{name}"'


def _drop_views(connection: sa.Connection, schema: str | None) -> None:
    existing = set(sa.inspect(connection).get_view_names(schema=schema))
    for kind in KINDS:
        if kind in existing:
            connection.execute(sa.text(f"DROP VIEW {_qualified(kind, schema)}"))


def _create_views(connection: sa.Connection, schema: str | None) -> None:
    tables = period_tables(sa.inspect(connection), schema)
    for kind, entries in tables.items():
        selects = " UNION ALL ".join(
            f"SELECT * FROM {_qualified(name, schema)}" for _, name in sorted(entries)
        )
        connection.execute(sa.text(f"CREATE VIEW {_qualified(kind, schema)} AS {selects}"))


def load_period(
    engine: sa.Engine,
    frames: dict[str, pd.DataFrame],
    period: Period,
    *,
    schema: str | None = None,
    retention_months: int = 24,
) -> dict[str, object]:
    """Replace one period's tables in one transaction; drop periods past the retention."""
    unknown = set(frames) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown analytics tables: {sorted(unknown)}")
    loaded: dict[str, int] = {}
    dropped: list[str] = []
    with engine.begin() as connection:
        if schema and connection.dialect.name == "postgresql":
            connection.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        _drop_views(connection, schema)  # views pin their tables; rebuilt below
        for kind, frame in frames.items():
            name = f"{kind}_{period.label}"
            staging = table_for(f"{name}__loading", frame, schema)
            staging.drop(connection, checkfirst=True)
            staging.create(connection)
            bulk_insert(connection, staging, frame)
            connection.execute(sa.text(f"DROP TABLE IF EXISTS {_qualified(name, schema)}"))
            connection.execute(
                sa.text(f'ALTER TABLE {_qualified(staging.name, schema)} RENAME TO "{name}"')
            )
            loaded[name] = len(frame)
        cutoff = period.minus_months(retention_months - 1)
        for entries in period_tables(sa.inspect(connection), schema).values():
            for table_period, name in entries:
                if (table_period.year, table_period.month) < (cutoff.year, cutoff.month):
                    connection.execute(sa.text(f"DROP TABLE {_qualified(name, schema)}"))
                    dropped.append(name)
        _create_views(connection, schema)
    for name in dropped:
        log.info("retention: dropped %s (older than %d months)", name, retention_months)
    return {"loaded": loaded, "dropped": dropped}


def append_quality_history(
    engine: sa.Engine, rows: pd.DataFrame, *, schema: str | None = None
) -> int:
    """Append a run's summary rows; a rerun of the same run id replaces its own rows."""
    table = table_for(HISTORY_TABLE, rows, schema)
    with engine.begin() as connection:
        table.create(connection, checkfirst=True)
        if not rows.empty:
            runs = rows["run_id"].unique().tolist()
            connection.execute(table.delete().where(table.c.run_id.in_(runs)))
            bulk_insert(connection, table, rows)
    return len(rows)


def table_names(engine: sa.Engine, schema: str | None = None) -> Iterable[str]:
    return sa.inspect(engine).get_table_names(schema=schema)
