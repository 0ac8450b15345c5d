"""The data-quality report (SPEC §5) and its thresholds.

`build_report` joins the per-rule rows of every source (read from GX results by
`tasks.quality`), the `event_time_missing` rows of the period filter, and summary rows
per source and for source "all":

- completeness: evaluated = required cells, failed = null ones; value = non-null / all
- accuracy: evaluated = rows in, failed = rows breaking a critical or error rule (the
  filter's event_time_missing rows included); value = passing / rows in
- freshness_hours: evaluated and failed null; value = hours from the newest
  updated_at / event time to the run time ("all": the stalest source)
- duplicates: evaluated = rows validated, failed = rows flagged by a duplicate rule;
  value = the count per rule
- quarantined: evaluated = rows in (extracted), failed = rows quarantined (filter
  included); value = "rows_in=…; rows_used=…; rows_quarantined=…"

The report's columns are fixed by the contract, so a summary's value travels in
`sample_values` (as plain text). Warnings are "reported only" (SPEC §5), so they do not
lower accuracy. `success` on a summary row means "nothing failed" (freshness: "known");
whether a figure is acceptable is `check_thresholds`'s call.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd

from tasks.config import QualityConfig, QualityThreshold
from tasks.gx_suites import report_frame
from tasks.quality import ValidationOutcome
from tasks.settings import CRITICAL, DEFAULT_EVENT_TIME, RULE_EVENT_TIME_MISSING, SOURCES

logger = logging.getLogger(__name__)

ALL = "all"


class AccountingError(AssertionError):
    """Rows in != rows used + rows quarantined for a source: a row went missing or doubled."""


@dataclass(frozen=True)
class Breach:
    """A quality figure beyond its configured threshold; `action` fail stops the run."""

    rule: str
    value: float
    threshold: float
    action: Literal["warn", "fail"]
    message: str
    source: str = ALL


def _filter_counts(filter_quarantine: pd.DataFrame) -> dict[str, int]:
    if filter_quarantine is None or filter_quarantine.empty:
        return {}
    return filter_quarantine.groupby("source").size().astype(int).to_dict()


def accounting(
    outcomes: list[ValidationOutcome],
    filter_quarantine: pd.DataFrame,
    extracted_counts: dict[str, int],
) -> dict[str, dict[str, int]]:
    """Per source: rows_in (extracted), rows_used, rows_quarantined (filter included)."""
    filtered = _filter_counts(filter_quarantine)
    table: dict[str, dict[str, int]] = {}
    for outcome in outcomes:
        table[outcome.source] = {
            "rows_in": int(extracted_counts.get(outcome.source, outcome.rows_in)),
            "rows_used": outcome.rows_used,
            "rows_quarantined": outcome.rows_quarantined + filtered.get(outcome.source, 0),
        }
    return table


def assert_accounting(
    outcomes: list[ValidationOutcome],
    filter_quarantine: pd.DataFrame,
    extracted_counts: dict[str, int],
) -> None:
    """Raise AccountingError unless rows in = rows used + rows quarantined for every source.

    `extracted_counts` are the rows that reached the period filter and were kept or
    quarantined by it (a source that cannot push the period down must not count the
    rows the filter dropped as out of period).
    """
    problems = []
    for outcome in outcomes:
        if outcome.rows_in != outcome.rows_used + outcome.rows_quarantined:
            problems.append(
                f"{outcome.source}: validation got {outcome.rows_in} rows but used "
                f"{outcome.rows_used} and quarantined {outcome.rows_quarantined}"
            )
        if outcome.source not in extracted_counts:
            problems.append(f"{outcome.source}: no extracted row count given")
    for source, row in accounting(outcomes, filter_quarantine, extracted_counts).items():
        if row["rows_in"] != row["rows_used"] + row["rows_quarantined"]:
            problems.append(
                f"{source}: {row['rows_in']} rows extracted but {row['rows_used']} used + "
                f"{row['rows_quarantined']} quarantined = {row['rows_used'] + row['rows_quarantined']}"
            )
    if problems:
        raise AccountingError("row accounting does not hold:\n  - " + "\n  - ".join(problems))


def _event_time_rows(
    outcomes: list[ValidationOutcome],
    filter_quarantine: pd.DataFrame,
    extracted_counts: dict[str, int],
    sample_values: int,
) -> dict[str, dict[str, Any]]:
    """One `event_time_missing` row per source that has an event time or lost rows to it."""
    rows: dict[str, dict[str, Any]] = {}
    frames = {} if filter_quarantine is None or filter_quarantine.empty else dict(
        tuple(filter_quarantine.groupby("source"))
    )
    for outcome in outcomes:
        source = outcome.source
        lost = frames.get(source)
        if lost is None and DEFAULT_EVENT_TIME.get(source) is None:
            continue
        column = DEFAULT_EVENT_TIME.get(source) or ""
        samples = ""
        if lost is not None and not lost.empty:
            column = str(lost["column"].dropna().iloc[0]) if lost["column"].notna().any() else column
            samples = _event_time_samples(lost, column, sample_values)
        failed = 0 if lost is None else len(lost)
        evaluated = int(extracted_counts.get(source, outcome.rows_in + failed))
        rows[source] = {
            "source": source, "rule": RULE_EVENT_TIME_MISSING, "column": column,
            "severity": CRITICAL, "success": failed == 0, "evaluated": evaluated,
            "failed": failed, "failed_pct": _pct(failed, evaluated), "sample_values": samples,
        }
    return rows


def _event_time_samples(lost: pd.DataFrame, column: str, limit: int) -> str:
    """The event-time text the filter could not use, read back from the records' JSON."""
    values: list[str] = []
    for record in lost["record"].dropna().head(limit * 4):
        fields = json.loads(record)
        # The typed value is null; the unparseable original, if any, sits beside it.
        value = fields.get(column + "__invalid") or fields.get(column)
        text = "null" if value is None else str(value)
        if text not in values:
            values.append(text)
        if len(values) >= limit:
            break
    return "; ".join(values)


