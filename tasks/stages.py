"""The stage tasks: read staged inputs, call the pure logic, write staged outputs.

Each task takes only JSON parameters (config path, period, run id), so its sub-flow can be
rerun on its own; each returns counts, never frames. Pure logic lives in filtering,
normalize, quality, metrics and aggregate; this module is the I/O around it.
"""

from __future__ import annotations

import time
from functools import partial

import pandas as pd
from prefect import task
from prefect.logging import get_run_logger

from tasks.aggregate import business_insights, performance_trends, regional_summary
from tasks.artifacts import publish_preview, publish_table
from tasks.extract import period_spec, window_spec
from tasks.filter_pandas import filter_mask
from tasks.metrics import customer_metrics
from tasks.normalize import empty_quarantine, normalize, normalize_history, quarantine_rows
from tasks.quality import ValidationOutcome, validate_metrics, validate_source
from tasks.quality_report import assert_accounting, build_report, check_thresholds
from tasks.run_context import RunContext
from tasks.settings import CRITICAL, RULE_EVENT_TIME_MISSING, SOURCES
from tasks.side_by_side import run_side_by_side


class QualityThresholdError(RuntimeError):
    """A configured quality threshold with action 'fail' was crossed; nothing is delivered."""


def _log_stage(stage: str, rows_in: int, rows_out: int, quarantined: int, started: float) -> None:
    get_run_logger().info(
        "%s: rows in %s, rows out %s, quarantined %s, %.2f s",
        stage, f"{rows_in:,}", f"{rows_out:,}", f"{quarantined:,}", time.perf_counter() - started,
    )


def dated_in_another_month(stg: pd.DataFrame, event_time: str, period: str) -> pd.Series:
    """Unparseable event times whose text still names another month ('2025-06-3x ...').

    A source that stores dates as text returns such rows from a pushed-down range filter
    (they sort inside it); they belong to their own month's report, not this one's. Rows
    with no usable text at all belong to no period and are reported in every period.
    """
    invalid = stg.get(f"{event_time}__invalid")
    if invalid is None:
        return pd.Series(False, index=stg.index)
    month = invalid.str.extract(r"^(\d{4}-\d{2})", expand=False)
    return (month.notna() & (month != period)).fillna(False).astype(bool)


def _filter_source(run: RunContext, source: str) -> tuple[dict[str, int], pd.DataFrame | None]:
    """Type one source, stage its period's rows (and, for sales, the previous month's);
    return its counts and the rows quarantined for a missing event time (None for a
    dimension, which has no event time)."""
    staging, config = run.staging, run.config
    stg = normalize(source, staging.read(f"raw_{source}"))
    event_time = config.event_time(source)
    if event_time is None:  # a dimension: every row, whatever its dates
        staging.write(f"stg_{source}", stg)
        counts = {"extracted": len(stg), "in_period": len(stg), "event_time_missing": 0}
        publish_preview("filter-period", f"stg-{source}", stg, counts)
        return counts, None
    missing = stg[event_time].isna() & ~dated_in_another_month(stg, event_time, str(run.period))
    quarantined = quarantine_rows(
        source, stg[missing], rule=RULE_EVENT_TIME_MISSING, column=event_time, severity=CRITICAL
    )
    has_time = stg[event_time].notna()
    dated = stg if has_time.all() else stg[has_time]  # the usual case needs no copy
    in_period = filter_mask(dated, period_spec(config, source, run.period), config.timezone)
    kept = dated[in_period]
    staging.write(f"stg_{source}", kept)
    counts = {
        "extracted": len(stg),
        "in_period": int(in_period.sum()),
        "event_time_missing": int(missing.sum()),
    }
    if source == "transactions":
        previous = filter_mask(dated, window_spec(event_time, run.period.previous()), config.timezone)
        previous &= ~in_period
        staging.write("stg_transactions_prev", dated[previous])
        counts["previous_period"] = int(previous.sum())
    # rows of other months (a pushed-down filter returns few; a source that cannot
    # push down returns many): not this period's, so outside its accounting
    counts["other_periods"] = len(stg) - sum(
        counts.get(k, 0) for k in ("in_period", "event_time_missing", "previous_period")
    )
    # From the frame in hand: reading the staged file back only to show 10 rows cost a
    # whole read per source.
    publish_preview("filter-period", f"stg-{source}", kept, counts)
    return counts, quarantined


