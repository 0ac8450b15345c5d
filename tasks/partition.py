"""Scale-out: the per-customer chain on K hash partitions, and the exact combination of them.

Customers are independent of each other in every per-customer figure, so the chain
period filter → validation → per-customer metrics can run on disjoint sets of customers.
Two things cannot, and run once on the combined result: the vip segment (the Pareto head
needs the global revenue ranking) and the aggregation (shares of the period total).

How the outputs stay byte-identical to the single-process run:
- a customer's partition is a stable hash of its normalised id (`partition_of`), so its
  customer row, transactions, history and interactions land in the same partition, and
  an orphan id lands where its customer would have been (the orphan rule still holds);
- every row keeps its global extraction number (`_row`), so duplicate resolution ("the
  first extracted row wins") and every ordered output are the single run's;
- the quality report is rebuilt from partial figures: counts are summed, and each rule's
  sample values are re-drawn from the partitions' first failing rows in global order.

The staged extract is read once per partition; the sources are scanned once, not K times,
and the rows keep the one global order that the identical report needs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from tasks.filter_pandas import filter_mask
from tasks.gx_suites import (
    PARTIAL_UNEXPECTED_COUNT,
    report_frame,
)
from tasks.metrics import customer_segment
from tasks.money import dollars_to_cents
from tasks.normalize import _id_text, empty_quarantine, normalize, quarantine_rows
from tasks.quality import ValidationOutcome, validate_source
from tasks.settings import CRITICAL, QUALITY_REPORT_COLUMNS, RULE_EVENT_TIME_MISSING

logger = logging.getLogger(__name__)

SAMPLE_COLUMNS = ("rule", "_row", "value")


def partition_of(customer_ids: pd.Series, partitions: int) -> np.ndarray:
    """Partition number (0..K-1) per row: a stable 64-bit hash of the normalised customer id.

    pandas' hash uses a fixed key, so every process and every run agrees; a null id hashes
    like the empty string (all of them in one partition).
    """
    if partitions < 1:
        raise ValueError(f"partitions must be at least 1, not {partitions}")
    text = _id_text(customer_ids).fillna("")
    hashes = pd.util.hash_pandas_object(text, index=False).to_numpy(dtype=np.uint64)
    return (hashes % np.uint64(partitions)).astype(np.int64)


def select_partition(raw: pd.DataFrame, partition: int, partitions: int) -> np.ndarray:
    """Global positions (extraction order) of the raw rows that belong to `partition`."""
    if raw.empty or "customer_id" not in raw.columns:
        return np.arange(0) if partition else np.arange(len(raw))
    return np.flatnonzero(partition_of(raw["customer_id"], partitions) == partition)


def normalize_partition(source: str, raw: pd.DataFrame, positions: np.ndarray) -> pd.DataFrame:
    """`normalize` of the chosen rows, numbered by their global extraction position."""
    stg = normalize(source, raw.iloc[positions])
    stg["_row"] = positions.astype("int64")
    return stg


@dataclass
class PeriodSplit:
    """The period filter's result for one source of one partition."""

    in_period: pd.DataFrame
    previous: pd.DataFrame | None
    quarantined: pd.DataFrame
    counts: dict[str, int]


def split_period(source: str, stg: pd.DataFrame, *, event_time: str | None, spec: Any,
                 previous_spec: Any, timezone: str, period: str) -> PeriodSplit:
    """What `tasks.stages.apply_period_filter` does to one source, on one partition.

    (tests/e2e/test_scale_out.py holds the two together: any drift changes the CSVs.)
    """
    from tasks.stages import dated_in_another_month

    if event_time is None:
        counts = {"extracted": len(stg), "in_period": len(stg), "event_time_missing": 0}
        return PeriodSplit(stg, None, empty_quarantine(), counts)
    missing = stg[event_time].isna() & ~dated_in_another_month(stg, event_time, period)
    quarantined = quarantine_rows(source, stg[missing], rule=RULE_EVENT_TIME_MISSING,
                                  column=event_time, severity=CRITICAL)
    dated = stg[stg[event_time].notna()]
    in_period = filter_mask(dated, spec, timezone)
    counts = {"extracted": len(stg), "in_period": int(in_period.sum()), "event_time_missing": int(missing.sum())}
    previous = None
    if previous_spec is not None:
        before = filter_mask(dated, previous_spec, timezone) & ~in_period
        previous = dated[before]
        counts["previous_period"] = int(before.sum())
    counts["other_periods"] = len(stg) - sum(
        counts.get(k, 0) for k in ("in_period", "event_time_missing", "previous_period"))
    return PeriodSplit(dated[in_period], previous, quarantined, counts)


