"""Scale-out gives the single-process run's outputs, byte for byte (issue: performance at scale).

Both flows run through Prefect on the embedded demo (SQLite sources, the CRM stand-in), the
scaled one with its per-customer chain on 3 partitions of a Dask LocalCluster (2 worker
processes). The exported CSVs must be byte-identical, and so must what the analytics DB
received. The demo's deliberate defects (duplicates, orphans, garbled dates, bad emails,
out-of-range scores) fall in every partition, so the merged quality report is exercised:
its counts are sums and its sample values are re-drawn in global row order.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
import yaml

from tasks.config import DEFAULT_CONFIG
from tasks.staging import SUFFIX, read_frame

pytestmark = pytest.mark.e2e

CUSTOMERS = 800  # 8,000 transactions, 2,400 interactions: every defect kind occurs
PARTITIONS = 3  # more partitions than workers: tasks queue on the cluster
CSVS = (
    "customer_performance_july2025.csv",
    "regional_summary_july2025.csv",
    "data_quality_report_july2025.csv",
)


def demo_config(tmp_path: Path, name: str, demo_folder: Path) -> str:
    """The demo config with its data, outputs, staging and analytics DB under tmp_path."""
    config = yaml.safe_load(DEFAULT_CONFIG.read_text())
    config["demo_data"] = {"folder": str(demo_folder), "customers": CUSTOMERS, "seed": 11}
    config["sources"]["customers"]["connection"]["url"] = (
        f"sqlite:///{demo_folder / 'customers.db'}"
    )
    config["sources"]["transactions"]["connection"]["url"] = f"sqlite:///{demo_folder / 'sales.db'}"
    config["sources"]["interactions"]["demo_db"] = str(demo_folder / "crm.db")
    config["destinations"]["analytics"]["connection"]["url"] = (
        f"sqlite:///{tmp_path / name / 'analytics.db'}"
    )
    config["output_dir"] = str(tmp_path / name / "output")
    config["staging_url"] = str(tmp_path / name / "staging")
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def analytics_rows(path: Path) -> dict[str, pd.DataFrame]:
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.connect() as connection:
        tables = {
            name: pd.read_sql(sa.text(f'SELECT * FROM "{name}"'), connection)
            for name in (
                "customer_performance_july2025",
                "regional_summary_july2025",
                "performance_trends_july2025",
            )
        }
    engine.dispose()
    return tables


def test_scale_out_matches_single_process(tmp_path: Path, prefect_harness: None) -> None:
    from flows.main import customer_performance
    from flows.scale_out import customer_performance_scaled, local_cluster

    demo_folder = tmp_path / "demo"
    single = demo_config(tmp_path, "single", demo_folder)
    scaled = demo_config(tmp_path, "scaled", demo_folder)

    customer_performance(config_path=single)
    summary = customer_performance_scaled.with_options(task_runner=local_cluster(workers=2))(
        config_path=scaled, partitions=PARTITIONS
    )

    assert summary["period"] == "2025-07"
    for name in CSVS:
        left = (tmp_path / "single" / "output" / name).read_bytes()
        right = (tmp_path / "scaled" / "output" / name).read_bytes()
        assert left == right, f"{name} differs between single-process and scale-out"
    # Not a vacuous comparison: every demo customer is a row, some are vip, and the
    # report carries the demo's defects (the duplicate re-ingestions among them).
    performance = pd.read_csv(tmp_path / "scaled" / "output" / CSVS[0])
    assert len(performance) == CUSTOMERS
    assert (performance["customer_segment"] == "vip").any()
    report = pd.read_csv(tmp_path / "scaled" / "output" / CSVS[2])
    duplicates = report[
        (report["source"] == "transactions") & (report["rule"] == "duplicate_transaction_id")
    ]
    assert int(duplicates["failed"].iloc[0]) > 0
    # Each partition did a share of the customers (the hash spreads them).
    parts = sorted((tmp_path / "scaled" / "staging").glob("*/*/*/part_*"))
    assert len(parts) == PARTITIONS
    sizes = [len(read_frame(p / f"customer_performance{SUFFIX}")) for p in parts]
    assert sum(sizes) == CUSTOMERS and min(sizes) > 0

    single_db = analytics_rows(tmp_path / "single" / "analytics.db")
    scaled_db = analytics_rows(tmp_path / "scaled" / "analytics.db")
    for name, frame in single_db.items():
        pd.testing.assert_frame_equal(frame, scaled_db[name], check_exact=True, obj=name)