def _pct(failed: int, evaluated: int) -> float:
    return round(100.0 * failed / evaluated, 2) if evaluated else 0.0


def _summary(source: str, rule: str, evaluated: int | None, failed: int | None, value: str,
             success: bool) -> dict[str, Any]:
    return {
        "source": source, "rule": rule, "column": None, "severity": None, "success": success,
        "evaluated": evaluated, "failed": failed,
        "failed_pct": None if evaluated is None or failed is None else _pct(failed, evaluated),
        "sample_values": value,
    }


def _ratio(failed: int, evaluated: int) -> str:
    return f"{(1 - failed / evaluated) if evaluated else 1.0:.4f}"


def _hours(newest: pd.Timestamp | None, run_time: pd.Timestamp) -> float | None:
    if newest is None or pd.isna(newest):
        return None
    return round((run_time - pd.Timestamp(newest)).total_seconds() / 3600.0, 1)


def _summaries(source: str, figures: dict[str, Any]) -> list[dict[str, Any]]:
    hours = figures["hours"]
    duplicate_text = "; ".join(f"{rule}={n}" for rule, n in figures["duplicates"].items())
    rows_in, used, quarantined = figures["rows_in"], figures["rows_used"], figures["quarantined"]
    return [
        _summary(source, "completeness", figures["cells"], figures["missing"],
                 _ratio(figures["missing"], figures["cells"]), figures["missing"] == 0),
        _summary(source, "accuracy", rows_in, figures["failing"],
                 _ratio(figures["failing"], rows_in), figures["failing"] == 0),
        _summary(source, "freshness_hours", None, None,
                 "" if hours is None else f"{hours:.1f}", hours is not None),
        _summary(source, "duplicates", figures["validated"], sum(figures["duplicates"].values()),
                 duplicate_text, sum(figures["duplicates"].values()) == 0),
        _summary(source, "quarantined", rows_in, quarantined,
                 f"rows_in={rows_in}; rows_used={used}; rows_quarantined={quarantined}",
                 quarantined == 0),
    ]


