"""One measured run of the real pipeline (Prefect flow included), in a fresh process.

    python -m bench.pipeline_probe --config pipeline.yaml --crm-url URL --token T --out run.json
        [--mode single|scale-out] [--partitions K]

It registers the CRM block (not timed), starts an RSS sampler, calls the flow, then reads
back from the Prefect API when each task ran. Per stage it reports seconds (the task run's
start to end; the three concurrent extracts count once, first start to last end), rows
(from the staged Parquet files' metadata) and the peak RSS reached meanwhile.

Whole-run lines: `startup` (a cold interpreter to the first task starting: imports, the
ephemeral API server, which the block registration boots, the flow run, the config check)
and `orchestration` (the rest of the wall time not spent inside any task: sub-flow runs,
state transitions, result persistence).
"""

from __future__ import annotations

import time

PROCESS_STARTED = time.time()  # before the heavy imports: they are part of a cold start

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import uuid  # noqa: E402
from datetime import datetime  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import pyarrow.feather as feather  # noqa: E402

from bench.measure import MB, RssSampler, peak_rss_self  # noqa: E402
from tasks.staging import SUFFIX  # noqa: E402

# The scale-out flow runs partition_chain (filter → validate → metrics per partition) and
# combine instead of the three middle stages.
DATA_STAGES = ("extract", "filter_period", "validate_data", "calculate_metrics", "partition_chain", "combine",
               "aggregate", "load", "export")
OTHER_STAGES = ("dashboard", "bi_push", "email", "summary")
# task name prefix -> stage
TASK_STAGES = {
    "extract-": "extract",
    "partition-": "partition_chain",
    "combine-partitions": "combine",
    "apply-period-filter": "filter_period",
    "validate-sources": "validate_data",
    "compute-customer-metrics": "calculate_metrics",
    "aggregate-performance": "aggregate",
    "load-analytics-db": "load",
    "export-csv": "export",
    "build-dashboard": "dashboard",
    "push-bi-dashboard": "bi_push",
    "email-report": "email",
    "publish-run-summary": "summary",
}
# Staged frames whose rows each stage handles (its inputs; the load and export: what they write).
STAGE_ROWS = {
    "extract": ("raw_customers", "raw_transactions", "raw_interactions", "history"),
    "filter_period": ("raw_customers", "raw_transactions", "raw_interactions", "history"),
    "validate_data": ("stg_customers", "stg_transactions", "stg_interactions", "stg_transactions_prev"),
    "calculate_metrics": ("customers", "transactions", "transactions_prev", "interactions", "stg_history"),
    "partition_chain": ("raw_customers", "raw_transactions", "raw_interactions", "history"),
    "combine": ("customer_performance",),
    "aggregate": ("customer_performance", "transactions", "interactions"),
    "load": ("customer_performance", "regional_summary", "performance_trends", "quarantine"),
    "export": ("customer_performance", "regional_summary", "quality_report"),
}


def stage_of(task_run_name: str) -> str | None:
    for prefix, stage in sorted(TASK_STAGES.items(), key=lambda item: -len(item[0])):
        if task_run_name.startswith(prefix):
            return stage
    return None


def staged_rows(folder: Path, names: tuple[str, ...]) -> int:
    """Rows of the staged frames (read after the run, untimed)."""
    total = 0
    for name in names:
        path = folder / f"{name}{SUFFIX}"
        if path.exists():
            total += feather.read_table(str(path), columns=[]).num_rows
    return total


def _epoch(moment: datetime | None) -> float | None:
    return moment.timestamp() if moment is not None else None


def task_intervals(since: float) -> list[tuple[str, float, float]]:
    """(task run name, start, end) of every task run that started after `since`."""
    from prefect.client.orchestration import get_client

    intervals = []
    with get_client(sync_client=True) as client:
        offset = 0
        while True:
            batch = client.read_task_runs(limit=200, offset=offset)
            for run in batch:
                start, end = _epoch(run.start_time), _epoch(run.end_time)
                if start is not None and end is not None and start >= since - 1:
                    intervals.append((run.name, start, end))
            if len(batch) < 200:
                break
            offset += 200
    return intervals