def _stage_history(run: RunContext) -> None:
    run.staging.write("stg_history", normalize_history(run.staging.read("history")))


@task(name="apply-period-filter")
def apply_period_filter(config_path: str, period: str, run_id: str) -> dict[str, dict[str, int]]:
    """Type every source, keep the period's rows, quarantine rows without an event time."""
    started = time.perf_counter()
    run = RunContext.build(config_path, period, run_id)
    run.inject_fault("filter_period")
    # The sources (and the history) share nothing until the counts are gathered.
    *per_source, _ = run_side_by_side(
        *(partial(_filter_source, run, source) for source in SOURCES), partial(_stage_history, run)
    )
    counts = {source: source_counts for source, (source_counts, _) in zip(SOURCES, per_source, strict=True)}
    quarantined = [rows for _, rows in per_source if rows is not None]
    quarantine = pd.concat([empty_quarantine(), *quarantined], ignore_index=True)
    run.staging.write("quarantine_filter", quarantine)
    run.staging.write_json("filter_counts", counts)
    rows_in = sum(c["extracted"] for c in counts.values())
    rows_out = sum(c["in_period"] for c in counts.values())
    _log_stage("filter_period", rows_in, rows_out, len(quarantine), started)
    return counts


@task(name="validate-sources")
def validate_sources(config_path: str, period: str, run_id: str) -> dict[str, object]:
    """Run the Great Expectations suites, cleanse, quarantine, and build the quality report."""
    started = time.perf_counter()
    run = RunContext.build(config_path, period, run_id)
    run.inject_fault("validate_data")
    staging, config = run.staging, run.config
    common = dict(
        period=run.period,
        rates=config.rates(),
        reporting_currency=config.reporting_currency,
        revenue_statuses=config.metrics.revenue_statuses,
        sample_values=config.quality.sample_values,
    )
    stg_customers = staging.read("stg_customers")
    customers = validate_source("customers", stg_customers, known_customer_ids=None, **common)
    customer_ids = customers.clean["customer_id"].dropna()  # orphans: not a usable customer

    def validated(source: str, staged: str, **overrides: object) -> ValidationOutcome:
        return validate_source(
            source, staging.read(staged), known_customer_ids=customer_ids, **{**common, **overrides}
        )

    # The sales and the contacts need only the clean customer ids: side by side (GX itself
    # validates one frame at a time; the checks and cleansing around it overlap). The
    # previous month is cleansed by the same rules (for growth and retention) but is not
    # this period's data, so its findings stay out of this period's report.
    transactions, interactions, previous = run_side_by_side(
        partial(validated, "transactions", "stg_transactions"),
        partial(validated, "interactions", "stg_interactions"),
        partial(validated, "transactions", "stg_transactions_prev", period=run.period.previous()),
    )
    outcomes = {"customers": customers, "transactions": transactions, "interactions": interactions}
    filter_counts = staging.read_json("filter_counts")
    filter_quarantine = staging.read("quarantine_filter")
    extracted = {
        source: counts["in_period"] + counts["event_time_missing"] for source, counts in filter_counts.items()
    }
    freshness_inputs = {
        "customers": stg_customers["updated_at"].max() if len(stg_customers) else None,
        "transactions": outcomes["transactions"].clean["order_date"].max() if len(outcomes["transactions"].clean) else None,
        "interactions": outcomes["interactions"].clean["interaction_date"].max() if len(outcomes["interactions"].clean) else None,
    }
    assert_accounting(list(outcomes.values()), filter_quarantine, extracted)  # nothing lost
    report = build_report(
        list(outcomes.values()),
        filter_quarantine,
        extracted,
        run_time=run.run_time,
        freshness_inputs=freshness_inputs,
        sample_values=config.quality.sample_values,
    )
    for source, outcome in outcomes.items():
        staging.write(source, outcome.clean)
    staging.write("transactions_prev", previous.clean)
    quarantine = pd.concat([filter_quarantine] + [o.quarantine for o in outcomes.values()], ignore_index=True)
    staging.write("quarantine", quarantine)
    staging.write("quality_report", report)
    breaches = check_thresholds(report, config.quality)
    staging.write_json(
        "quality",
        {"breaches": [b.__dict__ for b in breaches], "rows": {s: o.rows_used for s, o in outcomes.items()}},
    )
    publish_table("quality-report", report, f"data quality report, {run.period.label}")
    for source, outcome in outcomes.items():
        publish_preview(
            "validate-data", source, outcome.clean,
            {"rows in": outcome.rows_in, "used": outcome.rows_used, "quarantined": outcome.rows_quarantined},
        )
    rows_in = sum(extracted.values())
    rows_out = sum(o.rows_used for o in outcomes.values())
    _log_stage("validate_data", rows_in, rows_out, len(quarantine), started)
    logger = get_run_logger()
    for breach in breaches:
        (logger.error if breach.action == "fail" else logger.warning)("quality: %s", breach.message)
    failing = [b for b in breaches if b.action == "fail"]
    if failing:
        raise QualityThresholdError(
            "quality threshold crossed, nothing delivered: " + "; ".join(b.message for b in failing)
        )
    return {"rows_in": rows_in, "rows_used": rows_out, "quarantined": len(quarantine),
            "warnings": [b.message for b in breaches]}


