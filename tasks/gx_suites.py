"""Great Expectations plumbing: load the JSON suites, run them on a frame, read the results.

The suites in `expectations/` are the single source of truth for the quality rules
(SPEC §5); this module only loads and runs them. Every expectation carries
`meta: {"rule", "severity", "category"}` and optionally `column` (the column the report
names, when the checked column is a derived helper) and `sample_column` (where sample
values are read from, e.g. the id of a row whose amount is missing).

Three GX behaviours shape this module:
- GX 1.x *drops* an expectation whose type it does not know with only a log line, so
  `load_suite` compares the loaded count with the file's and raises on a mismatch.
- `import great_expectations` takes seconds, so the context and the suites are built once
  per process (behind a lock: Prefect may run tasks in threads).
- GX's cost per expectation is mostly fixed, whatever the rows (tasks/gx_memo.py).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from tasks.config import PROJECT_ROOT
from tasks.gx_memo import configurations_memoised, install_configuration_memo
from tasks.settings import CRITICAL, ERROR, QUALITY_REPORT_COLUMNS, WARNING

if TYPE_CHECKING:
    import great_expectations as gx

logger = logging.getLogger(__name__)

EXPECTATIONS_DIR = PROJECT_ROOT / "expectations"
SEVERITIES = (CRITICAL, ERROR, WARNING)
CATEGORIES = ("required", "type", "range", "format", "duplicate", "referential", "consistency")
# Derived boolean columns computed in pandas for GX to check start with this prefix.
DERIVED_PREFIX = "_chk_"
# Enough unexpected values to pick a few distinct samples from.
PARTIAL_UNEXPECTED_COUNT = 20

_lock = threading.RLock()
_state: dict[str, Any] = {}


class SuiteError(RuntimeError):
    """A suite file that does not load completely, or an expectation that could not run."""


@dataclass(frozen=True)
class RuleResult:
    """One expectation's outcome, in the terms of the quality report."""

    rule: str
    severity: str
    category: str
    column: str
    sample_column: str | None
    evaluated: int
    failed: int
    # Frame positions of failing rows: every one for critical/error rules (they act on
    # rows), a partial list for warnings (only samples are needed).
    failed_index: np.ndarray
    skipped: bool = False


def _gx() -> Any:
    """Import GX lazily (seconds), with its usage statistics switched off first."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations

    return great_expectations


def _context() -> Any:
    """The per-process ephemeral context with one pandas whole-frame batch definition."""
    with _lock:
        if "batch_definition" not in _state:
            gx = _gx()
            from great_expectations.data_context.types.base import ProgressBarsConfig
            from great_expectations.execution_engine import pandas_execution_engine

            # GX fingerprints every in-memory batch below this size by hashing each cell
            # (a batch marker nothing here reads): 0.46 s of a 2.1 s validation of 1 M
            # rows. GX itself skips it above 1 GB; the threshold is a module constant.
            pandas_execution_engine.HASH_THRESHOLD = 0

            install_configuration_memo()
            context = gx.get_context(mode="ephemeral")
            # tqdm bars on stderr would drown the run log.
            context.variables.progress_bars = ProgressBarsConfig(globally=False)
            asset = context.data_sources.add_pandas("pipeline").add_dataframe_asset(name="frame")
            _state["context"] = context
            _state["batch_definition"] = asset.add_batch_definition_whole_dataframe("whole")
        return _state["batch_definition"]


def suite_path(name: str, directory: Path | None = None) -> Path:
    return (directory or EXPECTATIONS_DIR) / f"{name}.json"


def read_suite_file(path: Path) -> dict[str, Any]:
    """The suite's JSON, with each expectation's meta checked (rule, severity, category)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    expectations = data.get("expectations")
    if not isinstance(expectations, list) or not expectations:
        raise SuiteError(f"{path}: 'expectations' must be a non-empty list")
    seen: set[str] = set()
    for position, item in enumerate(expectations):
        meta = item.get("meta") or {}
        rule = meta.get("rule")
        where = f"{path}: expectation #{position} ({item.get('type')})"
        if not rule:
            raise SuiteError(f"{where} has no meta.rule")
        if rule in seen:
            raise SuiteError(f"{where}: rule {rule!r} appears twice; one rule, one expectation")
        seen.add(rule)
        if meta.get("severity") not in SEVERITIES:
            raise SuiteError(f"{where}: meta.severity must be one of {SEVERITIES}")
        if meta.get("category") not in CATEGORIES:
            raise SuiteError(f"{where}: meta.category must be one of {CATEGORIES}")
    return data


