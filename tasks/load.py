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

PostgreSQL gets COPY FROM STDIN, fed by pyarrow's C++ CSV writer in batches (no Python per
row or per value; measured 22x faster than `to_sql` and 3x faster than a `csv.writer` loop,
shared/notes/performance-measured.md §3.4), with bounded memory: one batch of CSV at a time.
A frame that Arrow cannot type (an object column of mixed Python values) falls back to the
same COPY fed by pandas' own CSV writer. Other dialects get one executemany per table.
"""

from __future__ import annotations

import io
import logging
import queue
import re
import threading
from collections.abc import Iterable, Iterator

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import sqlalchemy as sa

from tasks.locking import lock_period
from tasks.period import Period
from tasks.sql_fastpath import utc_session

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


COPY_BATCH_ROWS = 50_000  # rows rendered to CSV at a time: ~10 MB for a wide table
COPY_READ_BYTES = 1 << 20  # psycopg2 reads the stream in 1 MiB blocks (its default is 8 KiB)
_CSV_OPTIONS = pacsv.WriteOptions(include_header=False, batch_size=COPY_BATCH_ROWS)
NULL_MARKER = "\\N"  # the pandas fallback's null: it cannot write an empty string quoted


def arrow_table(frame: pd.DataFrame) -> pa.Table | None:
    """The frame as an Arrow table ready for CSV, or None when Arrow cannot type a column.

    NaN/NA/NaT become nulls. Timestamps go to microseconds, PostgreSQL's precision, as UTC
    wall-clock time without a zone (`2025-07-01 10:00:00.000000`; a naive column is UTC by
    the data contract): Arrow writes a zoned timestamp ~18x slower, looking its zone up per
    value (0.94 of the 1.7 s of CSV for 10^6 report rows). `_copy_postgres` makes the
    transaction's time zone UTC, so timestamptz reads the text as the same instant.
    """
    try:
        table = pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return None
    fields = []
    for field in table.schema:
        kind = field.type
        if pa.types.is_timestamp(kind):
            kind = pa.timestamp("us")  # from any zone: the UTC instant's wall-clock time
        elif pa.types.is_dictionary(kind):
            kind = kind.value_type
        if not _csv_writable(kind):  # e.g. a struct from dict values: not one CSV field
            return None
        fields.append(pa.field(field.name, kind))
    return table.cast(pa.schema(fields))


def _csv_writable(kind: pa.DataType) -> bool:
    return any(
        check(kind)
        for check in (pa.types.is_string, pa.types.is_large_string, pa.types.is_integer,
                      pa.types.is_floating, pa.types.is_boolean, pa.types.is_timestamp,
                      pa.types.is_date, pa.types.is_decimal, pa.types.is_null)
    )


def csv_batches(table: pa.Table) -> Iterator[bytes]:
    """CSV text of the table, one batch of rows at a time (no header; null = empty field,
    an empty string is written quoted, so COPY's CSV format tells them apart)."""
    for batch in table.to_batches(max_chunksize=COPY_BATCH_ROWS):
        sink = io.BytesIO()
        pacsv.write_csv(batch, sink, _CSV_OPTIONS)
        yield sink.getvalue()


def pandas_csv_batches(frame: pd.DataFrame) -> Iterator[bytes]:
    """The fallback for frames Arrow cannot type: pandas' CSV writer, batch by batch, with
    NULL_MARKER for nulls."""
    out = frame.copy()
    for column in out.columns:
        if isinstance(out[column].dtype, pd.DatetimeTZDtype):
            out[column] = out[column].dt.strftime("%Y-%m-%d %H:%M:%S.%f%z")
    for start in range(0, len(out), COPY_BATCH_ROWS):
        batch = out.iloc[start:start + COPY_BATCH_ROWS]
        text = batch.to_csv(index=False, header=False, lineterminator="\n", na_rep=NULL_MARKER)
        yield text.encode("utf-8")


def prefetched(chunks: Iterator[bytes], depth: int = 2) -> Iterator[bytes]:
    """The chunks, rendered by a producer thread up to `depth` ahead of the consumer.

    pyarrow renders CSV without holding the GIL, so the next batch is rendered while the
    server parses the previous one: the client's and the server's work overlap instead of
    adding up. An error in the producer is re-raised here, in the consumer.
    """
    handoff: queue.Queue[tuple[bytes | None, BaseException | None]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def hand_over(item: tuple[bytes | None, BaseException | None]) -> bool:
        while not stop.is_set():  # a consumer that gave up never takes it: do not block
            try:
                handoff.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for chunk in chunks:
                if not hand_over((chunk, None)):
                    return
            hand_over((None, None))
        except BaseException as exc:  # handed to the consumer, which raises it
            hand_over((None, exc))

    producer = threading.Thread(target=produce, name="copy-csv-producer", daemon=True)
    producer.start()
    try:
        while True:
            chunk, error = handoff.get()
            if error is not None:
                raise error
            if chunk is None:
                return
            yield chunk
    finally:
        stop.set()  # the consumer stopped early (COPY failed): let the producer end
        producer.join(timeout=5)


class ChunkStream(io.RawIOBase):
    """A read-only file over an iterator of byte chunks: what COPY FROM STDIN reads from,
    so only one chunk of CSV is ever in memory."""

    def __init__(self, chunks: Iterable[bytes]):
        self._chunks = iter(chunks)
        self._current = memoryview(b"")
        self.error: BaseException | None = None  # what broke the chunks, if anything

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self._current:
            try:
                chunk = next(self._chunks, None)
            except BaseException as exc:
                self.error = exc
                raise
            if chunk is None:
                return 0
            self._current = memoryview(chunk)
        size = min(len(buffer), len(self._current))
        buffer[:size] = self._current[:size]
        self._current = self._current[size:]
        return size


def copy_sql(table: sa.Table, null: str | None = None) -> str:
    """COPY FROM STDIN in CSV format; nulls are empty unquoted fields unless `null` is given."""
    target = ".".join(
        f'"{part}"' for part in ([table.schema] if table.schema else []) + [table.name]
    )
    columns = ", ".join(f'"{c.name}"' for c in table.columns)
    options = "FORMAT csv" + (f", NULL '{null}'" if null is not None else "")
    return f"COPY {target} ({columns}) FROM STDIN WITH ({options})"


def _copy_postgres(connection: sa.Connection, table: sa.Table, frame: pd.DataFrame) -> None:
    arrow = arrow_table(frame)
    if arrow is None:
        log.info("COPY %s: a column Arrow cannot type; using the pandas CSV writer", table.name)
        chunks, sql = pandas_csv_batches(frame), copy_sql(table, null=NULL_MARKER)
    else:
        chunks, sql = prefetched(csv_batches(arrow)), copy_sql(table)
    stream = ChunkStream(chunks)
    cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    # The extract's UTC session (SET LOCAL, until this transaction ends): zone-less
    # timestamp text is UTC (see arrow_table); the session's own zone, whatever the server
    # or the role sets, is back afterwards.
    try:
        with utc_session(connection, "postgresql"):
            cursor.copy_expert(sql, io.BufferedReader(stream), size=COPY_READ_BYTES)
    except Exception as exc:
        # psycopg2 reports a failing read() as a cancelled query; the cause is ours, and
        # it is not transient, so it is what the caller (and its retry policy) must see.
        if stream.error is not None:
            raise stream.error from exc
        raise
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
        # Concurrency guard: a per-(schema, period) advisory lock is taken here, as the
        # first statement of the load transaction (see tasks/locking.py).
        lock_period(connection, period, schema=schema)
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
