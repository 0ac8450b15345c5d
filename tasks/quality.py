"""Validation and cleansing of the typed source frames (SPEC §5, seed transformation 3).

`validate_source` runs a source's Great Expectations suite (expectations/<source>.json) and
acts on the results, by severity:

- critical: the row is quarantined (kept with every critical rule it broke), never counted;
- error: the bad value becomes null, the row stays;
- warning: reported only.

Then the documented defaults are filled (region/country/state/segment -> "unknown",
quantity -> 1, discount/tax -> 0, currency -> the reporting currency). The report rows are
read from the GX results; where a rule needs more than one row or another source
(duplicates, orphans, revenue-status amounts) the verdict is a derived boolean `_chk_*`
column computed in vectorised pandas (tasks/quality_checks.py), and GX checks that column.

Before validation, a few values are normalised so that the value-set rules compare like
with like: ids and email are trimmed (blank -> null), status/type enumerations are
trimmed and lower-cased, currency codes trimmed and upper-cased. These are the values the
clean frame carries on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from tasks.gx_suites import (
    DERIVED_PREFIX,
    RuleResult,
    load_suite,
    results_frame,
    run_suite,
    sample_candidates,
)
from tasks.normalize import INVALID_SUFFIX, empty_quarantine
from tasks.period import Period
from tasks.quality_checks import derive_checks
from tasks.settings import (
    CANONICAL_DTYPES,
    CRITICAL,
    ERROR,
    QUARANTINE_COLUMNS,
    ROW_ID_FIELD,
    UNKNOWN,
)

logger = logging.getLogger(__name__)


# Trimmed, blank -> null: keys are compared across sources, email is pattern-checked.
TRIMMED = {
    "customers": ("customer_id", "email"),
    "transactions": ("transaction_id", "customer_id"),
    "interactions": ("interaction_id", "customer_id"),
}
LOWER_CASED = {
    "customers": ("status",),
    "transactions": ("status",),
    "interactions": ("interaction_type", "resolution_status"),
}
UPPER_CASED = {"transactions": ("currency",)}

# Documented defaults for optional fields (SPEC §5); currency is filled per run.
DEFAULTS: dict[str, dict[str, Any]] = {
    "customers": {"region": UNKNOWN, "country": UNKNOWN, "state": UNKNOWN, "segment": UNKNOWN},
    "transactions": {"quantity": 1, "discount_applied": 0.0, "tax_amount": 0.0},
    "interactions": {},
}

@dataclass
class ValidationOutcome:
    """What validation made of one source: the rows to count, the rows kept aside, the report."""

    source: str
    clean: pd.DataFrame
    quarantine: pd.DataFrame
    results: pd.DataFrame
    rows_in: int
    rows_used: int
    rows_quarantined: int
    # For the summary rows of the report (tasks.quality_report):
    rows_failing: int = 0  # rows breaking at least one critical or error rule
    required_cells: int = 0
    missing_required_cells: int = 0
    duplicates: dict[str, int] = field(default_factory=dict)  # duplicate rule -> rows flagged
    # Per rule, the first failing rows' `_row` and sample text (gx_suites.sample_candidates):
    # a report combined from partitions re-draws its samples from these.
    samples: pd.DataFrame = field(default_factory=pd.DataFrame)


def _empty_column(dtype: str, length: int) -> pd.Series:
    if dtype == "datetime":
        return pd.Series(pd.NaT, index=range(length), dtype="datetime64[ns, UTC]")
    return pd.Series(pd.NA if dtype != "float64" else np.nan, index=range(length), dtype=dtype)


def prepare_frame(source: str, stg: pd.DataFrame) -> pd.DataFrame:
    """A positional (RangeIndex) copy with every canonical and __invalid column, normalised."""
    frame = stg.reset_index(drop=True)
    for name, dtype in CANONICAL_DTYPES[source].items():
        if name not in frame.columns:
            logger.warning("%s: column %s is missing; treated as all null", source, name)
            frame[name] = _empty_column(dtype, len(frame))
        invalid = name + INVALID_SUFFIX
        if dtype != "string" and invalid not in frame.columns:
            frame[invalid] = _empty_column("string", len(frame))
    if "_row" not in frame.columns:
        raise ValueError(f"{source}: the stg frame has no _row column (the row identity)")
    for name in TRIMMED.get(source, ()):
        frame[name] = _trimmed(frame[name].astype("string"))
    for name in LOWER_CASED.get(source, ()):
        frame[name] = _enumeration(frame[name].astype("string"), "lower")
    for name in UPPER_CASED.get(source, ()):
        frame[name] = _enumeration(frame[name].astype("string"), "upper")
    return frame


# Each helper below returns the column untouched when it is already in shape (the usual
# case): rewriting a million strings allocates fresh memory, and on a cold process the
# page faults cost more than the string work (measured: ~0.3 s of a 1.5 s validation).

def _arrow(values: pd.Series) -> pa.Array | pa.ChunkedArray:
    return pa.array(values, from_pandas=True)


def _trimmed(values: pd.Series) -> pd.Series:
    """Surrounding blanks removed, blank -> null."""
    array = _arrow(values)
    if not pc.any(pc.match_substring_regex(array, r"^\s|\s$|^$")).as_py():
        return values
    return values.str.strip().replace("", pd.NA)


def _enumeration(values: pd.Series, case: str) -> pd.Series:
    """Trimmed, lower- or upper-cased, blank -> null (a status or a currency code).

    Whether anything changes is decided on the distinct values, which are few."""
    distinct = pd.Series(pc.unique(_arrow(values)).to_pandas(), dtype="string").dropna()
    if not distinct.empty:
        shaped = getattr(distinct.str.strip().str, case)()
        if not (shaped.eq(distinct) & distinct.ne("")).all():
            return getattr(values.str.strip().str, case)().replace("", pd.NA)
    return values


def original_records(stg: pd.DataFrame, positions: np.ndarray) -> list[str]:
    """The rows' values as the source gave them, one JSON object each (unparseable text kept)."""
    rows = stg.iloc[positions]
    values = rows[[c for c in rows.columns if not c.endswith(INVALID_SUFFIX) and c != "_row"]]
    if values.empty:
        return []
    replaced: dict[str, pd.Series] = {}
    for name in values.columns:
        invalid = name + INVALID_SUFFIX
        if invalid in rows.columns and rows[invalid].notna().any():
            text = rows[invalid]
            replaced[name] = _json_ready(values[name]).where(text.isna(), text)
        elif isinstance(values[name].dtype, pd.DatetimeTZDtype):
            # Same text as to_json's own, but to_json formats datetimes 4x slower.
            replaced[name] = _json_ready(values[name])
    values = values.assign(**replaced) if replaced else values
    return values.to_json(orient="records", lines=True, date_format="iso").splitlines()


