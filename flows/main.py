"""customer_performance: the nightly customer-performance report (the seed's diagram).

    [Customer DB] ─┐
    [CRM API] ─────┼─→ filter_period → validate_data → calculate_metrics → aggregate ─→ deliver
    [Sales DB] ────┘                                         (analytics DB · dashboard · CSV + e-mail)

Run it:  python flows/main.py [--period 2025-07] [--config config/demo.yaml] [--check]
"""

from __future__ import annotations

import argparse
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

if __package__ in (None, ""):  # `python flows/main.py`: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prefect import flow, get_run_logger, task, unmapped
from prefect.runtime import flow_run
from prefect.task_runners import ThreadPoolTaskRunner

from flows.stages import aggregate, calculate_metrics, deliver, filter_period, validate_data
from tasks.artifacts import artifacts_stored_at_the_end
from tasks.config import DEFAULT_CONFIG
from tasks.config_file import load_and_check, resolve_period
from tasks.extract import extract_source
from tasks.gx_suites import load_all_suites
from tasks.settings import SOURCES
from tasks.staging import prune_runs
from tasks.summary import publish_run_summary


@task(name="prepare-demo-data")
def prepare_demo_data(config_path: str) -> str:
    """Generate the embedded demo's sources when the config asks for them and they are missing."""
    from demo.generate import write_demo

    config = load_and_check(config_path)
    if config.demo_data is None:
        return "not a demo config"
    folder = config.resolve_path(config.demo_data.folder)
    if all((folder / name).exists() for name in ("customers.db", "sales.db", "crm.db")):
        return f"demo data present in {folder}"
    write_demo(folder, customers=config.demo_data.customers, seed=config.demo_data.seed)
    return f"demo data generated in {folder}"


@task(name="prune-staging")
def prune_staging(config_path: str, run_id: str) -> list[str]:
    """Remove staged runs last written more than `staging_retention_days` ago (not this one)."""
    config = load_and_check(config_path)
    removed = prune_runs(
        config.resolve_path(config.staging_url), config.pipeline,
        now=datetime.now(UTC), older_than=timedelta(days=config.staging_retention_days),
        keep=run_id,
    )
    if removed:
        get_run_logger().info(
            "staging: removed %d run(s) older than %d days: %s",
            len(removed), config.staging_retention_days, ", ".join(p.name for p in removed),
        )
    return [str(p) for p in removed]


@flow(
    name="customer-performance",
    persist_result=True,  # a retried run reuses finished extracts and stages (issue 6)
    task_runner=ThreadPoolTaskRunner(max_workers=3),  # one per source: polite to source DBs
)
def customer_performance(
    period: str | None = None, config_path: str = str(DEFAULT_CONFIG), run_id: str | None = None
) -> dict:
    """Extract the three sources concurrently, run the four stages in order, deliver."""
    config = load_and_check(config_path, period)  # a bad config fails here, before data moves
    period = str(resolve_period(config, period))
    run_id = run_id or str(flow_run.id or uuid.uuid4())

    load_all_suites()  # a broken expectation suite fails here too, before data moves
    with artifacts_stored_at_the_end():  # the stages' artifacts are sent while they work
        prune_staging(config_path, run_id)
        prepare_demo_data(config_path)
        extracted = extract_source.map(
            list(SOURCES), unmapped(config_path), unmapped(period), unmapped(run_id)
        ).result()  # .result() raises the first failure: the run fails, never "Completed" on None

        stage_counts = {
            "extract": dict(zip(SOURCES, extracted, strict=True)),
            "filter_period": filter_period(config_path, period, run_id),
            "validate_data": validate_data(config_path, period, run_id),
            "calculate_metrics": calculate_metrics(config_path, period, run_id),
            "aggregate": aggregate(config_path, period, run_id),
        }
        delivered = deliver(config_path, period, run_id)
        return publish_run_summary(config_path, period, run_id, stage_counts, delivered)


def check(config_path: str, period: str | None) -> int:
    """--check: validate the config and reach every system; move no data."""
    from tasks.preflight import preflight

    problems = preflight(config_path, period)
    for problem in problems:
        print(f"  - {problem}")
    if problems:
        print(f"config check failed: {len(problems)} problem(s) in {config_path}")
        return 2
    print(f"config check passed: {config_path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--period", help="YYYY-MM (default: the config's, else yesterday's month)")
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="pipeline config (YAML)")
    parser.add_argument("--check", action="store_true", help="validate config and connectivity only")
    parser.add_argument("--run-id", help="reuse a run id (resume its staged data)")
    args = parser.parse_args(argv)
    if args.check:
        return check(args.config, args.period)
    state = customer_performance(
        period=args.period, config_path=args.config, run_id=args.run_id, return_state=True
    )
    try:
        summary = state.result()
    except Exception as exc:  # the reason goes on the last line, for people and schedulers
        run = state.state_details.flow_run_id
        print(f"resume it with: make rerun RUN={run}", file=sys.stderr)
        print(f"customer-performance FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"customer-performance {summary['period']} completed: outputs in {Path(summary['delivered']['files'][0]).parent}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
