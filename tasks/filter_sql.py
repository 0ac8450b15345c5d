"""The filter language compiled to SQL: a WHERE clause with bound parameters only.

The same spec as `tasks.filter_pandas.filter_mask`, row for row (property-tested against
SQLite, PostgreSQL and MariaDB), so extraction can push the period down into the source.
How values bind per dialect: SQLite and MariaDB timestamps as naive UTC text
'YYYY-MM-DD HH:MM:SS'; PostgreSQL as an aware value for timestamptz. LIKE patterns escape
their wildcards with '!' (a backslash would be a string escape in MySQL too).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pandas as pd
import sqlalchemy as sa

from tasks.filtering import (
    _COMPARE,
    DIALECTS,
    LIKE_ESCAPE,
    LIST_OPERATORS,
    TEXT_OPERATORS,
    Condition,
    FilterConfigError,
    FilterSpec,
    Kind,
    _check_timezone,
    _fold,
    _null_checked_fields,
    _operands,
    check_filter,
)
from tasks.settings import CANONICAL_DTYPES

_CANONICAL_KINDS: dict[str, Kind] = {
    field: ("datetime" if dtype == "datetime" else "text" if dtype == "string" else "number")
    for dtypes in CANONICAL_DTYPES.values()
    for field, dtype in dtypes.items()
}
_SQL_TYPES: dict[str, Callable[[], sa.types.TypeEngine[Any]]] = {
    "datetime": lambda: sa.DateTime(timezone=True),
    "string": sa.String,
    "float64": sa.Float,
    "Int64": sa.BigInteger,
}


def sql_columns(
    dtypes: Mapping[str, str], column_map: Mapping[str, str] | None = None
) -> dict[str, sa.ColumnClause[Any]]:
    """Typed column handles for compile_filter: canonical field -> source column, with the
    SQL type that matches the canonical dtype (e.g. CANONICAL_DTYPES["transactions"])."""
    return {
        field: sa.column((column_map or {}).get(field, field), _SQL_TYPES[dtype]())
        for field, dtype in dtypes.items()
    }


def _sql_kind(column: sa.ColumnElement[Any], field: str) -> Kind:
    """From the column's SQL type; an untyped column falls back to the canonical dtype."""
    sql_type = column.type
    if isinstance(sql_type, sa.DateTime | sa.Date):
        return "datetime"
    if isinstance(sql_type, sa.Boolean):
        raise FilterConfigError(f"field {field!r}: boolean columns cannot be filtered")
    if isinstance(sql_type, sa.Integer | sa.Numeric | sa.Float):  # Float is no Numeric in SA 2.1
        return "number"
    if isinstance(sql_type, sa.String):
        return "text"
    if isinstance(sql_type, sa.types.NullType) and field in _CANONICAL_KINDS:
        return _CANONICAL_KINDS[field]
    raise FilterConfigError(
        f"field {field!r}: its column has SQL type {sql_type!r}; give a DateTime, numeric or "
        "String type (see sql_columns)"
    )


def _naive_utc_text(stamp: pd.Timestamp) -> str:
    """'YYYY-MM-DD HH:MM:SS[.ffffff]': how SQLite and MariaDB DATETIME hold UTC."""
    text = stamp.tz_convert("UTC").strftime("%Y-%m-%d %H:%M:%S")
    return text + (f".{stamp.microsecond:06d}".rstrip("0") if stamp.microsecond else "")


def _bind_time(
    stamp: pd.Timestamp, column: sa.ColumnElement[Any], dialect: str
) -> sa.ColumnElement[Any]:
    if dialect == "postgresql":
        # timestamptz (or an untyped column, assumed timestamptz) takes an aware value; a plain
        # timestamp holding UTC takes a naive one, so no session time zone gets involved.
        aware = bool(getattr(column.type, "timezone", False)) or isinstance(
            column.type, sa.types.NullType
        )
        moment = stamp.to_pydatetime() if aware else stamp.tz_localize(None).to_pydatetime()
        return sa.literal(moment, sa.DateTime(timezone=aware))
    # A string, not a datetime: SQLAlchemy's SQLite DATETIME would add ".000000", which sorts
    # after the stored "YYYY-MM-DD HH:MM:SS" and breaks the boundary; MariaDB converts it.
    return sa.literal(_naive_utc_text(stamp), sa.String())


_LIKE_SHAPES = {"contains": "%{}%", "starts_with": "{}%", "ends_with": "%{}"}


def _like_pattern(op: str, text: str) -> str:
    """The LIKE pattern for `text` taken literally: %, _ and the escape character escaped."""
    escaped = (
        text.replace(LIKE_ESCAPE, LIKE_ESCAPE * 2)
        .replace("%", LIKE_ESCAPE + "%")
        .replace("_", LIKE_ESCAPE + "_")
    )
    return _LIKE_SHAPES[op].format(escaped)