def _json_ready(values: pd.Series) -> pd.Series:
    """Values as objects that can sit beside text; datetimes as the ISO text to_json writes
    for them ("2025-07-01T10:00:00.000Z"), built by numpy rather than a Timestamp each."""
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        utc = values.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy()
        text = np.char.add(np.datetime_as_string(utc, unit="ms"), "Z").astype(object)
        return pd.Series(text, index=values.index, dtype=object).where(values.notna(), None)
    return values.astype(object)


def quarantine_frame(
    source: str,
    stg: pd.DataFrame,
    frame: pd.DataFrame,
    critical: list[RuleResult],
    quarantined: np.ndarray,
) -> pd.DataFrame:
    """One row per quarantined row: its first critical rule, all of them, its original values."""
    positions = np.flatnonzero(quarantined)
    if len(positions) == 0:
        return empty_quarantine()
    # Suite order decides which rule a row is filed under; every broken rule is listed.
    primary = np.full(len(positions), -1)
    rules = np.full(len(positions), "", dtype=object)
    for rank, r in enumerate(critical):
        hit = np.isin(positions, r.failed_index)
        primary[hit & (primary < 0)] = rank
        rules[hit] = np.where(rules[hit] == "", r.rule, rules[hit] + ";" + r.rule)
    names = np.array([r.rule for r in critical], dtype=object)
    columns = np.array([r.column for r in critical], dtype=object)
    return pd.DataFrame(
        {
            "source": source,
            "row_id": frame[ROW_ID_FIELD[source]].iloc[positions].astype("string").to_numpy(),
            "_row": frame["_row"].iloc[positions].astype("int64").to_numpy(),
            "rule": names[primary],
            "rules": rules,
            "column": columns[primary],
            "severity": CRITICAL,
            "record": original_records(stg, positions),
        }
    ).astype({c: "string" for c in QUARANTINE_COLUMNS if c != "_row"})


