"""The delivery tasks (SPEC §8): analytics DB, CSV export, dashboard + BI push, e-mail.

Order matters: the loads come first and are each atomic; the e-mail comes last, so a
failed send fails its own task, visibly, and never undoes a load.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pandas as pd
from prefect import task
from prefect.events import emit_event
from prefect.logging import get_run_logger
from prefect.tasks import exponential_backoff

from tasks.alerts import Alert, detect_alerts
from tasks.bi_push import build_payload, idempotency_key_for, push_dashboard
from tasks.connections import describe, engine_for
from tasks.dashboard import render_dashboard, write_dashboard
from tasks.export_csv import csv_name, write_csv
from tasks.load import append_quality_history, load_period
from tasks.notify import compose_report_email, summary_body, write_eml
from tasks.quality_report import summary_value
from tasks.retry import retry_on_transient
from tasks.run_context import RunContext
from tasks.settings import (
    CUSTOMER_PERFORMANCE_COLUMNS,
    QUALITY_REPORT_COLUMNS,
    REGIONAL_SUMMARY_COLUMNS,
    SUMMARY_RULES,
)
from tasks.smtp_delivery import send_email

IO_RETRIES = dict(
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=2),
    retry_jitter_factor=0.5,
    retry_condition_fn=retry_on_transient,
)


def quality_report(run: RunContext) -> pd.DataFrame:
    """The sources' report followed by the metrics suite's rows."""
    frames = [run.staging.read("quality_report")]
    if run.staging.exists("quality_report_metrics"):
        frames.append(run.staging.read("quality_report_metrics"))
    return pd.concat(frames, ignore_index=True)[list(QUALITY_REPORT_COLUMNS)]


def _summary_rows(report: pd.DataFrame, run: RunContext) -> pd.DataFrame:
    """The run's summary figures, one row per (source, rule), for data_quality_history."""
    summary = report[report["rule"].isin(SUMMARY_RULES)].reset_index(drop=True)
    return pd.DataFrame(
        {
            "run_id": run.run_id,
            "period": str(run.period),
            "run_time": run.run_time,
            "source": summary["source"].astype("string"),
            "rule": summary["rule"].astype("string"),
            "value": pd.Series([summary_value(row) for _, row in summary.iterrows()], dtype="float64"),
            "failed": pd.to_numeric(summary["failed"], errors="coerce"),
            "evaluated": pd.to_numeric(summary["evaluated"], errors="coerce"),
        }
    )


def quality_overview(report: pd.DataFrame) -> dict[str, float | int | None]:
    """Overall completeness, accuracy (ratios) and rows quarantined, for the e-mail."""
    rows = {row["rule"]: row for _, row in report[report["source"] == "all"].iterrows()}
    figures: dict[str, float | int | None] = {
        rule: summary_value(rows[rule]) if rule in rows else None for rule in ("completeness", "accuracy")
    }
    figures["quarantined"] = int(rows["quarantined"]["failed"]) if "quarantined" in rows else None
    return figures


@task(name="load-analytics-db", **IO_RETRIES)
def load_analytics(config_path: str, period: str, run_id: str) -> dict[str, object]:
    """Replace the period's tables in the analytics DB in one transaction."""
    started = time.perf_counter()
    run = RunContext.build(config_path, period, run_id)
    run.inject_fault("load")
    destination = run.config.destinations.analytics
    engine = engine_for(destination.connection, run.config)
    try:
        frames = {
            "customer_performance": run.staging.read("customer_performance"),
            "regional_summary": run.staging.read("regional_summary"),
            "performance_trends": run.staging.read("performance_trends"),
            "data_quality_issues": run.staging.read("quarantine"),
        }
        result = load_period(
            engine, frames, run.period, schema=destination.schema_name,
            retention_months=destination.retention_months,
        )
        append_quality_history(engine, _summary_rows(quality_report(run), run), schema=destination.schema_name)
    finally:
        engine.dispose()
    logger = get_run_logger()
    for name in result["dropped"]:  # type: ignore[union-attr]
        logger.info("retention: dropped %s", name)
    logger.info(
        "load to %s: %s in %.2f s", describe(destination.connection),
        ", ".join(f"{k}={v:,}" for k, v in result["loaded"].items()),  # type: ignore[union-attr]
        time.perf_counter() - started,
    )
    return result


def csv_exports(run: RunContext) -> list[tuple[str, pd.DataFrame, tuple[str, ...]]]:
    """The CSVs of SPEC §8.3: (file kind, frame, columns), in the order they are sent."""
    return [
        ("customer_performance", run.staging.read("customer_performance"), CUSTOMER_PERFORMANCE_COLUMNS),
        ("regional_summary", run.staging.read("regional_summary"), REGIONAL_SUMMARY_COLUMNS),
        ("data_quality_report", quality_report(run), QUALITY_REPORT_COLUMNS),
    ]


