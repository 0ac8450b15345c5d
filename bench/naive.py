"""The naive baseline: the same outputs, computed the way a first version usually does it.

It is the pipeline with its data-movement work done naively, nothing else changed:
- extract: `pd.read_sql("SELECT * FROM <table>")` of the whole customers and transactions
  tables (SQLAlchemy + psycopg2 / mysqlclient), no pushdown: every transaction of every
  month is staged; the lifetime history is computed in pandas from the whole table; the CRM
  is read like the pipeline reads it (an API has no "whole table");
- filter → validate → metrics → aggregate: the pipeline's own stage functions, unchanged;
  so the period filter runs in pandas over the whole table (the filter stage handles a
  source that cannot push down), and the later stages do identical work;
- load: `DataFrame.to_sql(if_exists="replace")` per analytics table (SQLAlchemy 2's batched
  INSERTs, 1,000 rows per statement); export: `DataFrame.to_csv` with the pipeline's
  formatting (`render_csv_pandas`: what the pipeline's export did before its Arrow renderer).
The run checks that it produced the pipeline's customer_performance CSV, byte for byte.

One liberty, which favours the baseline: the 10·S-row table is read with a server-side
cursor in chunks of 100,000 and concatenated (`stream_results`). That is 1.2× faster than a
plain `read_sql` and needs 5× less memory (shared/notes/performance-measured.md §3.2).

    python -m bench.naive --config naive.yaml --crm-url URL --token T --out naive.json
"""

from __future__ import annotations

import argparse
import json
import logging
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import sqlalchemy as sa

from bench.measure import MB, RssSampler, StageClock, peak_rss_self
from bench.pipeline_probe import STAGE_ROWS, staged_rows

logger = logging.getLogger(__name__)

CHUNK_ROWS = 100_000


def _quiet_prefect_hooks() -> None:
    """The stage functions log through Prefect's run logger and publish UI artifacts; outside
    a flow run there is neither, so both go to plain logging here."""
    import tasks.delivery as delivery
    import tasks.stages as stages

    def run_logger() -> logging.Logger:
        return logging.getLogger("bench.naive.stage")

    stages.get_run_logger = run_logger  # type: ignore[assignment]
    delivery.get_run_logger = run_logger  # type: ignore[assignment]
    stages.publish_preview = lambda *args, **kwargs: None  # type: ignore[assignment]
    stages.publish_table = lambda *args, **kwargs: None  # type: ignore[assignment]


def read_whole_table(engine: sa.Engine, table: str) -> pd.DataFrame:
    """SELECT * through pandas, streamed in chunks (see the module docstring)."""
    with engine.connect() as connection:
        streaming = connection.execution_options(stream_results=True)
        chunks = list(pd.read_sql(sa.text(f"SELECT * FROM {table}"), streaming, chunksize=CHUNK_ROWS))
    return pd.concat(chunks, ignore_index=True) if chunks else pd.DataFrame()


def history_in_pandas(transactions: pd.DataFrame, as_of: pd.Timestamp, statuses: list[str]) -> pd.DataFrame:
    """Per (customer, currency): first/last completed order before as_of, net amount, count;
    exact duplicate orders counted once (as tasks/history.aggregate_history does)."""
    order_time = pd.to_datetime(transactions["order_date"], utc=True)
    wanted = [s.lower() for s in statuses]
    counted = (
        transactions["status"].astype("string").str.lower().isin(wanted).fillna(False)
        & (pd.to_numeric(transactions["amount"]) > 0)
        & (order_time < as_of).fillna(False)
    )
    orders = transactions.loc[counted.to_numpy(dtype=bool),
                              ["transaction_id", "customer_id", "currency", "order_date", "amount"]]
    orders = orders.assign(discount=pd.to_numeric(transactions.loc[orders.index, "discount_applied"]).fillna(0))
    orders = orders.drop_duplicates()
    orders["net"] = pd.to_numeric(orders["amount"]) - orders["discount"]
    grouped = orders.groupby(["customer_id", "currency"], dropna=False, sort=False)
    return grouped.agg(
        first_order_at=("order_date", "min"), last_order_at=("order_date", "max"),
        net_amount=("net", "sum"), order_count=("transaction_id", "size"),
    ).reset_index()


