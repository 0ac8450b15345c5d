"""Typing the columns a fast SQL reader hands back as text, in one vectorised pass.

Pure Arrow, no I/O: tasks/sql_fastpath reads every column as text (or bytes) and
`typed_columns` casts each to its source kind, so a value the declared type cannot hold
(an unsigned BIGINT above 2**63, a MySQL zero date) keeps its column as text for the
staging casts to report, instead of failing the read. `utc_timestamps` is also how the
generic reader's datetime fields get the same type.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pyarrow as pa
import pyarrow.compute as pc

# The instants a datetime64[ns] column can hold; outside them the staging casts could not
# store the value, so the column stays text and the bad value is reported there.
NS_LIMIT_US = (2**63 - 1) // 1000
ARROW_TYPES: dict[str, pa.DataType] = {"int": pa.int64(), "float": pa.float64()}


def _cast_or_none(values: pa.ChunkedArray, target: pa.DataType) -> pa.ChunkedArray | None:
    try:
        return pc.cast(values, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return None


def utc_timestamps(values: pa.ChunkedArray) -> pa.ChunkedArray | None:
    """The values as timestamp[us, UTC], or None when not every value converts.

    Aware values are converted to UTC; naive ones (MariaDB DATETIME, SQLite text, a PostgreSQL
    `timestamp`) are taken as UTC, the pipeline's storage contract. Text must be ISO 8601
    throughout, with or without a zone offset. One unparseable value (a MySQL zero date, a
    garbled '2025-07-3x') keeps the column as it was, so the staging casts null that value
    and keep its original text in `<column>__invalid`.
    """
    kind = values.type
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        stamps = _cast_or_none(values, pa.timestamp("us", tz=getattr(kind, "tz", None)))
    elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
        stamps = _cast_or_none(values, pa.timestamp("us", tz="UTC"))  # offsets required
        if stamps is None:
            stamps = _cast_or_none(values, pa.timestamp("us"))  # no offsets at all
    else:
        return None
    if stamps is None:
        return None
    stamps = _cast_or_none(stamps, pa.timestamp("us", tz="UTC"))  # naive: taken as UTC
    if stamps is None:
        return None
    bounds = pc.min_max(pc.cast(stamps, pa.int64()))
    low, high = bounds["min"].as_py(), bounds["max"].as_py()
    if low is not None and (low < -NS_LIMIT_US or high > NS_LIMIT_US):
        return None
    return stamps


def typed_columns(table: pa.Table, kinds: Mapping[str, str], datetimes: Sequence[str]) -> pa.Table:
    """Text columns cast to their source kind; canonical datetime fields to UTC instants.

    `kinds` maps a column to "int", "float" or anything else (text); a cast that fails for
    any value leaves that column as text.
    """
    columns = []
    for name in table.column_names:
        values = table[name]
        if pa.types.is_binary(values.type):
            values = _first_of(_cast_or_none(values, pa.string()), values)
        target = ARROW_TYPES.get(kinds.get(name, "text"))
        if target is not None:
            values = _first_of(_cast_or_none(values, target), values)
        if name in datetimes:
            values = _first_of(utc_timestamps(values), values)
        columns.append(values)
    return pa.table(columns, names=table.column_names)


def _first_of(converted: pa.ChunkedArray | None, original: pa.ChunkedArray) -> pa.ChunkedArray:
    return original if converted is None else converted  # not `or`: arrays have a length
