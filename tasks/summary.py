"""The run summary: the markdown artifact and the closing lines of the log."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.logging import get_run_logger

from tasks.artifacts import publish_markdown
from tasks.run_context import RunContext


def _money(value: Any) -> str:
    return f"{float(value):,.2f}" if value is not None else "n/a"


def _share(value: Any) -> str:
    return f"{float(value):.1%}" if value is not None else "n/a"


def summary_markdown(run: RunContext, stage_counts: dict[str, Any], insights: dict[str, Any], delivered: dict[str, Any]) -> str:
    totals = insights.get("totals", {})
    lines = [
        f"# Customer performance, {run.period.label} (run {run.run_id})",
        "",
        "| stage | result |",
        "| --- | --- |",
    ]
    for stage, counts in stage_counts.items():
        lines.append(f"| {stage} | {counts} |")
    lines += [
        "",
        f"- revenue: **{_money(totals.get('revenue'))} USD**, customers {totals.get('customers')}, "
        f"active {totals.get('active_customers')}, transactions {totals.get('transactions')}",
        f"- top 20 % of buyers bring {_share(insights.get('pareto', {}).get('revenue_share'))} of revenue",
        "",
        "Outputs:",
    ]
    lines += [f"- `{path}`" for path in delivered.get("files", [])]
    lines.append(f"- `{delivered.get('dashboard', {}).get('path')}`")
    lines.append(f"- e-mail: `{delivered.get('email')}`")
    return "\n".join(lines)


@task(name="publish-run-summary")
def publish_run_summary(config_path: str, period: str, run_id: str, stage_counts: dict[str, Any], delivered: dict[str, Any]) -> dict[str, Any]:
    run = RunContext.build(config_path, period, run_id)
    insights = run.staging.read_json("insights")
    markdown = summary_markdown(run, stage_counts, insights, delivered)
    publish_markdown("run-summary", markdown, f"customer performance {run.period.label}")
    logger = get_run_logger()
    totals = insights.get("totals", {})
    logger.info(
        "summary %s: revenue %s USD, %s customers (%s active), %s transactions",
        run.period.label, _money(totals.get("revenue")), totals.get("customers"),
        totals.get("active_customers"), totals.get("transactions"),
    )
    for path in delivered.get("files", []):
        logger.info("output: %s", path)
    return {"period": str(run.period), "label": run.period.label, "run_id": run_id, "totals": totals, "delivered": delivered}
