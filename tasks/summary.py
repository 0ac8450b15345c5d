"""The run summary: the markdown artifact and the closing lines of the parent run's log.

The parent run's page in the Prefect UI shows only its own logs, not its sub-flows', so
the summary repeats one line per stage there (rows in, rows out, rows quarantined,
seconds; SPEC §9), and the `run-summary` artifact shows the same as a table, followed by
the headline figures, data quality and the outputs.

Rows come from what each stage returned; seconds come from the Prefect API (each stage
sub-flow's run time; for the extracts, the slowest of the three concurrent task runs). On
a retried run, a stage reused from the first attempt shows that attempt's time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import pandas as pd
from prefect import task
from prefect.logging import get_run_logger

from tasks.artifacts import publish_markdown
from tasks.run_context import RunContext
from tasks.settings import SUMMARY_RULES

log = logging.getLogger(__name__)

STAGES = ("extract", "filter_period", "validate_data", "calculate_metrics", "aggregate", "deliver")
EXTRACT_TASK_PREFIX = "extract-"  # tasks.extract: task_run_name="extract-{source_name}"
FAILED_RULES_SHOWN = 10


@dataclass(frozen=True)
class StageFigures:
    """One stage's line of the summary; None where the stage does not report a figure."""

    stage: str
    rows_in: int | None = None
    rows_out: int | None = None
    quarantined: int | None = None
    seconds: float | None = None
    run_name: str | None = None


@dataclass(frozen=True)
class StageTiming:
    seconds: float
    run_name: str | None = None


def _total(values: Any) -> int:
    return sum(int(v) for v in values)


def stage_rows(stage: str, counts: Any) -> tuple[int | None, int | None, int | None]:
    """(rows in, rows out, quarantined) from what a stage returned; None when not reported.

    The shapes are those of tasks.extract, tasks.stages and flows.stages.deliver. An
    unknown shape gives Nones, never an error: a summary must not fail a finished run.
    """
    try:
        if stage == "extract":  # {source: {"raw_<source>": n, "history": m}}
            return (
                None,
                _total(n for c in counts.values() for k, n in c.items() if k.startswith("raw_")),
                None,
            )
        if stage == "filter_period":  # {source: {extracted, in_period, event_time_missing, ...}}
            return (
                _total(c["extracted"] for c in counts.values()),
                _total(c["in_period"] for c in counts.values()),
                _total(c["event_time_missing"] for c in counts.values()),
            )
        if stage == "validate_data":  # its quarantine includes the filter's
            return int(counts["rows_in"]), int(counts["rows_used"]), int(counts["quarantined"])
        if stage in ("calculate_metrics", "aggregate"):  # {output name: rows}
            return None, _total(counts.values()), None
        if stage == "deliver":  # rows loaded into the analytics DB
            return None, _total(counts["loaded"]["loaded"].values()), None
    except (AttributeError, KeyError, TypeError, ValueError):
        log.debug("stage %s returned an unexpected shape: %r", stage, counts)
    return None, None, None


def stage_figures(
    stage_counts: dict[str, Any], timings: dict[str, StageTiming]
) -> list[StageFigures]:
    """One StageFigures per stage, in pipeline order (stages not in stage_counts last)."""
    order = [s for s in STAGES if s in stage_counts] + [s for s in stage_counts if s not in STAGES]
    figures = []
    for stage in order:
        rows_in, rows_out, quarantined = stage_rows(stage, stage_counts[stage])
        timing = timings.get(stage)
        figures.append(
            StageFigures(
                stage,
                rows_in,
                rows_out,
                quarantined,
                timing.seconds if timing else None,
                timing.run_name if timing else None,
            )
        )
    return figures


NOT_REPORTED = "-"


def _count(value: int | None) -> str:
    return f"{value:,}" if value is not None else NOT_REPORTED


def _seconds(value: float | None) -> str:
    return f"{value:.2f} s" if value is not None else NOT_REPORTED


def stage_log_line(figures: StageFigures) -> str:
    """The per-stage log line (SPEC §9), in the same words as the stages' own lines."""
    return (
        f"{figures.stage}: rows in {_count(figures.rows_in)}, rows out {_count(figures.rows_out)}, "
        f"quarantined {_count(figures.quarantined)}, {_seconds(figures.seconds)}"
    )


def _money(value: Any) -> str:
    return f"{float(value):,.2f}" if value is not None else "n/a"


def _share(value: Any) -> str:
    return f"{float(value):.1%}" if value is not None else "n/a"


def failed_rules(report: pd.DataFrame, limit: int = FAILED_RULES_SHOWN) -> list[str]:
    """'source.rule: failed of evaluated' for each failed expectation (not the summary rows:
    completeness, accuracy... are figures shown on their own line)."""
    rows = report[~report["rule"].isin(SUMMARY_RULES) & ~report["success"].astype(bool)]
    return [
        f"{row['source']}.{row['rule']}: {int(row['failed']):,} of {int(row['evaluated']):,}"
        for _, row in rows.head(limit).iterrows()
    ]


