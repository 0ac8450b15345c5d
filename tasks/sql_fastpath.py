"""Reading one compiled SELECT into a frame: fast per-dialect readers, and the fallback.

`read_query` picks the reader and types the result the same way whichever one ran;
`utc_session` makes the session's time zone UTC around it. The generic reader (SQLAlchemy
rows -> `DataFrame.from_records`) spends most of its time building a Python object per
value. The fast readers avoid that and hand back an Arrow table typed in one vectorised
pass. Measured on 1M rows x 12 columns (2 cores, medians of 3): client CPU 1.6 s vs 6.8 s
generic / 10.3 s `pd.read_sql` on PostgreSQL; 5.1 s vs 9.1 s / 9.6 s on MariaDB.

- PostgreSQL: `COPY (<select>) TO STDOUT (FORMAT csv)` written by psycopg2 into an OS pipe
  while pyarrow's streaming CSV reader parses the other end in the same process (the two
  overlap). The SELECT's parameters are bound by psycopg2's `mogrify` (the driver escapes
  every value; nothing is string-formatted here).
- MariaDB/MySQL: a server-side cursor (SSCursor) fetched a batch at a time, with the
  driver's per-value converters switched off: values arrive as bytes, each batch becomes
  Arrow columns at once, so memory holds one batch of Python objects, never the result's.

Every column is read as text first and cast by `tasks.arrow_typing.typed_columns`, so a
value the declared type cannot hold (an unsigned BIGINT above 2**63, say) keeps the column
as text for the staging casts to report, instead of failing the read.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from itertools import chain
from typing import Any, BinaryIO

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import sqlalchemy as sa

from tasks.arrow_typing import typed_columns, utc_timestamps
from tasks.sql_connectorx import ConnectorXFailed, connectorx_table

log = logging.getLogger(__name__)

COPY_BUFFER_BYTES = 1 << 20  # psycopg2's default 8 KiB copy buffer throttles COPY (psycopg2 #1592)
CSV_BLOCK_BYTES = 1 << 22
UTF8_NAMES = {"utf8", "utf8mb4", "utf8mb3", "unicode"}
# Rows per fetch on the MySQL cursor: small batches stay in the CPU cache while being turned
# into columns (measured: 10k rows ~1.4x faster than 100k); `chunk_rows` caps it further.
MYSQL_FETCH_ROWS = 10_000


class FastPathUnavailable(RuntimeError):
    """This connection cannot take the fast path (driver or encoding); use the generic one."""


# ---------------------------------------------------------------- compiling


def bound_statement(query: sa.Select, dialect: sa.Dialect) -> tuple[str, Any]:
    """The query as the driver's SQL text plus its parameters, in the driver's paramstyle.

    `render_postcompile` expands IN lists into one parameter each, so the text is final.
    Parameters go to the driver as they are: the filter binds only str, int, float and
    datetime values, which psycopg2 and mysqlclient adapt without SQLAlchemy's processors.
    """
    compiled = query.compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
    params = compiled.params
    if dialect.positional:
        return compiled.string, tuple(params[name] for name in compiled.positiontup or ())
    return compiled.string, dict(params)


# ---------------------------------------------------------------- PostgreSQL


def _copy_into(cursor: Any, statement: str, sink_fd: int, failures: list[BaseException]) -> None:
    """Producer thread: the server's CSV into the pipe; closing the pipe ends the reader."""
    try:
        with os.fdopen(sink_fd, "wb", buffering=COPY_BUFFER_BYTES) as sink:
            cursor.copy_expert(statement, sink, size=COPY_BUFFER_BYTES)
    except BaseException as exc:  # handed to the reading thread, which re-raises it
        failures.append(exc)


def _read_csv(source: BinaryIO, names: list[str]) -> pa.Table:
    reader = pacsv.open_csv(
        source,
        read_options=pacsv.ReadOptions(column_names=names, block_size=CSV_BLOCK_BYTES),
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        # Everything as text (typed afterwards). PostgreSQL's CSV writes NULL unquoted and
        # empty text as "", so only an unquoted empty field is null.
        convert_options=pacsv.ConvertOptions(
            column_types={name: pa.string() for name in names},
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
        ),
    )
    return reader.read_all()


