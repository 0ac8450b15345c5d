"""The stage sub-flows (SPEC §2). Each takes JSON parameters only, so any one of them can be
rerun on its own from the staged inputs of the same run:

    prefect flow-run retry <sub-flow run id> --entrypoint flows/stages.py:calculate_metrics
"""

from __future__ import annotations

from prefect import flow

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
    return apply_period_filter(config_path, period, run_id)


@flow(name="validate_data", persist_result=True)
def validate_data(config_path: str, period: str, run_id: str) -> dict:
    """Seed step 3 (run before the metrics, on purpose): GX suites, cleansing, quality report."""
    return validate_sources(config_path, period, run_id)


@flow(name="calculate_metrics", persist_result=True)
def calculate_metrics(config_path: str, period: str, run_id: str) -> dict:
    """Seed step 2: per-customer KPIs, then the metrics suite."""
    return compute_customer_metrics(config_path, period, run_id)


@flow(name="aggregate", persist_result=True)
def aggregate(config_path: str, period: str, run_id: str) -> dict:
    """Seed step 4: regional / segment / category summary, daily and weekly trends, insights."""
    return aggregate_performance(config_path, period, run_id)


@flow(name="deliver", persist_result=True)
def deliver(config_path: str, period: str, run_id: str) -> dict:
    """Seed destinations: analytics DB, then CSVs, dashboard and BI push, then the e-mail last."""
    loaded = load_analytics(config_path, period, run_id)
    files = export_csvs(config_path, period, run_id)
    dashboard = build_dashboard(config_path, period, run_id)
    bi = push_bi(config_path, period, run_id)
    email = email_report(config_path, period, run_id, files)
    return {"loaded": loaded, "files": files, "dashboard": dashboard, "bi": bi, "email": email}