def summary_markdown(
    *,
    period_label: str,
    run_id: str,
    currency: str,
    figures: list[StageFigures],
    insights: dict[str, Any],
    quality: dict[str, Any],
    failed: list[str],
    delivered: dict[str, Any],
) -> str:
    totals = insights.get("totals", {})
    lines = [
        f"# Customer performance, {period_label}",
        "",
        f"Run `{run_id}`.",
        "",
        "| stage | rows in | rows out | quarantined | seconds | run |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    lines += [
        f"| {f.stage} | {_count(f.rows_in)} | {_count(f.rows_out)} | {_count(f.quarantined)} "
        f"| {_seconds(f.seconds)} | {f.run_name or ''} |"
        for f in figures
    ]
    lines += [
        "",
        f"- revenue: **{_money(totals.get('revenue'))} {currency}**, customers {_count(totals.get('customers'))}, "
        f"active {_count(totals.get('active_customers'))}, transactions {_count(totals.get('transactions'))}",
        f"- top 20 % of buyers bring {_share(insights.get('pareto', {}).get('revenue_share'))} of revenue",
        f"- data quality: completeness {_share(quality.get('completeness'))}, accuracy "
        f"{_share(quality.get('accuracy'))}, rows quarantined {_count(quality.get('quarantined'))}",
    ]
    if failed:
        lines += ["", "Failed expectations (see the quality-report artifact):", ""]
        lines += [f"- {item}" for item in failed]
    lines += ["", "Outputs:", ""]
    lines += [f"- `{path}`" for path in delivered.get("files", [])]
    dashboard = delivered.get("dashboard", {})
    if isinstance(dashboard, dict) and dashboard.get("path"):
        lines.append(f"- `{dashboard['path']}` ({dashboard.get('alerts', 0)} alerts)")
    if delivered.get("email"):
        lines.append(f"- e-mail: `{delivered['email']}`")
    return "\n".join(lines)


def stage_timings(flow_run_id: Any) -> dict[str, StageTiming]:
    """Each stage's run time from the Prefect API: its completed sub-flow run (the latest,
    on a retried run), and for the extracts the slowest task run that really executed."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterId,
        FlowRunFilter,
        FlowRunFilterId,
        FlowRunFilterParentFlowRunId,
        TaskRunFilter,
        TaskRunFilterName,
    )

    timings: dict[str, StageTiming] = {}
    with get_client(sync_client=True) as client:
        children = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run_id])
            )
        )
        flow_ids = list({child.flow_id for child in children})
        names = (
            {
                f.id: f.name
                for f in client.read_flows(flow_filter=FlowFilter(id=FlowFilterId(any_=flow_ids)))
            }
            if flow_ids
            else {}
        )
        completed = [c for c in children if c.state is not None and c.state.is_completed()]
        # Oldest first, so the latest completed run of a stage wins (a completed run has
        # an end time).
        for child in sorted(completed, key=lambda c: c.end_time.timestamp() if c.end_time else 0.0):
            timings[names.get(child.flow_id, str(child.flow_id))] = StageTiming(
                child.total_run_time.total_seconds(), child.name
            )
        extracts = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
            task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_=EXTRACT_TASK_PREFIX)),
        )
        executed = [t for t in extracts if t.state is not None and t.state.name == "Completed"]
        if executed:
            timings["extract"] = StageTiming(
                max(t.total_run_time.total_seconds() for t in executed)
            )
    return timings


@task(name="publish-run-summary")
def publish_run_summary(
    config_path: str,
    period: str,
    run_id: str,
    stage_counts: dict[str, Any],
    delivered: dict[str, Any],
) -> dict[str, Any]:
    """Log one line per stage and publish the `run-summary` markdown artifact."""
    from prefect.runtime import flow_run

    from tasks.delivery import quality_overview, quality_report

    run = RunContext.build(config_path, period, run_id)
    logger = get_run_logger()
    insights = run.staging.read_json("insights")
    try:
        timings = stage_timings(flow_run.id) if flow_run.id else {}
    except Exception as exc:  # seconds are a nicety; the summary is still worth having
        logger.warning("stage timings unavailable from the Prefect API: %s", exc)
        timings = {}
    figures = stage_figures({**stage_counts, "deliver": delivered}, timings)
    report = quality_report(run)
    markdown = summary_markdown(
        period_label=run.period.label,
        run_id=run_id,
        currency=run.config.reporting_currency,
        figures=figures,
        insights=insights,
        quality=quality_overview(report),
        failed=failed_rules(report),
        delivered=delivered,
    )
    publish_markdown("run-summary", markdown, f"customer performance {run.period.label}")
    for item in figures:
        logger.info("stage %s", stage_log_line(item))
    totals = insights.get("totals", {})
    logger.info(
        "summary %s: revenue %s %s, %s customers (%s active), %s transactions",
        run.period.label,
        _money(totals.get("revenue")),
        run.config.reporting_currency,
        totals.get("customers"),
        totals.get("active_customers"),
        totals.get("transactions"),
    )
    for path in delivered.get("files", []):
        logger.info("output: %s", path)
    return {
        "period": str(run.period),
        "label": run.period.label,
        "run_id": run_id,
        "totals": totals,
        "delivered": delivered,
    }