def outcome_figures(outcome: ValidationOutcome) -> dict[str, Any]:
    """The counts of an outcome that the combined report sums (JSON-safe)."""
    return {"rows_in": outcome.rows_in, "rows_used": outcome.rows_used,
            "rows_quarantined": outcome.rows_quarantined, "rows_failing": outcome.rows_failing,
            "required_cells": outcome.required_cells, "missing_required_cells": outcome.missing_required_cells,
            "duplicates": dict(outcome.duplicates)}


def concat_like(frames: list[pd.DataFrame], order_by: str | None = "_row") -> pd.DataFrame:
    """Partition frames as one, in global order, with the dtypes of the first non-empty one
    (an empty partition's columns may have been typed differently)."""
    template = next((f for f in frames if len(f)), frames[0])
    combined = pd.concat(frames, ignore_index=True)
    for column in template.columns:
        if column in combined.columns and combined[column].dtype != template[column].dtype:
            combined[column] = combined[column].astype(template[column].dtype)
    if order_by is not None and order_by in combined.columns and len(combined):
        combined = combined.sort_values(order_by, kind="mergesort")
    return combined.reset_index(drop=True)


def merge_samples(candidates: pd.DataFrame, limit: int) -> str:
    """`sample_text` over the union of partitions: first failing rows in global order."""
    if limit <= 0 or candidates.empty:
        return ""
    first = candidates.sort_values("_row", kind="mergesort").head(PARTIAL_UNEXPECTED_COUNT)
    values = first["value"].dropna()
    return "; ".join(values.drop_duplicates().head(limit).astype(str).tolist())


def merge_results(reports: list[pd.DataFrame], samples: pd.DataFrame, sample_values: int) -> pd.DataFrame:
    """One report row per rule, in suite order: counts summed over the partitions."""
    stacked = pd.concat(reports, ignore_index=True)
    rows = []
    for rule in dict.fromkeys(stacked["rule"].tolist()):
        picked = stacked[stacked["rule"] == rule]
        evaluated, failed = int(picked["evaluated"].sum()), int(picked["failed"].sum())
        rows.append({
            "source": picked["source"].iloc[0], "rule": rule, "column": picked["column"].iloc[0],
            "severity": picked["severity"].iloc[0], "success": failed == 0, "evaluated": evaluated,
            "failed": failed, "failed_pct": round(100.0 * failed / evaluated, 2) if evaluated else 0.0,
            "sample_values": merge_samples(samples[samples["rule"] == rule], sample_values),
        })
    return report_frame(rows)[list(QUALITY_REPORT_COLUMNS)]


def combine_outcome(source: str, clean: list[pd.DataFrame], quarantine: list[pd.DataFrame],
                    reports: list[pd.DataFrame], samples: list[pd.DataFrame], figures: list[dict[str, Any]],
                    sample_values: int) -> ValidationOutcome:
    """The single run's ValidationOutcome for one source, from its partitions."""
    duplicates: dict[str, int] = {}
    for figure in figures:
        for rule, count in figure["duplicates"].items():
            duplicates[rule] = duplicates.get(rule, 0) + int(count)
    total = {key: sum(int(f[key]) for f in figures) for key in
             ("rows_in", "rows_used", "rows_quarantined", "rows_failing", "required_cells", "missing_required_cells")}
    return ValidationOutcome(
        source=source, clean=concat_like(clean), quarantine=concat_like(quarantine),
        results=merge_results(reports, pd.concat(samples, ignore_index=True), sample_values),
        duplicates=duplicates, **total,
    )


