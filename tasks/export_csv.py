"""CSV export (SPEC §8.3): spreadsheet-safe, stable, atomically written files.

The files go to people who open them in Excel or LibreOffice, so two things matter beyond
"valid CSV": no cell can run as a formula (OWASP CSV injection; ASVS 1.2.10), and a reader
never sees a half-written file (temp file in the same folder, then `os.replace`).
Formatting is deterministic, so two runs over the same data give byte-identical files and
a diff between two reports shows only what changed.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

logger = logging.getLogger(__name__)

# A cell starting with one of these is read as a formula (or can be made into one) by
# spreadsheet programs. OWASP lists = + - @ TAB CR; ASVS 1.2.10 adds NUL; LF is the
# sibling of CR and just as invisible, so it is neutralised too.
FORMULA_PREFIXES: tuple[str, ...] = ("=", "+", "-", "@", "\t", "\r", "\n", "\0")
NEUTRALISING_PREFIX = "'"

TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_NAME_PART_RE = re.compile(r"^[a-z0-9_]+$")


class CsvExportError(ValueError):
    """A frame that cannot be exported as asked; the message names the file and the column."""


def csv_name(kind: str, period_label: str) -> str:
    """The output file name, e.g. `csv_name("customer_performance", "july2025")`.

    Both parts are checked, because they end up in a path: nothing like '../' gets through.
    """
    for label, part in (("kind", kind), ("period_label", period_label)):
        if not _NAME_PART_RE.match(part):
            raise CsvExportError(f"{label} {part!r} must be lower-case letters, digits and '_'")
    return f"{kind}_{period_label}.csv"


def _is_text_column(column: pd.Series) -> bool:
    return (
        pd.api.types.is_string_dtype(column.dtype)
        or column.dtype == object
        or isinstance(column.dtype, pd.CategoricalDtype)
    )


def _formula_mask(column: pd.Series) -> pd.Series:
    """True where the cell is a *string* starting with a formula prefix; numbers never are."""
    if pd.api.types.is_string_dtype(column.dtype) and column.dtype != object:
        # a string column holds only text: one vectorised pass (10x faster per 1 M rows)
        return column.str.startswith(FORMULA_PREFIXES).fillna(False).astype(bool)
    flags = [isinstance(value, str) and value.startswith(FORMULA_PREFIXES) for value in column]
    return pd.Series(flags, index=column.index, dtype=bool)


def neutralise_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of `frame` in which no text cell can be read as a spreadsheet formula.

    String cells starting with = + - @ TAB CR (and LF, NUL) get a leading single quote, the
    mark spreadsheets use for "this is text". Only `str` values are touched: a number,
    including a negative one in an object column, stays a number.
    """
    result = frame.copy()
    for name in result.columns:
        column = result[name]
        if not _is_text_column(column):
            continue
        mask = _formula_mask(column)
        if not mask.any():
            continue
        if isinstance(column.dtype, pd.CategoricalDtype):
            column = column.astype(object)  # a new category per quoted value is not worth it
        quoted = NEUTRALISING_PREFIX + column[mask].astype(str)
        result[name] = column.where(~mask, quoted)
    return result


def _format_scalar_time(value: object) -> object:
    """Timestamps and dates inside an object column, in the same form as a datetime column."""
    if isinstance(value, pd.Timestamp | dt.datetime):
        stamp = pd.Timestamp(value)
        stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
        return stamp.strftime(TIMESTAMP_FORMAT)
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def format_for_csv(frame: pd.DataFrame) -> pd.DataFrame:
    """Timestamps as ISO 8601 UTC ('2025-07-01T09:30:00Z'), dates as 'YYYY-MM-DD'.

    Naive timestamps are taken as UTC (the data contract keeps every timestamp in UTC).
    Everything else is left to pandas, which writes floats as their shortest repr, nullable
    integers without '.0' and nulls as empty cells.
    """
    result = frame.copy()
    for name in result.columns:
        column = result[name]
        if isinstance(column.dtype, pd.DatetimeTZDtype):
            result[name] = column.dt.tz_convert("UTC").dt.strftime(TIMESTAMP_FORMAT)
        elif pd.api.types.is_datetime64_dtype(column.dtype):
            result[name] = column.dt.tz_localize("UTC").dt.strftime(TIMESTAMP_FORMAT)
        elif column.dtype == object:
            result[name] = column.map(_format_scalar_time, na_action="ignore")
    return result


def _select_columns(frame: pd.DataFrame, columns: Sequence[str], file_name: str) -> pd.DataFrame:
    missing = [name for name in columns if name not in frame.columns]
    if missing:
        raise CsvExportError(
            f"cannot write {file_name}: column(s) {', '.join(repr(m) for m in missing)} missing "
            f"from the frame (it has: {', '.join(map(str, frame.columns))})"
        )
    if len(set(columns)) != len(columns):
        duplicated = sorted({name for name in columns if list(columns).count(name) > 1})
        raise CsvExportError(f"cannot write {file_name}: column(s) {duplicated} listed twice")
    return frame.loc[:, list(columns)]


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    """Write `data` to `path` so that readers see the old file or the new one, never a part.

    The temp file lives in the target's folder (os.replace is only atomic within one file
    system) and is fsynced before the rename, so a crash cannot leave an empty file behind
    the final name. An existing file keeps its permission bits; a new one gets 0644.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    temp_path = Path(temp_name)
    try:
        with os.fdopen(handle, "wb") as temp_file:
            temp_file.write(data)
            temp_file.flush()
            os.fsync(temp_file.fileno())
        os.chmod(temp_path, mode)
        os.replace(temp_path, path)
    finally:
        temp_path.unlink(missing_ok=True)  # only still there when something above failed
    return path


def render_csv(frame: pd.DataFrame, columns: Sequence[str], file_name: str = "the CSV") -> bytes:
    """The exact bytes `write_csv` puts on disk: pure, so tests can check them directly."""
    selected = _select_columns(frame, columns, file_name)
    text: str = format_for_csv(neutralise_formulas(selected)).to_csv(
        index=False, lineterminator="\n", na_rep=""
    )
    return text.encode("utf-8")


def write_csv(frame: pd.DataFrame, path: Path, columns: Sequence[str]) -> Path:
    """Write `columns` of `frame`, in that order, to `path` as UTF-8 CSV, atomically.

    Header row, '\\n' line endings, formula cells neutralised, timestamps in UTC; a column
    in `columns` that the frame lacks is a CsvExportError naming it (extra frame columns
    are not exported). Returns `path`.
    """
    path = Path(path)
    data = render_csv(frame, columns, path.name)
    atomic_write_bytes(path, data)
    logger.info("wrote %s: %d rows, %d bytes", path, len(frame), len(data))
    return path