def copy_postgres(
    dbapi_connection: Any, query: sa.Select, dialect: sa.Dialect, names: list[str]
) -> pa.Table:
    """Run `query` through `COPY ... TO STDOUT (FORMAT csv)`; its columns as text.

    The caller's transaction has set the session time zone to UTC, so timestamptz values
    arrive as '... +00'. A failure on either side stops the other: the reader's error
    cancels the COPY, the COPY's error (raised as a SQLAlchemy DBAPIError so the retry
    policy can judge it) ends the reader's input.
    """
    if str(getattr(dbapi_connection, "encoding", "")).lower() not in UTF8_NAMES:
        raise FastPathUnavailable(f"client encoding {dbapi_connection.encoding} is not UTF-8")
    sql, params = bound_statement(query, dialect)
    cursor = dbapi_connection.cursor()
    select = cursor.mogrify(sql, params).decode("utf-8")
    statement = f"COPY ({select}) TO STDOUT WITH (FORMAT csv)"
    read_fd, write_fd = os.pipe()
    failures: list[BaseException] = []
    producer = threading.Thread(
        target=_copy_into, args=(cursor, statement, write_fd, failures), daemon=True
    )
    producer.start()
    try:
        with os.fdopen(read_fd, "rb") as source:
            table = _read_csv(source, names) if _has_data(source) else _empty(names)
    except BaseException as exc:
        dbapi_connection.cancel()  # the server stops sending; the producer then fails too
        producer.join()
        if failures and not isinstance(failures[0], BrokenPipeError):
            raise _as_dbapi_error(failures[0], statement) from exc
        raise
    finally:
        producer.join()
        cursor.close()
    if failures:
        raise _as_dbapi_error(failures[0], statement)
    return table


def _has_data(source: BinaryIO) -> bool:
    """Whether the pipe holds at least one byte (pyarrow rejects an empty CSV outright)."""
    peek = getattr(source, "peek", None)
    return bool(peek(1)) if peek is not None else True


def _empty(names: list[str]) -> pa.Table:
    return pa.table({name: pa.array([], pa.string()) for name in names})


def _as_dbapi_error(exc: BaseException, statement: str) -> BaseException:
    """A driver error as SQLAlchemy's wrapper, which the retry policy knows how to judge."""
    module = type(exc).__module__.split(".")[0]
    if module in {"psycopg2", "MySQLdb"}:
        base = __import__(module).Error
        if isinstance(exc, base):
            return sa.exc.DBAPIError.instance(statement, None, exc, base)  # type: ignore[arg-type]
    return exc


# ---------------------------------------------------------------- MariaDB / MySQL


def stream_mysql(
    dbapi_connection: Any, query: sa.Select, dialect: sa.Dialect, names: list[str], chunk_rows: int
) -> pa.Table:
    """Run `query` on a server-side cursor, `chunk_rows` rows at a time; columns as bytes.

    mysqlclient converts each value with a Python function (int(), Decimal(), datetime);
    with its converter table emptied for the duration it returns the bytes the server sent,
    which Arrow then parses column by column.
    """
    import MySQLdb.cursors

    charset = dbapi_connection.character_set_name()
    if charset.lower() not in UTF8_NAMES:
        raise FastPathUnavailable(f"connection charset {charset} is not UTF-8")
    sql, params = bound_statement(query, dialect)
    saved = dbapi_connection.converter
    dbapi_connection.converter = {}
    cursor = dbapi_connection.cursor(MySQLdb.cursors.SSCursor)
    chunks: list[pa.RecordBatch] = []
    try:
        # Always a tuple, even empty: mysqlclient only turns '%%' back into '%' when given one.
        cursor.execute(sql, params)
        width = len(names)
        while rows := cursor.fetchmany(min(chunk_rows, MYSQL_FETCH_ROWS)):
            # One flat Arrow array of every value, then each column as a strided take:
            # transposing the row tuples in Python (zip) cost half of the read.
            flat = pa.array(list(chain.from_iterable(rows)), pa.binary())
            positions = np.arange(len(rows), dtype=np.int64) * width
            chunks.append(
                pa.record_batch([flat.take(positions + i) for i in range(width)], names=names)
            )
    except MySQLdb.Error as exc:
        raise _as_dbapi_error(exc, sql) from exc
    finally:
        dbapi_connection.converter = saved
        cursor.close()
    schema = pa.schema([(name, pa.binary()) for name in names])
    return pa.Table.from_batches(chunks, schema=schema)