def countable_history(history: pd.DataFrame, rates: dict, reporting_currency: str) -> pd.DataFrame:
    """History under the same currency rules as validation: a missing currency is the
    reporting currency; an unknown one is never counted (its rows are quarantined when
    they fall in a reported period)."""
    currency = history["currency"].fillna(reporting_currency)
    return history.assign(currency=currency)[currency.isin(list(rates))].reset_index(drop=True)


@task(name="compute-customer-metrics")
def compute_customer_metrics(config_path: str, period: str, run_id: str) -> dict[str, int]:
    started = time.perf_counter()
    run = RunContext.build(config_path, period, run_id)
    run.inject_fault("calculate_metrics")
    staging, config = run.staging, run.config
    customers = staging.read("customers")
    customers_in = len(customers)
    performance = customer_metrics(
        customers,
        staging.read("transactions"),
        staging.read("transactions_prev"),
        staging.read("interactions"),
        countable_history(staging.read("stg_history"), config.rates(), config.reporting_currency),
        period=run.period,
        as_of=run.as_of,
        rates=config.rates(),
        config=config.metrics,
    )
    del customers  # not held through the metrics suite (10⁶ customers: ~200 MB)
    # The table is written while its suite checks it (neither changes it).
    _, metrics_report = run_side_by_side(
        partial(staging.write, "customer_performance", performance),
        partial(validate_metrics, performance, sample_values=config.quality.sample_values),
    )
    staging.write("quality_report_metrics", metrics_report)
    publish_preview("calculate-metrics", "customer-performance", performance, {"customers": len(performance)})
    failed = metrics_report[~metrics_report["success"].astype(bool)]
    if len(failed):
        get_run_logger().warning("metrics suite: %d expectation(s) failed: %s", len(failed), ", ".join(failed["rule"]))
    _log_stage("calculate_metrics", customers_in, len(performance), 0, started)
    return {"customers": len(performance)}


@task(name="aggregate-performance")
def aggregate_performance(config_path: str, period: str, run_id: str) -> dict[str, int]:
    started = time.perf_counter()
    run = RunContext.build(config_path, period, run_id)
    run.inject_fault("aggregate")
    staging, config = run.staging, run.config
    performance = staging.read("customer_performance")
    transactions = staging.read("transactions")
    interactions = staging.read("interactions")
    transactions_prev = staging.read("transactions_prev")
    common = dict(period=run.period, rates=config.rates(), config=config.metrics)

    def regional_and_insights() -> tuple[pd.DataFrame, dict]:
        regional = regional_summary(performance, transactions, transactions_prev, **common)
        return regional, business_insights(performance, regional, interactions)

    # Two readers of the same frames, sharing nothing else: side by side.
    (regional, insights), trends = run_side_by_side(
        regional_and_insights,
        partial(performance_trends, performance, transactions, interactions, **common),
    )
    staging.write("regional_summary", regional)
    staging.write("performance_trends", trends)
    staging.write_json("insights", insights)
    publish_preview("aggregate", "regional-summary", regional, {"rows": len(regional)})
    publish_preview("aggregate", "performance-trends", trends, {"rows": len(trends)})
    _log_stage("aggregate", len(performance), len(regional) + len(trends), 0, started)
    return {"regional_summary": len(regional), "performance_trends": len(trends)}
