"""Staging casts (dbt's `stg_` layer): raw extracted values -> the canonical dtypes.

Sources disagree on types: SQLite gives text, MySQL gives naive datetimes and Decimals,
an API gives strings. Every value is cast here, once, vectorised. A value that was present
but cannot be parsed is never silently dropped: the typed column gets a null and the
original text is kept in `<column>__invalid`, which validation turns into a reported rule.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from tasks.settings import CANONICAL_DTYPES, FIELDS, QUARANTINE_COLUMNS, ROW_ID_FIELD

INVALID_SUFFIX = "__invalid"
ROW = "_row"
# Canonical text columns whose values are codes: case does not carry meaning.
LOWER_CASE = {"status", "interaction_type", "resolution_status"}
UPPER_CASE = {"currency"}
ID_COLUMNS = {"customer_id", "transaction_id", "interaction_id", "agent_id"}


def _as_text(values: pd.Series) -> pd.Series:
    """Any values as nullable strings, stripped; empty text counts as missing."""
    if pd.api.types.is_float_dtype(values.dtype):
        # 17850.0 is the id 17850 that went through a float column; keep it readable.
        integral = values.notna() & np.isfinite(values) & (values == np.floor(values))
        text = values.astype("string")
        text = text.where(~integral, values[integral].astype("int64").astype("string"))
    else:
        text = values.astype("string")
    text = text.str.strip()
    return text.mask(text == "")


def _id_text(values: pd.Series) -> pd.Series:
    text = _as_text(values)
    # "17850.0" as text from a CSV-ish source: the same id as 17850. The regex rewrite
    # costs 0.23 s per million ids; a literal search for ".0" decides first whether any
    # id could match (none do from a typed source), at a sixth of that.
    if not pc.any(pc.match_substring(pa.array(text, pa.large_string()), ".0")).as_py():
        return text
    return text.str.replace(r"^(-?\d+)\.0+$", r"\1", regex=True)


def _to_datetime(values: pd.Series) -> pd.Series:
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        return _in_ns_range(values.dt.tz_convert("UTC")).astype("datetime64[ns, UTC]")
    if pd.api.types.is_datetime64_dtype(values.dtype):
        return _in_ns_range(values.dt.tz_localize("UTC")).astype("datetime64[ns, UTC]")
    text = _as_text(values.astype("object").where(values.notna(), None))
    parsed = pd.to_datetime(text, errors="coerce", utc=True, format="ISO8601")
    # Zero dates (MySQL '0000-00-00') parse to NaT; years outside what nanosecond
    # timestamps hold (before 1677, after 2262: '0001-01-01', '9999-12-31') become NaT
    # too. Either way the text is kept in `<column>__invalid` and reported.
    return _in_ns_range(parsed).astype("datetime64[ns, UTC]")


def _in_ns_range(values: pd.Series) -> pd.Series:
    low = pd.Timestamp.min.tz_localize("UTC")
    high = pd.Timestamp.max.tz_localize("UTC")
    # The usual column (every value a date of this era) passes two reductions instead of
    # two element-wise comparisons and a `where` copy: 0.05 s per million timestamps.
    lowest, highest = values.min(), values.max()
    if pd.isna(lowest) or (lowest >= low and highest <= high):
        return values
    return values.where(values.isna() | ((values >= low) & (values <= high)))


def _to_float(values: pd.Series) -> pd.Series:
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values):
        numbers = values.astype("float64")
    else:
        numbers = pd.to_numeric(_as_text(values.astype("object")), errors="coerce").astype("float64")
    # 1e309 parses to inf: not a usable amount.
    return numbers.where(np.isfinite(numbers))


def _to_int(values: pd.Series) -> pd.Series:
    numbers = _to_float(values)
    integral = numbers.notna() & (numbers == np.floor(numbers)) & (numbers.abs() < 2**53)
    return numbers.where(integral).astype("Int64")


def _invalid_text(values: pd.Series, typed: pd.Series) -> pd.Series:
    """The original text of values that were present but did not parse; null elsewhere.

    Only the failed rows are turned into text: stringifying a whole typed column (a
    million timestamps from a COPY) costs seconds and says nothing new.
    """
    invalid = pd.Series(pd.NA, index=values.index, dtype="string")
    candidates = values.notna() & typed.isna()
    if candidates.any():
        text = _as_text(values[candidates].astype("object"))
        invalid[candidates] = text  # blank text is "missing", not "invalid": stays null
    return invalid


def normalize(source: str, raw: pd.DataFrame) -> pd.DataFrame:
    """Cast a raw extract to the canonical dtypes; keep unparseable originals beside them."""
    dtypes = CANONICAL_DTYPES[source]
    out: dict[str, pd.Series] = {}
    index = pd.RangeIndex(len(raw))
    raw = raw.reset_index(drop=True)
    for column in FIELDS[source]:
        values = raw[column] if column in raw.columns else pd.Series([None] * len(raw), index=index)
        kind = dtypes[column]
        if kind == "string":
            typed = _id_text(values) if column in ID_COLUMNS else _as_text(values)
            if column in LOWER_CASE:
                typed = typed.str.lower()
            elif column in UPPER_CASE:
                typed = typed.str.upper()
            out[column] = typed
            continue
        if kind == "datetime":
            typed = _to_datetime(values)
        elif kind == "Int64":
            typed = _to_int(values)
        else:
            typed = _to_float(values)
        out[column] = typed
        out[column + INVALID_SUFFIX] = _invalid_text(values, typed)
    frame = pd.DataFrame(out, index=index)
    frame[ROW] = np.arange(len(frame), dtype="int64")
    return frame


def records_as_json(frame: pd.DataFrame) -> pd.Series:
    """Each row's values as JSON text: what a quarantined row looked like, kept whole."""
    visible = [c for c in frame.columns if c != ROW]
    text = frame[visible].to_json(orient="records", date_format="iso", lines=True)
    lines = text.splitlines() if len(frame) else []
    return pd.Series(lines, index=frame.index, dtype="string")


