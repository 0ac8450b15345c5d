"""SQL extraction: one code path for PostgreSQL, MySQL/MariaDB and SQLite.

What it promises (SPEC §3): only the needed columns are read; the period filter is pushed
into the WHERE clause with bound parameters (identifiers come from validated config, values
are never formatted into SQL); a table or a user query is mapped onto canonical names; the
lifetime history the metrics need is read by tasks/extract_history.py on the same relation
and readers.

Types are settled on the way in, from the column types the database reports for the source
(a zero-row probe): DECIMAL/NUMERIC money arrives as double (no per-row Decimal objects;
the staging casts make it float64 anyway and the metrics sum integer cents), the session
time zone is UTC so timestamptz and TIMESTAMP values arrive as UTC, naive DATETIME is taken
as UTC, and MySQL date columns arrive as text so that a zero date ('0000-00-00 00:00:00')
reaches the staging casts as its original text. Where the driver would convert, the query
casts (to DOUBLE, to CHAR); MySQL's streaming reader receives the server's text of every
value and parses it itself, so there the columns are read uncast (`read_expression`).
Canonical datetime fields come out as datetime64[us, UTC] when every value converts, else
as the source's text.

The rows travel by the fastest reader the connection allows (tasks/sql_fastpath.py:
PostgreSQL COPY, MySQL streaming cursor); every other database, and the fallback, is
SQLAlchemy's streamed result read `chunk_rows` at a time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql

from tasks.config import SqlSource
from tasks.filter_sql import compile_filter
from tasks.filtering import DIALECTS, FilterSpec, referenced_fields
from tasks.mysql_index import period_reads
from tasks.settings import CANONICAL_DTYPES, FIELDS, REQUIRED_SOURCE_FIELDS
from tasks.sql_fastpath import read_query, streams_server_text, utc_session

# Source column kinds, from the type code in the probe's cursor.description.
# fmt: off
PG_KINDS = {
    20: "int", 21: "int", 23: "int", 26: "int", 700: "float", 701: "float", 1700: "decimal",
    790: "money", 1184: "datetime", 1114: "datetime", 1082: "datetime",
    25: "text", 1043: "text", 1042: "text", 19: "text", 18: "text",
}  # any other type (bool, uuid, json, interval...) is read as its text: "other"
MYSQL_KINDS = {
    0: "decimal", 246: "decimal", 1: "int", 2: "int", 3: "int", 8: "int", 9: "int", 13: "int",
    4: "float", 5: "float", 7: "datetime", 10: "datetime", 12: "datetime", 14: "datetime",
}  # everything else arrives as text already
# fmt: on
# Errors that mean "the configured table or column is not there", per driver.
PG_SCHEMA_CODES = {"42P01", "42703", "3F000", "42704"}
MYSQL_SCHEMA_CODES = {1146, 1054, 1049}
SQLITE_SCHEMA_PREFIXES = ("no such table", "no such column")
# MySQL's documented DATETIME range starts here; anything below is a zero or invalid date.
MYSQL_FIRST_VALID_TIME = "1000-01-01 00:00:00"


class SourceSchemaError(ValueError):
    """The source lacks a table or a column the configuration maps; names which."""


@dataclass(frozen=True)
class SourceRelation:
    """The selectable a source reads from, canonical field -> source column, and the kind
    ("int", "float", "decimal", "datetime", "text", ...; "any" on SQLite) of each column."""

    selectable: sa.FromClause
    columns: dict[str, str]
    kinds: dict[str, str] = field(default_factory=dict)

    def column(self, field: str) -> sa.ColumnElement:
        return self.selectable.c[self.columns[field]]


def dialect_family(dialect: sa.Dialect) -> str:
    """postgresql, mysql (MariaDB included) or sqlite: what compile_filter calls them."""
    return DIALECTS.get(dialect.name, dialect.name)


def _quoted_table(name: str) -> sa.TableClause:
    schema, _, table = name.rpartition(".")
    return sa.table(table, schema=schema or None)


def _is_schema_error(exc: sa.exc.DBAPIError) -> bool:
    orig = exc.orig
    if getattr(orig, "pgcode", None) in PG_SCHEMA_CODES:
        return True
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], int) and args[0] in MYSQL_SCHEMA_CODES:
        return True
    return str(orig).lower().startswith(SQLITE_SCHEMA_PREFIXES)


def source_columns(connection: sa.Connection, source: SqlSource) -> dict[str, Any]:
    """Column name -> driver type code, for the configured table or query (zero-row probe)."""
    if source.table is not None:
        schema, _, table = source.table.rpartition(".")
        if not sa.inspect(connection).has_table(table, schema=schema or None):
            raise SourceSchemaError(f"table {source.table!r} does not exist in the source database")
        origin: sa.FromClause | sa.TextClause = _quoted_table(source.table)
    else:
        origin = sa.text(f"({source.query}) AS probe")
    try:
        result = connection.execute(sa.select(sa.text("*")).select_from(origin).where(sa.false()))
    except sa.exc.DBAPIError as exc:
        if not _is_schema_error(exc):
            raise
        what = f"table {source.table!r}" if source.table else "the configured query"
        raise SourceSchemaError(f"{what} cannot be read: {str(exc.orig).strip()}") from None
    description = result.cursor.description if result.cursor is not None else []
    result.close()
    return {column[0]: column[1] for column in description}


def column_kind(family: str, type_code: Any) -> str:
    if family == "postgresql":
        return PG_KINDS.get(type_code, "other")
    if family == "mysql":
        return MYSQL_KINDS.get(type_code, "text")
    return "any"  # SQLite: each value has its own type


def relation_for(connection: sa.Connection, name: str, source: SqlSource) -> SourceRelation:
    """Map canonical fields onto the source's columns; fail clearly on a missing one."""
    types = source_columns(connection, source)
    available = list(types)
    lookup = {column.lower(): column for column in available}
    columns: dict[str, str] = {}
    problems: list[str] = []
    for canonical in FIELDS[name]:
        wanted = source.column_map.get(canonical, canonical)
        actual = lookup.get(wanted.lower())
        if actual is not None:
            columns[canonical] = actual
        elif canonical in source.column_map or canonical in REQUIRED_SOURCE_FIELDS[name]:
            problems.append(
                f"sources.{name}: column {wanted!r} (for field {canonical!r}) does not exist; "
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
    family = dialect_family(connection.dialect)
    kinds = {f: column_kind(family, types[c]) for f, c in columns.items()}
    return SourceRelation(selectable, columns, kinds)


def read_expression(
    column: sa.ColumnElement, kind: str, family: str, *, server_text: bool = False
) -> tuple[sa.ColumnElement, str]:
    """What to SELECT for one column, and the kind of value that arrives.

    `server_text`: the reader hands back the server's text of every value (MySQL's
    streaming reader, tasks/sql_fastpath.streams_server_text). The casts below are for the
    drivers' converters, so there the column is read as it is: a DECIMAL's text parses to
    the same double as CAST(... AS DOUBLE), and a DATETIME's text is CAST(... AS CHAR)'s.
    """
    if family == "postgresql":
        if kind == "decimal":
            return sa.cast(column, postgresql.DOUBLE_PRECISION()), "float"
        if kind == "money":  # money's text is locale-formatted ('$1,234.50'): go via numeric
            return sa.cast(sa.cast(column, sa.Numeric()), postgresql.DOUBLE_PRECISION()), "float"
        if kind == "other":
            return sa.cast(column, sa.Text()), "text"
    if family == "mysql":
        if kind == "decimal":
            return (column if server_text else sa.cast(column, mysql.DOUBLE(asdecimal=False))), "float"
        if kind == "datetime":  # text keeps '0000-00-00 00:00:00'; the driver would give None
            return (column if server_text else sa.cast(column, sa.CHAR())), "text"
    return column, kind


def extraction_query(
    relation: SourceRelation,
    where: sa.ColumnElement[bool] | None,
    family: str,
    *,
    server_text: bool = False,
) -> tuple[sa.Select, dict[str, str]]:
    """SELECT of the mapped fields (cast as `read_expression` says) and their arriving kinds."""
    expressions: list[sa.ColumnElement] = []
    kinds: dict[str, str] = {}
    for canonical in relation.columns:
        expression, kinds[canonical] = read_expression(
            relation.column(canonical), relation.kinds.get(canonical, "any"), family,
            server_text=server_text,
        )
        expressions.append(expression.label(canonical))
    query = sa.select(*expressions).select_from(relation.selectable)
    return (query.where(where) if where is not None else query), kinds


def unplaceable_time(column: sa.ColumnElement, family: str) -> sa.ColumnElement[bool] | None:
    """Rows whose event time exists but is no instant: MySQL's zero and invalid dates."""
    if family == "mysql":
        return column < sa.literal(MYSQL_FIRST_VALID_TIME, sa.String())
    return None


@dataclass(frozen=True)
class PeriodPredicate:
    """What a period's read fetches: `dated` (the period filter OR any extra window) OR
    `undated` (the event time is null or no instant)."""

    dated: sa.ColumnElement[bool]
    undated: sa.ColumnElement[bool]
    dated_fields: frozenset[str]  # the canonical fields `dated` reads

    @property
    def where(self) -> sa.ColumnElement[bool]:
        return sa.or_(self.dated, self.undated)


def pushdown_predicate(
    relation: SourceRelation,
    *,
    dialect: str,
    timezone: str,
    period_spec: FilterSpec | None,
    extra_windows: list[FilterSpec],
    event_time: str | None,
) -> PeriodPredicate | None:
    """(period filter) OR (any extra window) OR (event time is null or no instant).

    Rows without a usable event time are fetched on purpose: they belong to no period, and
    the filter stage quarantines them under `event_time_missing` instead of losing them.
    """
    if period_spec is None or event_time is None:
        return None
    columns = {name: relation.column(name) for name in relation.columns}
    dated = [compile_filter(period_spec, columns, dialect, timezone)]
    dated += [compile_filter(spec, columns, dialect, timezone) for spec in extra_windows]
    undated = [relation.column(event_time).is_(None)]
    invalid = unplaceable_time(relation.column(event_time), DIALECTS.get(dialect, dialect))
    if invalid is not None:
        undated.append(invalid)
    fields = {field for spec in (period_spec, *extra_windows) for field in referenced_fields(spec)}
    return PeriodPredicate(sa.or_(*dated), sa.or_(*undated), frozenset(fields))


def extract_table(
    engine: sa.Engine,
    name: str,
    source: SqlSource,
    *,
    timezone: str = "UTC",
    period_spec: FilterSpec | None = None,
    extra_windows: list[FilterSpec] | None = None,
    event_time: str | None = None,
    fast_path: bool = True,
) -> pd.DataFrame:
    """The source's rows under canonical names, filtered in SQL where a filter is given.

    `fast_path=False` forces the generic reader (tests compare the two).
    """
    with engine.connect() as connection:
        family = dialect_family(connection.dialect)
        if family == "mysql":
            # A period may be read by several queries (tasks/mysql_index.period_reads), the
            # later ones bounded by what the first found: one snapshot for all of them,
            # whatever the server's default isolation (READ COMMITTED takes one per query).
            connection.execution_options(isolation_level="REPEATABLE READ")
        with utc_session(connection, family):
            relation = relation_for(connection, name, source)
            predicate = pushdown_predicate(
                relation,
                dialect=connection.dialect.name,
                timezone=timezone,
                period_spec=period_spec,
                extra_windows=extra_windows or [],
                event_time=event_time,
            )
            server_text = fast_path and streams_server_text(connection)
            where = predicate.where if predicate is not None else None
            query, kinds = extraction_query(relation, where, family, server_text=server_text)
            queries = [query]
            if family == "mysql" and predicate is not None and event_time and source.table:
                queries = period_reads(
                    connection, query, relation.selectable, source.table,
                    relation.columns[event_time],
                    dated=predicate.dated, undated=predicate.undated,
                    dated_on_column_only=predicate.dated_fields == {event_time},
                )
            datetimes = [f for f in kinds if CANONICAL_DTYPES[name].get(f) == "datetime"]
            return read_query(
                connection,
                queries,
                kinds,
                datetimes=datetimes,
                chunk_rows=source.chunk_rows,
                fast_path=fast_path,
            )
