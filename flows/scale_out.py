"""customer_performance_scaled: the same report, with the per-customer chain on K partitions.

    [sources] → extract ×3 → partition-0 … partition-(K-1) → combine → aggregate → deliver
                             (filter → validate → per-customer metrics, as mapped tasks)

Customers are hash-partitioned (tasks/partition.py); each partition's chain runs as a
mapped task on a Dask cluster (prefect-dask's DaskTaskRunner: a LocalCluster by default,
or any scheduler given by --address). The vip segment and the aggregation need every
customer at once and run on the combined result, so the outputs are byte-identical to
flows/main.py's.

    python flows/scale_out.py --partitions 4 [--workers 2] [--address tcp://host:8786] [--period 2025-07]
"""

from __future__ import annotations

import argparse
import sys
import uuid
from pathlib import Path

if __package__ in (None, ""):  # `python flows/scale_out.py`: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prefect import flow, task, unmapped
from prefect.runtime import flow_run
from prefect_dask import DaskTaskRunner

from flows.main import prepare_demo_data, prune_staging
from flows.stages import aggregate, deliver
from tasks.artifacts import artifacts_stored_at_the_end
from tasks.config import DEFAULT_CONFIG
from tasks.config_file import load_and_check, resolve_period
from tasks.extract import extract_source
from tasks.partition import combine_partitions, run_partition
from tasks.settings import SOURCES
from tasks.stages import QualityThresholdError
from tasks.summary import publish_run_summary

DEFAULT_PARTITIONS = 4
DEFAULT_WORKERS = 2  # one per core on the reference machine


def local_cluster(workers: int = DEFAULT_WORKERS) -> DaskTaskRunner:
    """A Dask LocalCluster of single-threaded worker processes (pandas holds the GIL)."""
    return DaskTaskRunner(cluster_kwargs={"n_workers": workers, "threads_per_worker": 1,
                                          "processes": True, "dashboard_address": ":0"})


@task(name="partition-chain", task_run_name="partition-{partition}")
def partition_chain(config_path: str, period: str, run_id: str, partition: int, partitions: int) -> dict[str, int]:
    """filter → validate → per-customer metrics for one partition's customers (staged in, staged out)."""
    return run_partition(config_path, period, run_id, partition, partitions)


@task(name="combine-partitions")
def combine(config_path: str, period: str, run_id: str, partitions: int) -> dict[str, object]:
    """The partitions' outputs as the single run's: quality report, global vip segment."""
    result = combine_partitions(config_path, period, run_id, partitions)
    if result["failing"]:
        raise QualityThresholdError(
            "quality threshold crossed, nothing delivered: " + "; ".join(result["failing"])  # type: ignore[arg-type]
        )
    return result


@flow(name="customer-performance-scaled", persist_result=True, task_runner=local_cluster())  # type: ignore[arg-type]
def customer_performance_scaled(
    period: str | None = None,
    config_path: str = str(DEFAULT_CONFIG),
    run_id: str | None = None,
    partitions: int = DEFAULT_PARTITIONS,
) -> dict:
    """Extract concurrently, run the per-customer chain per partition, combine, aggregate, deliver."""
    config = load_and_check(config_path, period)
    period = str(resolve_period(config, period))
    run_id = run_id or str(flow_run.id or uuid.uuid4())
    if partitions < 1:
        raise ValueError(f"partitions must be at least 1, not {partitions}")

    with artifacts_stored_at_the_end():
        prune_staging(config_path, run_id)
        prepare_demo_data(config_path)
        extracted = extract_source.map(
            list(SOURCES), unmapped(config_path), unmapped(period), unmapped(run_id)
        ).result()
        chains = partition_chain.map(
            unmapped(config_path), unmapped(period), unmapped(run_id), list(range(partitions)), unmapped(partitions)
        ).result()
        combined = combine(config_path, period, run_id, partitions)
        stage_counts = {
            "extract": dict(zip(SOURCES, extracted, strict=True)),
            "partitions": {"count": partitions, "customers": [c["customers"] for c in chains]},
            "combine": {k: v for k, v in combined.items() if k != "failing"},
            "aggregate": aggregate(config_path, period, run_id),
        }
        delivered = deliver(config_path, period, run_id)
        return publish_run_summary(config_path, period, run_id, stage_counts, delivered)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--period", help="YYYY-MM (default: the config's, else yesterday's month)")
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="pipeline config (YAML)")
    parser.add_argument("--partitions", type=int, default=DEFAULT_PARTITIONS)
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS, help="LocalCluster worker processes")
    parser.add_argument("--address", help="an existing Dask scheduler, e.g. tcp://10.0.0.5:8786")
    args = parser.parse_args(argv)
    runner = DaskTaskRunner(address=args.address) if args.address else local_cluster(args.workers)
    scaled = customer_performance_scaled.with_options(task_runner=runner)  # type: ignore[arg-type]
    try:
        summary = scaled(period=args.period, config_path=args.config, partitions=args.partitions)
    except Exception as exc:  # the reason goes on the last line, for people and schedulers
        print(f"customer-performance-scaled FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"customer-performance-scaled {summary['period']} completed: outputs in "
          f"{Path(summary['delivered']['files'][0]).parent}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