def cleanse(
    source: str,
    frame: pd.DataFrame,
    results: list[RuleResult],
    quarantined: np.ndarray,
    reporting_currency: str,
) -> pd.DataFrame:
    """Kept rows: error-severity values nulled, defaults filled, helper columns dropped."""
    for r in results:
        if r.severity == ERROR and len(r.failed_index) and r.column in frame.columns:
            frame.loc[r.failed_index, r.column] = None
    keep = [c for c in frame.columns if not c.endswith(INVALID_SUFFIX) and not c.startswith(DERIVED_PREFIX)]
    clean = frame.loc[~quarantined, keep].reset_index(drop=True)
    defaults = dict(DEFAULTS[source])
    if source == "transactions":
        defaults["currency"] = reporting_currency
    for name, value in defaults.items():
        if clean[name].hasnans:  # filling a column with no gaps would only copy it
            clean[name] = clean[name].fillna(value)
    return clean


def validate_source(
    source: str,
    stg: pd.DataFrame,
    *,
    known_customer_ids: pd.Series | None,
    period: Period,
    rates: dict[str, Any],
    reporting_currency: str,
    revenue_statuses: list[str],
    sample_values: int = 5,
) -> ValidationOutcome:
    """Validate and cleanse one typed source frame with its GX suite (see module docstring).

    `known_customer_ids` are the ids of the *clean* customers (orphan check); None skips
    that rule. `rates` is the configured currency table (its keys are the known codes).
    """
    suite = load_suite(source)
    stg = stg.reset_index(drop=True)
    frame = prepare_frame(source, stg)
    skipped = derive_checks(
        source, frame, known_customer_ids=known_customer_ids, revenue_statuses=revenue_statuses
    )
    parameters = {
        "period_start": period.start,
        "period_end": period.end,
        "known_currencies": sorted({str(code).strip().upper() for code in rates}),
    }
    results = [r for r in run_suite(suite, frame, parameters, skipped) if not r.skipped]
    critical = [r for r in results if r.severity == CRITICAL]
    quarantined = np.zeros(len(frame), dtype=bool)
    for r in critical:
        quarantined[r.failed_index] = True
    failing = quarantined.copy()
    for r in results:
        if r.severity == ERROR:
            failing[r.failed_index] = True
    report = results_frame(source, results, frame, sample_values)
    samples = sample_candidates(frame, results)  # before cleanse nulls the bad values
    quarantine = quarantine_frame(source, stg, frame, critical, quarantined)
    clean = cleanse(source, frame, results, quarantined, reporting_currency)
    required = [r for r in results if r.category == "required"]
    outcome = ValidationOutcome(
        source=source,
        clean=clean,
        quarantine=quarantine,
        results=report,
        rows_in=len(stg),
        rows_used=len(clean),
        rows_quarantined=len(quarantine),
        rows_failing=int(failing.sum()),
        required_cells=sum(r.evaluated for r in required),
        missing_required_cells=sum(r.failed for r in required),
        duplicates={r.rule: r.failed for r in results if r.category == "duplicate"},
        samples=samples,
    )
    logger.info(
        "%s: %d rows in, %d used, %d quarantined, %d rules failed",
        source, outcome.rows_in, outcome.rows_used, outcome.rows_quarantined,
        int((~report["success"]).sum()),
    )
    return outcome


def _aov_consistent(metrics: pd.DataFrame) -> np.ndarray:
    """AOV = total_revenue / transaction_count within a cent; null exactly when count is 0."""
    count = pd.to_numeric(metrics["transaction_count"], errors="coerce").fillna(0).to_numpy(float)
    revenue = pd.to_numeric(metrics["total_revenue"], errors="coerce").to_numpy(float)
    aov = pd.to_numeric(metrics["avg_order_value"], errors="coerce").to_numpy(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = revenue / count
        close = np.abs(aov - expected) <= 0.01 + 1e-9
    return np.where(count > 0, close, np.isnan(aov))


METRIC_NUMBERS = (
    "engagement_score", "churn_probability", "avg_satisfaction", "transaction_count",
    "total_revenue", "total_quantity", "interaction_count", "ticket_count", "open_tickets",
    "avg_order_value",
)


def validate_metrics(customer_performance: pd.DataFrame, sample_values: int = 5) -> pd.DataFrame:
    """Report rows (source customer_performance) from the metrics suite; nothing is changed."""
    suite = load_suite("customer_performance")
    frame = customer_performance.reset_index(drop=True)
    missing = [c for c in (*METRIC_NUMBERS, "customer_id", "activity_level", "customer_segment")
               if c not in frame.columns]
    if missing:
        raise ValueError(f"customer_performance lacks columns {missing}")
    # Money may arrive as Decimal objects (exact sums); GX compares numbers.
    frame = frame.assign(**{c: pd.to_numeric(frame[c], errors="coerce") for c in METRIC_NUMBERS})
    frame["_chk_aov_consistent"] = _aov_consistent(frame)
    results = run_suite(suite, frame)
    return results_frame("customer_performance", results, frame, sample_values)
