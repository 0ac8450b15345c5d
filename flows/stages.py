"""The stage sub-flows (SPEC §2). Each takes JSON parameters only, so any one of them can be
rerun on its own from the staged inputs of the same run:

    prefect flow-run retry <sub-flow run id> --entrypoint flows/stages.py:calculate_metrics
"""

from __future__ import annotations

from prefect import flow
from prefect.futures import wait

from tasks.artifacts import artifacts_stored_at_the_end
from tasks.delivery import build_dashboard, email_report, export_csvs, load_analytics, push_bi
from tasks.stages import (
    aggregate_performance,
    apply_period_filter,
    compute_customer_metrics,
    validate_sources,
)


@flow(name="filter_period", persist_result=True)
def filter_period(config_path: str, period: str, run_id: str) -> dict:
    """Seed step 1: keep the period's rows; quarantine rows without an event time."""
    with artifacts_stored_at_the_end():
        return apply_period_filter(config_path, period, run_id)


@flow(name="validate_data", persist_result=True)
def validate_data(config_path: str, period: str, run_id: str) -> dict:
    """Seed step 3 (run before the metrics, on purpose): GX suites, cleansing, quality report."""
    with artifacts_stored_at_the_end():
        return validate_sources(config_path, period, run_id)


@flow(name="calculate_metrics", persist_result=True)
def calculate_metrics(config_path: str, period: str, run_id: str) -> dict:
    """Seed step 2: per-customer KPIs, then the metrics suite."""
    with artifacts_stored_at_the_end():
        return compute_customer_metrics(config_path, period, run_id)


@flow(name="aggregate", persist_result=True)
def aggregate(config_path: str, period: str, run_id: str) -> dict:
    """Seed step 4: regional / segment / category summary, daily and weekly trends, insights."""
    with artifacts_stored_at_the_end():
        return aggregate_performance(config_path, period, run_id)


@flow(name="deliver", persist_result=True)
def deliver(config_path: str, period: str, run_id: str) -> dict:
    """Seed destinations: the analytics DB and the CSVs at once, then the dashboard and BI
    push, then the e-mail last (only once both the load and the CSVs have succeeded).

    The load and the export read the same staged frames and write to different places, so
    they run side by side: the load waits on PostgreSQL while the export formats text. A
    failed load still fails this sub-flow after the CSVs are written; nothing is mailed, and
    the rerun rewrites them.
    """
    with artifacts_stored_at_the_end():
        loading = load_analytics.submit(config_path, period, run_id)
        exporting = export_csvs.submit(config_path, period, run_id)
        wait([loading, exporting])  # neither left running when the other one failed
        loaded, files = loading.result(), exporting.result()
        dashboard = build_dashboard(config_path, period, run_id)
        bi = push_bi(config_path, period, run_id)
        email = email_report(config_path, period, run_id, files)
        return {"loaded": loaded, "files": files, "dashboard": dashboard, "bi": bi, "email": email}