# ---------------------------------------------------------------- choosing a reader


@contextmanager
def utc_session(connection: sa.Connection, family: str) -> Iterator[None]:
    """Session time zone UTC while extracting, so aware values and comparisons are UTC."""
    if family == "postgresql":
        connection.exec_driver_sql("SET LOCAL TIME ZONE 'UTC'")  # undone by the rollback on close
        yield
    elif family == "mysql":
        previous = connection.exec_driver_sql("SELECT @@session.time_zone").scalar_one()
        connection.exec_driver_sql("SET time_zone = '+00:00'")
        try:
            yield
        finally:
            try:  # the pooled session gets its zone back; a broken one is discarded anyway
                if not connection.invalidated:
                    connection.exec_driver_sql("SET time_zone = %s", (previous,))
            except sa.exc.DBAPIError as exc:
                log.warning("could not restore the session time zone: %s", exc.orig)
    else:
        yield


def read_frames(
    connection: sa.Connection, query: sa.Select, chunk_rows: int
) -> Iterator[pd.DataFrame]:
    """The generic reader: SQLAlchemy's streamed result (a server-side cursor where the
    driver has one), `chunk_rows` rows per frame."""
    result = connection.execution_options(stream_results=True, yield_per=chunk_rows).execute(query)
    keys = list(result.keys())
    while rows := result.fetchmany(chunk_rows):
        # Plain tuples: pandas builds a frame from them ~4x faster than from Row objects.
        yield pd.DataFrame.from_records([tuple(row) for row in rows], columns=keys)


def mixed_as_text(frame: pd.DataFrame) -> pd.DataFrame:
    """Columns whose values have different types (SQLite: 12.5 next to '12,50') as text.

    Arrow, and so the staging area, cannot store such a column; the staging casts
    read every value through its text anyway (12.5 -> '12.5' -> 12.5), so nothing is lost.
    """
    for name in frame.columns:
        if frame[name].dtype == object:
            try:
                pa.array(frame[name], from_pandas=True)
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                frame[name] = frame[name].astype("str")
    return frame


def utc_datetime_columns(frame: pd.DataFrame, fields: Sequence[str]) -> pd.DataFrame:
    """The generic reader's datetime fields typed as the fast readers type them."""
    for name in fields:
        try:
            values = pa.chunked_array([pa.array(frame[name], from_pandas=True)])
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            continue  # values Arrow cannot hold: left to the staging casts
        stamps = utc_timestamps(values)
        if stamps is not None:
            frame[name] = pd.Series(stamps.to_pandas(), index=frame.index)
    return frame


def streams_server_text(connection: sa.Connection) -> bool:
    """Whether `read_query` reads this connection with the MySQL streaming reader, which
    hands back every value as the text the server sent.

    Then a query need not cast for the driver's sake (DECIMAL to DOUBLE so that no Decimal
    objects are built, DATETIME to CHAR so that a zero date is not turned into None): the
    text is the same either way, and the casts cost MariaDB time on every row: at
    S = 100 k the history's 895 k rows read in 1.75 s instead of 2.61 s, the month's 177 k
    in 0.85 s instead of 1.03 s (medians of 4, identical frames).
    """
    dialect = connection.dialect
    if dialect.name not in ("mysql", "mariadb") or dialect.driver != "mysqldb":
        return False
    charset = connection.connection.dbapi_connection.character_set_name()
    return str(charset).lower() in UTF8_NAMES