def resegment(performance: pd.DataFrame, *, as_of: pd.Timestamp, config: Any) -> pd.DataFrame:
    """Customer performance of all partitions, sorted by id, with the vip head re-drawn over
    the global revenue ranking (a partition only knew its own)."""
    combined = concat_like([performance], order_by=None).sort_values("customer_id", kind="mergesort")
    combined = combined.reset_index(drop=True)
    combined["customer_segment"] = customer_segment(
        dollars_to_cents(combined["total_revenue"]), combined["customer_id"], combined["churn_probability"],
        combined["registration_date"], as_of=as_of, config=config,
    )
    return combined


def combined_filter_counts(parts: list[dict[str, dict[str, int]]]) -> dict[str, dict[str, int]]:
    """Per source, the partitions' filter counts added up."""
    total: dict[str, dict[str, int]] = {}
    for part in parts:
        for source, counts in part.items():
            into = total.setdefault(source, {})
            for key, value in counts.items():
                into[key] = into.get(key, 0) + int(value)
    return total


# --- the Prefect tasks: staged inputs in, staged outputs out, counts returned ---------------

def _part_area(run: Any, partition: int) -> Any:
    from tasks.staging import StagingArea

    staging = run.staging
    return StagingArea(staging.root, staging.pipeline, staging.period, f"{staging.run_id}/part_{partition:03d}")


def run_partition(config_path: str, period: str, run_id: str, partition: int, partitions: int) -> dict[str, int]:
    """filter → validate → per-customer metrics for the customers of one partition."""
    from tasks.extract import period_spec, window_spec
    from tasks.metrics import customer_metrics
    from tasks.normalize import normalize_history
    from tasks.run_context import RunContext
    from tasks.settings import SOURCES
    from tasks.stages import countable_history

    run = RunContext.build(config_path, period, run_id)
    config, staging, out = run.config, run.staging, _part_area(run, partition)
    splits: dict[str, PeriodSplit] = {}
    for source in SOURCES:
        raw = staging.read(f"raw_{source}")
        stg = normalize_partition(source, raw, select_partition(raw, partition, partitions))
        event_time = config.event_time(source)
        splits[source] = split_period(
            source, stg, event_time=event_time, spec=period_spec(config, source, run.period),
            previous_spec=window_spec(event_time, run.period.previous()) if source == "transactions" and event_time else None,
            timezone=config.timezone, period=str(run.period))
    history = staging.read("history")
    history = normalize_history(history.iloc[select_partition(history, partition, partitions)])
    common: dict[str, Any] = dict(
        period=run.period, rates=config.rates(), reporting_currency=config.reporting_currency,
        revenue_statuses=config.metrics.revenue_statuses, sample_values=config.quality.sample_values)
    customers = validate_source("customers", splits["customers"].in_period, known_customer_ids=None, **common)
    known = customers.clean["customer_id"].dropna()
    outcomes = {"customers": customers}
    for source in ("transactions", "interactions"):
        outcomes[source] = validate_source(source, splits[source].in_period, known_customer_ids=known, **common)
    all_samples = {source: outcome.samples for source, outcome in outcomes.items()}
    previous = validate_source("transactions", splits["transactions"].previous, known_customer_ids=known,
                               **{**common, "period": run.period.previous()})
    performance = customer_metrics(
        customers.clean, outcomes["transactions"].clean, previous.clean, outcomes["interactions"].clean,
        countable_history(history, config.rates(), config.reporting_currency),
        period=run.period, as_of=run.as_of, rates=config.rates(), config=config.metrics)
    stg_customers = splits["customers"].in_period
    freshness = {
        "customers": stg_customers["updated_at"].max() if len(stg_customers) else None,
        "transactions": outcomes["transactions"].clean["order_date"].max() if len(outcomes["transactions"].clean) else None,
        "interactions": outcomes["interactions"].clean["interaction_date"].max() if len(outcomes["interactions"].clean) else None,
    }
    for source, outcome in outcomes.items():
        out.write(source, outcome.clean)
        out.write(f"quarantine_{source}", outcome.quarantine)
        out.write(f"report_{source}", outcome.results)
        out.write(f"samples_{source}", all_samples[source])
        out.write(f"quarantine_filter_{source}", splits[source].quarantined)
    out.write("transactions_prev", previous.clean)
    out.write("customer_performance", performance)
    out.write_json("partition", {
        "filter_counts": {s: split.counts for s, split in splits.items()},
        "figures": {s: outcome_figures(o) for s, o in outcomes.items()},
        "freshness": {s: (None if pd.isna(v) else pd.Timestamp(v).isoformat()) for s, v in freshness.items()},
    })
    return {"customers": len(performance), "rows_in": sum(s.counts["extracted"] for s in splits.values())}