def build_report(
    outcomes: list[ValidationOutcome],
    filter_quarantine: pd.DataFrame,
    extracted_counts: dict[str, int],
    *,
    run_time: pd.Timestamp,
    freshness_inputs: dict[str, pd.Timestamp | None],
    sample_values: int = 5,
) -> pd.DataFrame:
    """The rows of data_quality_report_{period}.csv (see the module docstring)."""
    assert_accounting(outcomes, filter_quarantine, extracted_counts)
    order = {s: i for i, s in enumerate(SOURCES)}
    outcomes = sorted(outcomes, key=lambda o: order.get(o.source, len(order)))
    lost = _filter_counts(filter_quarantine)
    event_rows = _event_time_rows(outcomes, filter_quarantine, extracted_counts, sample_values)
    run_time = pd.Timestamp(run_time)
    run_time = run_time.tz_localize("UTC") if run_time.tzinfo is None else run_time
    parts: list[pd.DataFrame] = []
    summaries: list[dict[str, Any]] = []
    totals: dict[str, Any] = {"cells": 0, "missing": 0, "failing": 0, "rows_in": 0, "rows_used": 0,
                              "quarantined": 0, "validated": 0, "duplicates": {}, "hours": None}
    for outcome in outcomes:
        source = outcome.source
        if source in event_rows:
            parts.append(report_frame([event_rows[source]]))
        parts.append(outcome.results)
        figures = {
            "cells": outcome.required_cells,
            "missing": outcome.missing_required_cells,
            "failing": outcome.rows_failing + lost.get(source, 0),
            "rows_in": int(extracted_counts[source]),
            "rows_used": outcome.rows_used,
            "quarantined": outcome.rows_quarantined + lost.get(source, 0),
            "validated": outcome.rows_in,
            "duplicates": dict(outcome.duplicates),
            "hours": _hours(freshness_inputs.get(source), run_time),
        }
        summaries.extend(_summaries(source, figures))
        for key in ("cells", "missing", "failing", "rows_in", "rows_used", "quarantined", "validated"):
            totals[key] += figures[key]
        for rule, count in figures["duplicates"].items():
            totals["duplicates"][rule] = totals["duplicates"].get(rule, 0) + count
        if figures["hours"] is not None:
            # The stalest source decides how fresh the report as a whole is.
            previous = totals["hours"]
            totals["hours"] = figures["hours"] if previous is None else max(previous, figures["hours"])
    summaries.extend(_summaries(ALL, totals))
    parts.append(report_frame(summaries))
    report = pd.concat([p for p in parts if not p.empty], ignore_index=True)
    logger.info("quality report: %d rule rows, %d summary rows", len(report) - len(summaries),
                len(summaries))
    return report


def summary_value(row: pd.Series) -> float | None:
    """The figure a summary row stands for (completeness/accuracy as a ratio, freshness in h)."""
    if row["rule"] in ("completeness", "accuracy"):
        evaluated, failed = row["evaluated"], row["failed"]
        return 1.0 if not evaluated else 1.0 - float(failed) / float(evaluated)
    text = row["sample_values"]
    if row["rule"] == "freshness_hours" and isinstance(text, str) and text:
        return float(text)
    return None


def _compare(value: float, threshold: QualityThreshold) -> tuple[float, str] | None:
    if threshold.minimum is not None and value < threshold.minimum:
        return threshold.minimum, "below the minimum"
    if threshold.maximum is not None and value > threshold.maximum:
        return threshold.maximum, "above the maximum"
    return None


def check_thresholds(report: pd.DataFrame, quality: QualityConfig) -> list[Breach]:
    """Every summary figure (per source and "all") and rule failure % beyond its threshold.

    completeness / accuracy are ratios (0.95 = 95 %), freshness_hours is hours, and
    `rule_max_failure_pct` compares a rule's failed_pct (percent) per source.
    """
    breaches: list[Breach] = []
    summary_thresholds = {
        "completeness": quality.completeness,
        "accuracy": quality.accuracy,
        "freshness_hours": quality.freshness_hours,
    }
    for _, row in report.iterrows():
        rule = str(row["rule"])
        if rule in summary_thresholds:
            value = summary_value(row)
            threshold = summary_thresholds[rule]
            figures = (f"{row['evaluated'] - row['failed']} of {row['evaluated']}"
                       if rule != "freshness_hours" else "")
        elif rule in quality.rule_max_failure_pct and pd.notna(row["failed_pct"]):
            value = float(row["failed_pct"])
            threshold = quality.rule_max_failure_pct[rule]
            figures = f"{row['failed']} of {row['evaluated']} rows failed"
        else:
            continue
        if value is None:
            continue
        crossed = _compare(value, threshold)
        if crossed is None:
            continue
        limit, how = crossed
        source = str(row["source"])
        unit = "%" if rule in quality.rule_max_failure_pct and rule not in summary_thresholds else ""
        message = (
            f"{source} {rule} = {value:.4g}{unit} is {how} {limit:g}{unit}"
            + (f" ({figures})" if figures else "") + f"; action: {threshold.action}"
        )
        breaches.append(Breach(rule, value, limit, threshold.action, message, source))
    return breaches


def newest_time(frame: pd.DataFrame, column: str | None) -> pd.Timestamp | None:
    """The newest value of a time column (a `freshness_inputs` entry); None when there is none."""
    if column is None or column not in frame.columns or frame.empty:
        return None
    newest = frame[column].max()
    return None if pd.isna(newest) else pd.Timestamp(newest)