def _fast_table(
    connection: sa.Connection, queries: Sequence[sa.Select], names: list[str], chunk_rows: int
) -> pa.Table | None:
    """The dialect's fast reader over `queries` (their rows one after the other, as received:
    typed together, so a column is typed the same whichever query a value came from), or
    None where this driver has none (or cannot use it)."""
    dialect = connection.dialect
    raw = connection.connection.dbapi_connection
    try:
        if dialect.name == "postgresql" and dialect.driver == "psycopg2":
            tables = [copy_postgres(raw, query, dialect, names) for query in queries]
        elif streams_server_text(connection):
            tables = [stream_mysql(raw, query, dialect, names, chunk_rows) for query in queries]
        else:
            if dialect.name in ("mysql", "mariadb") and dialect.driver == "mysqldb":
                log.info("generic SQL reader: connection charset is not UTF-8")
            return None
    except FastPathUnavailable as reason:
        log.info("generic SQL reader: %s", reason)
        return None
    except Exception:
        connection.invalidate()  # a COPY or a stream cut short leaves no reusable session
        raise
    return tables[0] if len(tables) == 1 else pa.concat_tables(tables)


def _connectorx_table(connection: sa.Connection, query: sa.Select, names: list[str]) -> pa.Table | None:
    sql, params = bound_statement(query, connection.dialect)
    try:
        return connectorx_table(connection, sql, params, names)
    except ConnectorXFailed as exc:  # the optional reader's own failure: the streaming one reads
        cause = exc.__cause__ or exc
        log.warning("ConnectorX failed (%s: %s); reading with mysqlclient", type(cause).__name__, cause)
        return None
    except Exception as exc:
        # Our session failed a check (killed, timed out, gone away). Falling back would read
        # on a connection SQLAlchemy has invalidated and fail with PendingRollbackError,
        # which hides the transient cause from the retry policy (it did, in CI).
        if not connection.invalidated:
            connection.invalidate()  # a raw cursor's failure: SQLAlchemy does not know
        raise _as_dbapi_error(exc, sql) from exc


def read_query(
    connection: sa.Connection,
    query: sa.Select | Sequence[sa.Select],
    kinds: Mapping[str, str],
    *,
    datetimes: Sequence[str],
    chunk_rows: int,
    fast_path: bool = True,
    connectorx: bool = False,
    arrow: bool = False,
) -> pd.DataFrame | pa.Table:
    """The rows of `query` (whose columns are `kinds`' keys, in order) as a frame; of
    several queries with the same columns, their rows one after the other.

    Both readers give the same frame: columns typed by `typed_columns` / the driver, the
    `datetimes` columns as datetime64[us, UTC] where every value converts. No rows gives
    object columns. `fast_path=False` forces the generic reader; `connectorx=True` reads
    MariaDB / MySQL through ConnectorX where that is safe (tasks/sql_connectorx.py).
    `arrow=True` returns the typed Arrow table itself where a fast reader read rows (its
    `to_pandas()` is the frame), for a caller that works on Arrow: the lifetime history
    skips a round trip through pandas that way (tasks/history.py).
    """
    names = list(kinds)
    queries = [query] if isinstance(query, sa.Select) else list(query)
    table = None
    if fast_path and connectorx and len(queries) == 1 and streams_server_text(connection):
        table = _connectorx_table(connection, queries[0], names)
    if table is None and fast_path:
        table = _fast_table(connection, queries, names, chunk_rows)
    if table is not None:
        frame = pd.DataFrame()
        if table.num_rows:
            typed = typed_columns(table, kinds, datetimes)
            del table  # the received bytes, no longer needed once typed
            if arrow:
                return typed
            # Each Arrow column is released as soon as it is converted: peak memory is one
            # copy of the rows plus a column, not two copies.
            frame = typed.to_pandas(self_destruct=True, split_blocks=True)
            del typed
    else:
        chunks = [chunk for each in queries for chunk in read_frames(connection, each, chunk_rows)]
        frame = pd.DataFrame()
        if chunks:
            frame = mixed_as_text(pd.concat(chunks, ignore_index=True))
            frame = utc_datetime_columns(frame, datetimes)
    if not len(frame):
        return pd.DataFrame({name: pd.Series(dtype="object") for name in names})
    return frame
