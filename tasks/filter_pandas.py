"""The filter language (tasks/filtering.py) evaluated on a typed pandas frame.

`filter_mask` gives one boolean per row, vectorised; `tasks.filter_sql.compile_filter` is
the same spec as a SQL WHERE clause, and the two agree row for row (property-tested in
tests/integration/test_filter_pushdown.py).
"""

from __future__ import annotations

import operator
from typing import Any

import pandas as pd
from pandas.api.types import is_bool_dtype, is_datetime64_any_dtype, is_numeric_dtype

from tasks.filtering import (
    _COMPARE,
    Condition,
    FilterConfigError,
    FilterSpec,
    Kind,
    NullFieldError,
    _check_timezone,
    _fold,
    _null_checked_fields,
    _operands,
    check_filter,
)


def _frame_kind(series: pd.Series) -> Kind:
    if is_datetime64_any_dtype(series.dtype):
        return "datetime"
    if is_numeric_dtype(series.dtype) and not is_bool_dtype(series.dtype):
        return "number"
    return "text"


def _frame_match(subject: pd.Series, op: str, values: list[Any]) -> pd.Series:
    """The operator on non-null values; what a null gives is decided by the caller."""
    if op in _COMPARE:
        result = _COMPARE[op](subject, values[0])
    elif op == "in":
        result = subject.isin(values)
    elif op == "not_in":
        result = ~subject.isin(values)
    elif op == "between":
        result = (subject >= values[0]) & (subject <= values[1])
    elif op == "contains":
        result = subject.str.contains(values[0], regex=False)
    elif op == "starts_with":
        result = subject.str.startswith(values[0])
    else:  # ends_with
        result = subject.str.endswith(values[0])
    return result.fillna(False).astype(bool)


def _frame_condition(
    series: pd.Series, condition: Condition, spec: FilterSpec, timezone: str
) -> pd.Series:
    null = series.isna().astype(bool)
    if condition.operator == "is_null":
        return null
    if condition.operator == "is_not_null":
        return ~null
    kind = _frame_kind(series)
    values = _operands(condition, kind, timezone)
    subject = series
    if kind == "datetime" and getattr(series.dt, "tz", None) is None:
        subject = series.dt.tz_localize("UTC")  # a naive column holds UTC by contract
    elif kind == "text":
        subject = series.astype("string")
        if not spec.case_sensitive:
            subject = subject.str.lower()
            values = [value.lower() for value in values]
    matched = _frame_match(subject, condition.operator, values)
    return matched | null if spec.null_handling == "include" else matched & ~null


def null_counts(df: pd.DataFrame, spec: FilterSpec) -> dict[str, int]:
    """Nulls per field that nullHandling governs (fields absent from df are skipped)."""
    counts = {
        name: int(df[name].isna().sum())
        for name in _null_checked_fields(spec)
        if name in df.columns
    }
    return {name: count for name, count in counts.items() if count}


def filter_mask(df: pd.DataFrame, spec: FilterSpec, timezone: str = "UTC") -> pd.Series:
    """Which rows of a typed frame the spec keeps: a bool Series aligned with df.index."""
    problems = check_filter(spec, df.columns)
    if problems:
        raise FilterConfigError("invalid filter: " + "; ".join(problems))
    _check_timezone(timezone)
    if spec.null_handling == "error" and (counts := null_counts(df, spec)):
        raise NullFieldError(counts)
    mask = _fold(
        spec.conditions,
        leaf=lambda c: _frame_condition(df[c.field], c, spec, timezone),
        both=operator.and_,
        either=operator.or_,
        everything=lambda: pd.Series(True, index=df.index, dtype=bool),
    )
    return mask.rename(None)