@task(name="export-csv")
def export_csvs(config_path: str, period: str, run_id: str) -> list[str]:
    run = RunContext.build(config_path, period, run_id)
    paths = [
        write_csv(frame, run.output_dir / csv_name(kind, run.period.label), columns)
        for kind, frame, columns in csv_exports(run)
    ]
    get_run_logger().info("csv export: %s", ", ".join(str(p) for p in paths))
    return [str(p) for p in paths]


def alerts_for(run: RunContext) -> list[Alert]:
    quality = quality_report(run)
    performance = run.staging.read("customer_performance")
    previous_total = float(pd.to_numeric(performance["revenue_prev_period"], errors="coerce").sum())
    current_total = float(pd.to_numeric(performance["total_revenue"], errors="coerce").sum())
    return detect_alerts(
        trends=run.staging.read("performance_trends"),
        current_revenue=current_total,
        previous_revenue=previous_total if previous_total > 0 else None,
        quality_report=quality,
        dashboard=run.config.destinations.dashboard,
        quality=run.config.quality,
        timezone=run.config.timezone,
    )


@task(name="build-dashboard")
def build_dashboard(config_path: str, period: str, run_id: str) -> dict[str, object]:
    """Write the offline HTML dashboard; emit each alert as a Prefect event."""
    run = RunContext.build(config_path, period, run_id)
    alerts = alerts_for(run)
    html = render_dashboard(
        period_label=run.period.label,
        customer_performance=run.staging.read("customer_performance"),
        regional_summary=run.staging.read("regional_summary"),
        performance_trends=run.staging.read("performance_trends"),
        quality_report=quality_report(run),
        insights=run.staging.read_json("insights"),
        alerts=alerts,
        transactions=run.staging.read("transactions"),
        currency=run.config.reporting_currency,
        timezone=run.config.timezone,
    )
    path = run.output_dir / f"dashboard_{run.period.label}.html"
    write_dashboard(html, path)
    for alert in alerts:
        emit_event(
            event=f"customer-performance.alert.{alert.kind}",
            resource={"prefect.resource.id": f"customer-performance.{run.period}", "prefect.resource.name": f"customer performance {run.period}"},
            payload=dataclasses.asdict(alert),
        )
    run.staging.write_json("alerts", {"alerts": [dataclasses.asdict(a) for a in alerts]})
    get_run_logger().info("dashboard: %s (%d alerts)", path, len(alerts))
    return {"path": str(path), "alerts": len(alerts)}


@task(name="push-bi-dashboard", retries=1, retry_delay_seconds=30, retry_condition_fn=retry_on_transient)
def push_bi(config_path: str, period: str, run_id: str) -> str:
    run = RunContext.build(config_path, period, run_id)
    block_name = run.config.destinations.dashboard.bi_api_block
    if block_name is None:
        get_run_logger().info("BI push: no bi_api_block configured; the HTML dashboard is the BI output")
        return "skipped"
    from blocks.bi_api import BiApiCredentials

    payload = build_payload(
        period=str(run.period),
        customer_performance=run.staging.read("customer_performance"),
        regional_summary=run.staging.read("regional_summary"),
        performance_trends=run.staging.read("performance_trends"),
        quality_report=quality_report(run),
        insights=run.staging.read_json("insights"),
        alerts=alerts_for(run),
        pipeline=run.config.pipeline,
        run_id=run.run_id,
        currency=run.config.reporting_currency,
        timezone=run.config.timezone,
    )
    key = idempotency_key_for(run.config.pipeline, str(run.period), run.run_id)
    with BiApiCredentials.load(block_name).get_client() as client:
        push_dashboard(client, payload, idempotency_key=key)
    get_run_logger().info("BI push: sent %s (idempotency key %s)", run.period, key)
    return key


@task(name="email-report")
def email_report(config_path: str, period: str, run_id: str, files: list[str]) -> str:
    """Mail the CSVs with the summary; in the demo, write the message to the outbox."""
    run = RunContext.build(config_path, period, run_id)
    run.inject_fault("email")
    email = run.config.destinations.email
    report = quality_report(run)
    overall = quality_overview(report)
    alerts = run.staging.read_json("alerts")["alerts"] if (run.staging.folder / "alerts.json").exists() else []
    text, html = summary_body(run.period.label, run.staging.read_json("insights"), overall, alerts, [Path(f).name for f in files])
    message = compose_report_email(
        sender=email.sender,
        recipients=email.recipients,
        subject=f"Customer performance report: {run.period.label}",
        body_text=text,
        body_html=html,
        attachments=[Path(f) for f in files],
        zip_above_bytes=email.zip_above_bytes,
    )
    if email.smtp_block is None:
        path = write_eml(message, run.output_dir / email.outbox)
        get_run_logger().info("e-mail written to the outbox: %s", path)
        return str(path)
    from prefect_email import EmailServerCredentials

    send_email(message, EmailServerCredentials.load(email.smtp_block), timeout_seconds=email.timeout_seconds)
    get_run_logger().info("e-mail sent to %d recipient(s)", len(email.recipients))
    return "sent"