def load_suite(name: str, directory: Path | None = None) -> gx.ExpectationSuite:
    """Load expectations/<name>.json; raise SuiteError if GX dropped any expectation."""
    path = suite_path(name, directory)
    key = f"suite:{path}"
    with _lock:
        if key in _state:
            return _state[key]
        data = read_suite_file(path)
        gx = _gx()
        suite = gx.ExpectationSuite(
            name=data.get("name", name), expectations=data["expectations"], meta=data.get("meta")
        )
        if len(suite.expectations) != len(data["expectations"]):
            loaded = {e.meta.get("rule") for e in suite.expectations}
            dropped = [e["meta"]["rule"] for e in data["expectations"] if e["meta"]["rule"] not in loaded]
            raise SuiteError(
                f"{path}: GX loaded {len(suite.expectations)} of {len(data['expectations'])} "
                f"expectations; dropped (unknown type or bad kwargs): {dropped}"
            )
        _state[key] = suite
        return suite


@dataclass(frozen=True)
class _SuitePart:
    """The expectations of a suite that check the same columns, split by how they report."""

    columns: list[str]
    rows: Any  # gx.ExpectationSuite of critical/error rules, or None
    report: Any  # gx.ExpectationSuite of warning rules, or None


def load_all_suites(directory: Path | None = None) -> list[str]:
    """Load every suite in `expectations/` (importing GX, ~1.8 s) and return their names.

    The parent flow calls this before any data moves: a suite file GX cannot load fails
    the run there, and the import is paid up front instead of inside the validate stage.
    """
    names = [path.stem for path in sorted((directory or EXPECTATIONS_DIR).glob("*.json"))]
    _context()
    for name in names:
        _suite_parts(load_suite(name, directory))
    return names


def _checked_columns(expectation: Any) -> tuple[str, ...]:
    kwargs = expectation.configuration.kwargs
    return tuple(kwargs[key] for key in ("column", "column_A", "column_B") if kwargs.get(key))


def _suite_parts(suite: gx.ExpectationSuite) -> list[_SuitePart]:
    """The suite's expectations grouped by the columns they check (built once per suite).

    Each group is validated on a frame of just its columns: GX's column rules filter the
    *whole* batch by the checked column's non-null mask before computing (a full copy of
    every column, per rule), so one wide batch costs 0.43-0.56 s per million rows where
    narrow batches cost 0.23 s, with identical results. Within a group, row-level rules
    (critical, error) and report-only rules (warning) are two suites because they run with
    different result formats: only rules that act on rows need every failing position.
    """
    key = f"parts:{suite.name}:{id(suite)}"
    with _lock:
        if key not in _state:
            gx = _gx()
            groups: dict[tuple[str, ...], list[Any]] = {}
            for expectation in suite.expectations:
                groups.setdefault(_checked_columns(expectation), []).append(expectation)
            parts = []
            for number, (columns, expectations) in enumerate(groups.items()):
                rows = [e for e in expectations if e.meta["severity"] != WARNING]
                report = [e for e in expectations if e.meta["severity"] == WARNING]
                name = f"{suite.name}.{number}"
                parts.append(
                    _SuitePart(
                        columns=list(columns),
                        rows=gx.ExpectationSuite(name=f"{name}.rows", expectations=rows) if rows else None,
                        report=(
                            gx.ExpectationSuite(name=f"{name}.report", expectations=report)
                            if report else None
                        ),
                    )
                )
            _state[key] = parts
        return _state[key]