def covered_seconds(spans: list[tuple[float, float]]) -> float:
    """Seconds covered by at least one of `spans` (overlapping spans count once)."""
    covered, reach = 0.0, float("-inf")
    for start, end in sorted(spans):
        if end > reach:
            covered += end - max(start, reach)
            reach = end
    return covered


def stage_table(intervals: list[tuple[str, float, float]], sampler: RssSampler,
                staging: Path) -> list[dict[str, Any]]:
    spans: dict[str, list[tuple[float, float]]] = {}
    for name, start, end in intervals:
        stage = stage_of(name)
        if stage is not None:
            spans.setdefault(stage, []).append((start, end))
    table = []
    for stage in (*DATA_STAGES, *OTHER_STAGES):
        if stage not in spans:
            continue
        start = min(s for s, _ in spans[stage])
        end = max(e for _, e in spans[stage])
        rows = staged_rows(staging, STAGE_ROWS[stage]) if stage in STAGE_ROWS else 0
        table.append({"stage": stage, "seconds": end - start, "rows": rows,
                      "peak_rss_mb": round(sampler.peak(start, end) / MB, 1),
                      "tasks": len(spans[stage]), "start": start})
    return table


def register_crm_block(url: str, token: str) -> None:
    from pydantic import SecretStr

    from bench.bench_config import CRM_BLOCK
    from blocks.crm_api import CrmApiCredentials

    CrmApiCredentials(base_url=url, auth_kind="bearer", token=SecretStr(token)).save(CRM_BLOCK, overwrite=True)


def run(config: str, mode: str, partitions: int, run_id: str) -> dict[str, Any]:
    from tasks.config_file import load_and_check

    cfg = load_and_check(config)
    sampler = RssSampler(include_children=(mode == "scale-out")).start()
    called = time.time()
    if mode == "scale-out":
        from flows.scale_out import customer_performance_scaled

        summary = customer_performance_scaled(config_path=config, run_id=run_id, partitions=partitions)
    else:
        from flows.main import customer_performance

        summary = customer_performance(config_path=config, run_id=run_id)
    finished = time.time()
    sampler.stop()
    staging = cfg.resolve_path(cfg.staging_url) / cfg.pipeline / summary["period"] / run_id
    intervals = task_intervals(called)
    stages = stage_table(intervals, sampler, staging)
    first_task = min((start for _, start, _ in intervals), default=finished)
    stage_sum = sum(s["seconds"] for s in stages if s["stage"] in DATA_STAGES)
    # Stages that run side by side (the load and the CSV export) count their overlap once.
    data_work = covered_seconds(
        [(start, end) for name, start, end in intervals if stage_of(name) in DATA_STAGES]
    )
    other_tasks = sum(s["seconds"] for s in stages if s["stage"] not in DATA_STAGES)
    flow_wall = finished - called
    startup = first_task - PROCESS_STARTED
    return {
        "mode": mode,
        "partitions": partitions if mode == "scale-out" else 1,
        "run_id": run_id,
        "stages": stages,
        "data_work_s": data_work,
        "data_work_overlap_s": stage_sum - data_work,
        "other_tasks_s": other_tasks,
        "startup_s": startup,
        "orchestration_s": finished - first_task - data_work - other_tasks,
        "flow_wall_s": flow_wall,
        "total_wall_s": finished - PROCESS_STARTED,
        "peak_rss_mb": round(max(sampler.peak(), peak_rss_self() if mode != "scale-out" else 0) / MB, 1),
        "task_runs": [{"name": n, "start": s - called, "seconds": e - s} for n, s, e in sorted(intervals, key=lambda i: i[1])],
        "csv_folder": str(cfg.resolve_path(cfg.output_dir)),
        "period_label": summary["label"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="One measured pipeline run.")
    parser.add_argument("--config", required=True)
    parser.add_argument("--crm-url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--out", type=Path, default=Path(os.devnull))
    parser.add_argument("--mode", choices=["single", "scale-out"], default="single")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--register-only", action="store_true", help="warm-up: create the API database and block")
    args = parser.parse_args(argv)
    register_crm_block(args.crm_url, args.token)  # boots the ephemeral API: part of start-up
    if args.register_only:
        return 0
    result = run(args.config, args.mode, args.partitions, str(uuid.uuid4()))
    args.out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