def quarantine_rows(
    source: str, rows: pd.DataFrame, *, rule: str, column: str | None, severity: str
) -> pd.DataFrame:
    """Rows set aside by one rule, in the quarantine's shape (see tasks/settings.py)."""
    id_field = ROW_ID_FIELD[source]
    return pd.DataFrame(
        {
            "source": pd.Series([source] * len(rows), index=rows.index, dtype="string"),
            "row_id": rows[id_field].astype("string") if id_field in rows else pd.NA,
            "_row": rows[ROW].astype("int64"),
            "rule": rule,
            "rules": rule,
            "column": column,
            "severity": severity,
            "record": records_as_json(rows),
        },
        columns=list(QUARANTINE_COLUMNS),
    ).reset_index(drop=True)


def empty_quarantine() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="string") for c in QUARANTINE_COLUMNS}).astype(
        {"_row": "int64"}
    )


def dumps(payload: dict[str, object]) -> str:
    return json.dumps(payload, sort_keys=True, default=str)


def normalize_history(raw: pd.DataFrame) -> pd.DataFrame:
    """Type the history (one row per customer and currency, folded by tasks/history.py)."""
    history = pd.DataFrame(
        {
            "customer_id": _id_text(raw["customer_id"]) if len(raw) else pd.Series(dtype="string"),
            "currency": _as_text(raw["currency"]).str.upper() if len(raw) else pd.Series(dtype="string"),
            "first_order_at": _to_datetime(raw["first_order_at"]) if len(raw) else pd.Series(dtype="datetime64[ns, UTC]"),
            "last_order_at": _to_datetime(raw["last_order_at"]) if len(raw) else pd.Series(dtype="datetime64[ns, UTC]"),
            "net_amount": _to_float(raw["net_amount"]) if len(raw) else pd.Series(dtype="float64"),
            "order_count": _to_int(raw["order_count"]) if len(raw) else pd.Series(dtype="Int64"),
        }
    )
    # Orders with garbled dates cannot be placed in time; they are reported by validation.
    return history.dropna(subset=["customer_id", "last_order_at"]).reset_index(drop=True)