def run(config_path: str, crm_url: str, token: str) -> dict[str, Any]:
    from tasks.config import RestSource
    from tasks.delivery import csv_exports
    from tasks.export_csv import csv_name, render_csv_pandas
    from tasks.extract_api import fetch_records
    from tasks.run_context import RunContext
    from tasks.settings import CUSTOMER_FIELDS, INTERACTION_FIELDS, TRANSACTION_FIELDS
    from tasks.stages import (
        aggregate_performance,
        apply_period_filter,
        compute_customer_metrics,
        validate_sources,
    )

    _quiet_prefect_hooks()
    run_id = str(uuid.uuid4())
    context = RunContext.build(config_path, None, run_id)
    config, period, staging = context.config, context.period, context.staging
    period_text = str(period)
    customers_url = config.sources["customers"].connection.url  # type: ignore[union-attr]
    sales_url = config.sources["transactions"].connection.url  # type: ignore[union-attr]
    analytics = config.destinations.analytics
    # Libraries load before the clock starts, as in the pipeline (whose flow loads the GX
    # suites before its first task): an import is not data work on either side.
    from tasks.gx_suites import load_all_suites

    load_all_suites()
    sampler = RssSampler().start()
    clock = StageClock(sampler)
    started = time.time()

    with clock.stage("extract") as counter:
        customers_db, sales_db = sa.create_engine(customers_url or ""), sa.create_engine(sales_url or "")
        customers = read_whole_table(customers_db, "customers")
        transactions = read_whole_table(sales_db, "transactions")
        source = config.sources["interactions"]
        assert isinstance(source, RestSource)
        with httpx.Client(base_url=crm_url, headers={"Authorization": f"Bearer {token}"},
                          timeout=source.timeout_seconds) as client:
            interactions = fetch_records(client, source, period.start.to_pydatetime(),
                                         period.end.to_pydatetime(), fields=list(INTERACTION_FIELDS))
        counter["rows"] = len(customers) + len(transactions) + len(interactions)
        staging.write("history", history_in_pandas(transactions, context.as_of, config.metrics.revenue_statuses))
        staging.write("raw_customers", customers[list(CUSTOMER_FIELDS)])
        staging.write("raw_transactions", transactions[list(TRANSACTION_FIELDS)])
        staging.write("raw_interactions", interactions)
        customers_db.dispose()
        sales_db.dispose()
        del customers, transactions, interactions
    with clock.stage("filter_period") as counter:
        counts = apply_period_filter.fn(config_path, period_text, run_id)
        counter["rows"] = sum(c["extracted"] for c in counts.values())
    with clock.stage("validate_data") as counter:
        counter["rows"] = int(validate_sources.fn(config_path, period_text, run_id)["rows_in"])  # type: ignore[call-overload]
    with clock.stage("calculate_metrics") as counter:
        counter["rows"] = compute_customer_metrics.fn(config_path, period_text, run_id)["customers"]
    with clock.stage("aggregate") as counter:
        counter["rows"] = sum(aggregate_performance.fn(config_path, period_text, run_id).values())
    with clock.stage("load") as counter:
        engine = sa.create_engine(analytics.connection.url or "")
        with engine.begin() as connection:
            connection.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{analytics.schema_name}"'))
        for kind, name in (("customer_performance", "customer_performance"),
                           ("regional_summary", "regional_summary"),
                           ("performance_trends", "performance_trends"),
                           ("data_quality_issues", "quarantine")):
            frame = staging.read(name)
            frame.to_sql(f"{kind}_{period.label}", engine, schema=analytics.schema_name,
                         if_exists="replace", index=False)
            counter["rows"] += len(frame)
        engine.dispose()
    export_rows = staged_rows(staging.folder, STAGE_ROWS["export"])
    with clock.stage("export", export_rows):
        context.output_dir.mkdir(parents=True, exist_ok=True)
        for kind, frame, columns in csv_exports(context):
            (context.output_dir / csv_name(kind, period.label)).write_bytes(render_csv_pandas(frame, columns))
    finished = time.time()
    sampler.stop()
    stages = [s.as_dict() for s in clock.stages]
    return {
        "mode": "naive",
        "run_id": run_id,
        "stages": stages,
        "data_work_s": sum(s.seconds for s in clock.stages),
        "total_wall_s": finished - started,
        "peak_rss_mb": round(max(sampler.peak(), peak_rss_self()) / MB, 1),
        "csv_folder": str(context.output_dir),
        "period_label": period.label,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="One measured run of the naive baseline.")
    parser.add_argument("--config", required=True)
    parser.add_argument("--crm-url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    result = run(args.config, args.crm_url, args.token)
    args.out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
