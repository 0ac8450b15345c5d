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
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

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


def atomic_write_bytes(path: Path, data: bytes | Iterable[bytes]) -> Path:
    """Write `data` (bytes, or pieces of them) to `path` so that readers see the old file
    or the new one, never a part.

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
            for piece in [data] if isinstance(data, bytes) else data:
                temp_file.write(piece)
            temp_file.flush()
            os.fsync(temp_file.fileno())
        os.chmod(temp_path, mode)
        os.replace(temp_path, path)
    finally:
        temp_path.unlink(missing_ok=True)  # only still there when something above failed
    return path


def render_csv_pandas(frame: pd.DataFrame, columns: Sequence[str], file_name: str = "the CSV") -> bytes:
    """The reference rendering: `format_for_csv`, then `DataFrame.to_csv`. Every frame can
    take this path; `csv_chunks` gives the same bytes faster where it can."""
    selected = _select_columns(frame, columns, file_name)
    text: str = format_for_csv(neutralise_formulas(selected)).to_csv(
        index=False, lineterminator="\n", na_rep=""
    )
    return text.encode("utf-8")


def render_csv(frame: pd.DataFrame, columns: Sequence[str], file_name: str = "the CSV") -> bytes:
    """The exact bytes `write_csv` puts on disk: pure, so tests can check them directly."""
    return b"".join(csv_chunks(frame, columns, file_name))


def csv_chunks(frame: pd.DataFrame, columns: Sequence[str], file_name: str = "the CSV") -> Iterator[bytes]:
    """The file's bytes, header first, then CHUNK_ROWS rows at a time.

    Byte for byte what `render_csv_pandas` gives. Frames of plain columns (text, integers,
    floats, booleans, timestamps) are rendered by Arrow's vectorised kernels: `to_csv` runs
    Python's csv module once per row (6 s of the 8 s per million report rows here). Other
    frames take the pandas path: object columns, and a single column (Python's csv writes
    an empty lone cell as '""').
    """
    selected = _select_columns(frame, columns, file_name)
    texts = csv_text_columns(selected) if selected.shape[1] > 1 else None
    if texts is None:
        yield render_csv_pandas(selected, list(selected.columns), file_name)
        return
    header = _quote_where_needed(pa.array([str(name) for name in selected.columns], pa.large_string()))
    yield (",".join(header.to_pylist()) + "\n").encode("utf-8")
    for first in range(0, len(selected), CHUNK_ROWS):
        yield _csv_lines([text.slice(first, CHUNK_ROWS) for text in texts])


CHUNK_ROWS = 100_000  # bounds the rendered text in memory (~17 MB per chunk of report rows)
_NEEDS_QUOTES = r'[,"\n]'  # what Python's csv quotes with lineterminator="\n" (a lone CR is not)


def csv_text_columns(frame: pd.DataFrame) -> list[pa.Array] | None:
    """Each column as Arrow text in `neutralise_formulas` + `format_for_csv` + `to_csv` form,
    quoted where CSV needs it, null for an empty cell; None when a column is of a kind only
    pandas formats."""
    # Arrow's kernels release the GIL: the columns are formatted side by side.
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        texts = list(pool.map(_column_text, (frame[name] for name in frame.columns)))
    if any(text is None for text in texts):
        return None
    return [text.combine_chunks() if isinstance(text, pa.ChunkedArray) else text for text in texts]


def _column_text(column: pd.Series) -> pa.Array | None:
    dtype = column.dtype
    if isinstance(dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(dtype):
        stamps = column.dt.tz_convert("UTC") if isinstance(dtype, pd.DatetimeTZDtype) else column.dt.tz_localize("UTC")
        # strftime's %S is the floored second. Arrow casts a whole-second timestamp to
        # 'YYYY-MM-DD HH:MM:SS' 8x faster than its strftime kernel formats one.
        seconds = pc.floor_temporal(pa.array(stamps), unit="second").cast(pa.timestamp("s"))
        text = pc.replace_substring(seconds.cast(pa.large_string()), " ", "T", max_replacements=1)
        return pc.binary_join_element_wise(text, _text("Z"), _text(""))
    if pd.api.types.is_bool_dtype(dtype):
        return pc.if_else(pa.array(column, pa.bool_()), "True", "False").cast(pa.large_string())
    if pd.api.types.is_integer_dtype(dtype):
        return pa.array(column).cast(pa.large_string())
    if dtype == np.float64 or isinstance(dtype, pd.Float64Dtype):  # float32 prints its own repr
        return _float_text(column.to_numpy(dtype="float64", na_value=np.nan))
    if isinstance(dtype, pd.StringDtype):
        return _quote_where_needed(_neutralised(pa.array(column, pa.large_string())))
    return None


def _float_text(values: np.ndarray) -> pa.Array:
    """Floats as numpy's `str` (what to_csv writes: shortest repr, '1.0', '1e-05', '1e+16').

    Arrow's cast has the same shortest digits but its own notation: no '.0' on integral
    values and exponents at other magnitudes. Where it prints plain decimals (checked
    against numpy on 4.8 M random and money-like values: no difference) a '.0' is added
    where missing; the rest, rare in reports, is formatted by numpy itself.
    """
    text = pa.array(values, from_pandas=True).cast(pa.large_string())  # NaN -> null -> empty
    magnitude = np.abs(values)
    plain = np.isfinite(values) & (((magnitude >= 1e-4) & (magnitude < 1e15)) | (magnitude == 0))
    plain &= ~_contains(text, "e")
    with np.errstate(invalid="ignore"):  # trunc of inf and NaN: those are not `plain`
        whole = plain & (values == np.trunc(values))  # Arrow's '3', '-0'; numpy's '3.0', '-0.0'
    if whole.any():
        text = pc.if_else(whole, pc.binary_join_element_wise(text, _text(".0"), _text("")), text)
    other = np.isfinite(values) & ~plain
    if other.any():
        patched = np.asarray(text.to_numpy(zero_copy_only=False), dtype=object)
        patched[other] = values[other].astype(str)
        text = pa.array(patched, pa.large_string())
    return text


# FORMULA_PREFIXES as one pattern: the cells `neutralise_formulas` quotes
_FORMULA_START = "^[" + "".join(re.escape(prefix) for prefix in FORMULA_PREFIXES) + "]"


def _neutralised(text: pa.Array) -> pa.Array:
    """`neutralise_formulas` for one Arrow text column."""
    formula = pc.match_substring_regex(text, _FORMULA_START)
    if not pc.any(formula).as_py():
        return text
    return pc.if_else(formula, pc.binary_join_element_wise(_text(NEUTRALISING_PREFIX), text, _text("")), text)


def _contains(text: pa.Array, part: str) -> np.ndarray:
    return pc.fill_null(pc.match_substring(text, part), False).to_numpy(zero_copy_only=False)


def _text(value: str) -> pa.Scalar:
    return pa.scalar(value, pa.large_string())


def _quote_where_needed(text: pa.Array) -> pa.Array:
    needs = pc.match_substring_regex(text, _NEEDS_QUOTES)
    if not pc.any(needs).as_py():
        return text
    quoted = pc.binary_join_element_wise(_text('"'), pc.replace_substring(text, '"', '""'), _text('"'), _text(""))
    return pc.if_else(needs, quoted, text)


def _csv_lines(texts: list[pa.Array]) -> bytes:
    """Rows joined by ',' and ended by '\n', as one UTF-8 buffer (no Python per row)."""
    rows = pc.binary_join_element_wise(*texts, _text(","), null_handling="replace", null_replacement="")
    lines = pc.binary_join_element_wise(rows, _text(""), _text("\n"))
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int64, count=len(lines) + 1, offset=lines.offset * 8)
    return lines.buffers()[2].slice(int(offsets[0]), int(offsets[-1] - offsets[0])).to_pybytes()


def write_csv(frame: pd.DataFrame, path: Path, columns: Sequence[str]) -> Path:
    """Write `columns` of `frame`, in that order, to `path` as UTF-8 CSV, atomically.

    Header row, '\\n' line endings, formula cells neutralised, timestamps in UTC; a column
    in `columns` that the frame lacks is a CsvExportError naming it (extra frame columns
    are not exported). Returns `path`.
    """
    path = Path(path)
    atomic_write_bytes(path, csv_chunks(frame, columns, path.name))
    logger.info("wrote %s: %d rows, %d bytes", path, len(frame), path.stat().st_size)
    return path