def combine_partitions(config_path: str, period: str, run_id: str, partitions: int) -> dict[str, object]:
    """Write the single run's staged outputs (validated sources, quarantine, quality report,
    customer performance with global segments) from the partitions' outputs."""
    from tasks.quality import validate_metrics
    from tasks.quality_report import build_report, check_thresholds
    from tasks.run_context import RunContext
    from tasks.settings import SOURCES

    run = RunContext.build(config_path, period, run_id)
    config, staging = run.config, run.staging
    areas = [_part_area(run, k) for k in range(partitions)]
    meta = [area.read_json("partition") for area in areas]
    sample_values = config.quality.sample_values
    outcomes = [
        combine_outcome(
            source, [a.read(source) for a in areas], [a.read(f"quarantine_{source}") for a in areas],
            [a.read(f"report_{source}") for a in areas], [a.read(f"samples_{source}") for a in areas],
            [m["figures"][source] for m in meta], sample_values)
        for source in SOURCES
    ]
    with_event_time = [s for s in SOURCES if config.event_time(s) is not None]
    filter_quarantine = pd.concat(
        [concat_like([a.read(f"quarantine_filter_{s}") for a in areas]) for s in with_event_time], ignore_index=True)
    counts = combined_filter_counts([m["filter_counts"] for m in meta])
    extracted = {s: c["in_period"] + c["event_time_missing"] for s, c in counts.items()}
    freshness = {s: max((pd.Timestamp(m["freshness"][s]) for m in meta if m["freshness"][s]), default=None)
                 for s in SOURCES}
    report = build_report(outcomes, filter_quarantine, extracted, run_time=run.run_time,
                          freshness_inputs=freshness, sample_values=sample_values)
    for outcome in outcomes:
        staging.write(outcome.source, outcome.clean)
    staging.write("transactions_prev", concat_like([a.read("transactions_prev") for a in areas]))
    quarantine = pd.concat([filter_quarantine] + [o.quarantine for o in outcomes], ignore_index=True)
    staging.write("quarantine_filter", filter_quarantine)
    staging.write("quarantine", quarantine)
    staging.write("quality_report", report)
    staging.write_json("filter_counts", counts)
    performance = resegment(concat_like([a.read("customer_performance") for a in areas], order_by=None),
                            as_of=run.as_of, config=config.metrics)
    staging.write("customer_performance", performance)
    staging.write("quality_report_metrics", validate_metrics(performance, sample_values=sample_values))
    breaches = check_thresholds(report, config.quality)
    staging.write_json("quality", {"breaches": [b.__dict__ for b in breaches],
                                   "rows": {o.source: o.rows_used for o in outcomes}})
    failing = [b.message for b in breaches if b.action == "fail"]
    return {"customers": len(performance), "quarantined": len(quarantine), "failing": failing,
            "warnings": [b.message for b in breaches if b.action != "fail"],
            "rows_in": sum(extracted.values()), "rows_used": sum(o.rows_used for o in outcomes)}