def _kwargs_column(kwargs: dict[str, Any]) -> str | None:
    return kwargs.get("column") or kwargs.get("column_A")


def _to_rule_result(result: Any, skipped_rules: set[str]) -> RuleResult:
    config = result.expectation_config
    if result.exception_info and result.exception_info.get("raised_exception"):
        raise SuiteError(
            f"rule {config.meta.get('rule')!r} ({config.type}) could not run: "
            f"{result.exception_info.get('exception_message')}"
        )
    meta, details = config.meta, result.result
    element_count = int(details.get("element_count", 0))
    # Rows where the checked value is missing are not evaluated by a range/format rule;
    # a missing value is the business of the matching *_required rule.
    evaluated = element_count - int(details.get("missing_count", 0) or 0)
    index = details.get("unexpected_index_list")
    if index is None:
        index = details.get("partial_unexpected_index_list") or []
    return RuleResult(
        rule=meta["rule"],
        severity=meta["severity"],
        category=meta["category"],
        column=meta.get("column") or _kwargs_column(config.kwargs) or "",
        sample_column=meta.get("sample_column") or _sample_default(config.kwargs, meta),
        evaluated=evaluated,
        failed=int(details.get("unexpected_count", 0) or 0),
        failed_index=np.asarray(index, dtype=np.int64),
        skipped=meta["rule"] in skipped_rules,
    )


def _sample_default(kwargs: dict[str, Any], meta: dict[str, Any]) -> str | None:
    checked = kwargs.get("column")
    if checked and not str(checked).startswith(DERIVED_PREFIX):
        return str(checked)  # e.g. amount__invalid: the unparseable text itself
    return meta.get("column")


def run_suite(
    suite: gx.ExpectationSuite,
    frame: pd.DataFrame,
    parameters: dict[str, Any] | None = None,
    skipped_rules: set[str] | None = None,
) -> list[RuleResult]:
    """Validate `frame` (RangeIndex: positions are row ids) against `suite`, in suite order."""
    if not isinstance(frame.index, pd.RangeIndex) or frame.index.start != 0:
        raise ValueError("run_suite needs a frame with a 0-based RangeIndex")
    referenced_columns(suite, frame)  # every checked column exists, or a SuiteError
    batch_definition = _context()
    rows_format = {"result_format": "COMPLETE", "return_unexpected_index_query": False,
                   "partial_unexpected_count": PARTIAL_UNEXPECTED_COUNT}
    report_format = {"result_format": "SUMMARY", "partial_unexpected_count": PARTIAL_UNEXPECTED_COUNT}
    by_rule: dict[str, RuleResult] = {}
    with _lock:
        from great_expectations.validator.v1_validator import Validator

        for part in _suite_parts(suite):
            # One validator per group serves both of its suites: GX loads a batch once
            # per validator.
            validator = Validator(
                batch_definition=batch_definition,
                batch_parameters={"dataframe": _gx_friendly(frame[part.columns])},
            )
            for checks, result_format in ((part.rows, rows_format), (part.report, report_format)):
                if checks is None:
                    continue
                validator.result_format = result_format
                with configurations_memoised():
                    validation = validator.validate_expectation_suite(checks, parameters or {})
                for result in validation.results:
                    rule_result = _to_rule_result(result, skipped_rules or set())
                    by_rule[rule_result.rule] = rule_result
    return [by_rule[e.meta["rule"]] for e in suite.expectations]


def _gx_friendly(frame: pd.DataFrame) -> pd.DataFrame:
    """Nullable numbers (Int64, Float64) as float64: GX's range check vectorises only
    numpy dtypes and falls back to a per-row Python loop otherwise (~1 s per million)."""
    numeric = {
        name: "float64"
        for name, dtype in frame.dtypes.items()
        if isinstance(dtype, pd.api.extensions.ExtensionDtype)
        and pd.api.types.is_numeric_dtype(dtype)
        and not pd.api.types.is_bool_dtype(dtype)
    }
    return frame.astype(numeric) if numeric else frame