def _sql_text_match(
    column: sa.ColumnElement[Any], op: str, text: str, dialect: str, fold: bool
) -> sa.ColumnElement[bool]:
    """contains / starts_with / ends_with; SQLite's LIKE ignores ASCII case, so when case
    matters SQLite gets instr/substr instead."""
    if text == "":
        return sa.true()  # every non-null text contains, starts and ends with ""
    value = sa.literal(text, sa.String())
    if dialect == "sqlite" and not fold:
        if op == "contains":
            return sa.func.instr(column, value) > 0
        start = 1 if op == "starts_with" else -len(text)
        return sa.func.substr(column, start, len(text)) == value
    subject = sa.func.lower(column) if fold else column
    pattern: sa.ColumnElement[Any] = sa.literal(_like_pattern(op, text), sa.String())
    return subject.like(sa.func.lower(pattern) if fold else pattern, escape=LIKE_ESCAPE)


def _sql_condition(
    column: sa.ColumnElement[Any],
    condition: Condition,
    spec: FilterSpec,
    dialect: str,
    timezone: str,
) -> sa.ColumnElement[bool]:
    op = condition.operator
    if op == "is_null":
        return column.is_(None)
    if op == "is_not_null":
        return column.is_not(None)
    kind = _sql_kind(column, condition.field)
    values = _operands(condition, kind, timezone)
    fold = kind == "text" and not spec.case_sensitive
    subject: sa.ColumnElement[Any] = sa.func.lower(column) if fold else column
    if op in TEXT_OPERATORS:
        matched = _sql_text_match(column, op, values[0], dialect, fold)
    else:
        if kind == "datetime":
            binds = [_bind_time(value, column, dialect) for value in values]
        else:
            binds = [sa.literal(value, sa.String() if kind == "text" else None) for value in values]
            binds = [sa.func.lower(bind) if fold else bind for bind in binds]
        if kind == "text" and dialect == "postgresql" and op not in LIST_OPERATORS:
            subject = sa.collate(subject, "C")  # code-point order, as in pandas and the others
        matched = _sql_compare(subject, op, binds)
    if spec.null_handling == "include":
        return sa.or_(column.is_(None), matched)
    return sa.and_(column.is_not(None), matched)


def _sql_compare(
    subject: sa.ColumnElement[Any], op: str, binds: list[sa.ColumnElement[Any]]
) -> sa.ColumnElement[bool]:
    if op in _COMPARE:
        return _COMPARE[op](subject, binds[0])  # type: ignore[no-any-return]
    if op == "between":
        return subject.between(binds[0], binds[1])
    if not binds:  # an empty list: nothing is in it, everything is not
        return sa.false() if op == "in" else sa.true()
    return subject.in_(binds) if op == "in" else subject.not_in(binds)


def compile_filter(
    spec: FilterSpec,
    columns: Mapping[str, sa.ColumnElement[Any]],
    dialect: str,
    timezone: str = "UTC",
) -> sa.ColumnElement[bool]:
    """The spec as a WHERE clause for `dialect` (postgresql, mysql/mariadb, sqlite).

    Values are bound parameters, never SQL text. Storage assumed: PostgreSQL timestamptz
    (or timestamp holding UTC), MariaDB DATETIME holding naive UTC, SQLite TEXT
    'YYYY-MM-DD HH:MM:SS' in UTC; MariaDB text columns need a case-sensitive, no-pad
    collation (utf8mb4_nopad_bin) for caseSensitive true and trailing spaces to mean what
    they do in pandas. With nullHandling 'error' the clause also lets through every row
    with a null in a governed field, so the filter step sees them and raises as pandas would.
    """
    if dialect not in DIALECTS:
        raise FilterConfigError(f"dialect {dialect!r} is not one of {sorted(DIALECTS)}")
    problems = check_filter(spec, columns.keys())
    if problems:
        raise FilterConfigError("invalid filter: " + "; ".join(problems))
    _check_timezone(timezone)
    family = DIALECTS[dialect]
    clause = _fold(
        spec.conditions,
        leaf=lambda c: _sql_condition(columns[c.field], c, spec, family, timezone),
        both=lambda a, b: sa.and_(a, b),
        either=lambda a, b: sa.or_(a, b),
        everything=sa.true,
    )
    if spec.null_handling == "error":
        nullable = [columns[name].is_(None) for name in _null_checked_fields(spec)]
        clause = sa.or_(clause, *nullable) if nullable else clause
    return clause