def referenced_columns(suite: gx.ExpectationSuite, frame: pd.DataFrame) -> list[str]:
    """The columns the suite checks plus sample columns; raise if the frame lacks any."""
    wanted: list[str] = []
    for expectation in suite.expectations:
        kwargs = expectation.configuration.kwargs
        for key in ("column", "column_A", "column_B"):
            if kwargs.get(key) and kwargs[key] not in wanted:
                wanted.append(kwargs[key])
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        raise SuiteError(f"suite {suite.name!r} checks columns the frame lacks: {missing}")
    return wanted


def sample_text(frame: pd.DataFrame, column: str | None, positions: np.ndarray, limit: int) -> str:
    """Up to `limit` distinct values of `column` at the failing positions, '; '-joined."""
    if not column or column not in frame.columns or limit <= 0 or len(positions) == 0:
        return ""
    values = frame[column].iloc[positions[:PARTIAL_UNEXPECTED_COUNT]].dropna()
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        text = values.dt.tz_convert("UTC").dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    else:
        text = values.astype(str)
    if column == "_row":
        text = "_row=" + text  # a row without an id is named by its extraction number
    return "; ".join(text.drop_duplicates().head(limit).tolist())


def sample_candidates(frame: pd.DataFrame, results: list[RuleResult]) -> pd.DataFrame:
    """Per rule, its first failing rows' global number and sample text (as `sample_text`
    would print it), so a report combined from partitions (tasks/partition.py) can re-draw
    samples in global row order."""
    parts = []
    for r in results:
        column = r.sample_column
        if not column or column not in frame.columns or len(r.failed_index) == 0:
            continue
        picked = frame.iloc[r.failed_index[:PARTIAL_UNEXPECTED_COUNT]]
        values = picked[column]
        if isinstance(values.dtype, pd.DatetimeTZDtype):
            text = values.dt.tz_convert("UTC").dt.strftime("%Y-%m-%dT%H:%M:%SZ")
        else:
            text = values.astype(str).where(values.notna())
        if column == "_row":
            text = "_row=" + text
        parts.append(pd.DataFrame({"rule": r.rule, "_row": picked["_row"].to_numpy(dtype=np.int64),
                                   "value": text.astype("string").to_numpy()}))
    if not parts:
        return pd.DataFrame({"rule": pd.Series(dtype="string"), "_row": pd.Series(dtype="int64"),
                             "value": pd.Series(dtype="string")})
    return pd.concat(parts, ignore_index=True).astype({"rule": "string", "value": "string"})


def results_frame(
    source: str, results: list[RuleResult], frame: pd.DataFrame, sample_values: int
) -> pd.DataFrame:
    """One report row per rule (QUALITY_REPORT_COLUMNS), from the GX results."""
    rows = [
        {
            "source": source,
            "rule": r.rule,
            "column": r.column,
            "severity": r.severity,
            "success": r.failed == 0,
            "evaluated": r.evaluated,
            "failed": r.failed,
            "failed_pct": round(100.0 * r.failed / r.evaluated, 2) if r.evaluated else 0.0,
            "sample_values": sample_text(frame, r.sample_column, r.failed_index, sample_values),
        }
        for r in results
        if not r.skipped
    ]
    return report_frame(rows)


def report_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows in the report's column order and dtypes (counts may be null on summary rows)."""
    report = pd.DataFrame(rows, columns=list(QUALITY_REPORT_COLUMNS))
    return report.astype(
        {"source": "string", "rule": "string", "column": "string", "severity": "string",
         "success": "boolean", "evaluated": "Int64", "failed": "Int64", "failed_pct": "Float64",
         "sample_values": "string"}
    )
