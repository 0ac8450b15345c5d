"""The scale benchmark runs end to end at a tiny scale and writes its report (no timings checked).

`python -m bench.run --scale 500 --repeat 1` on the real PostgreSQL and MariaDB: set-up,
the pipeline through Prefect, the naive baseline, the floor, the report; then its
databases are gone. What is asserted is what a reader of the report relies on: every data
stage has a row, the naive baseline computed the very same CSV, and nothing is left behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

pytestmark = pytest.mark.integration

PROJECT = Path(__file__).resolve().parents[2]
DATA_STAGES = (
    "extract",
    "filter_period",
    "validate_data",
    "calculate_metrics",
    "aggregate",
    "load",
    "export",
)


def test_bench_runs_and_writes_its_report(
    tmp_path: Path, pg_admin_url: str, mysql_admin_url: str
) -> None:
    env = {**os.environ, "BENCH_PG_URL": pg_admin_url, "BENCH_MYSQL_URL": mysql_admin_url}
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.run",
            "--scale",
            "500",
            "--repeat",
            "1",
            "--results",
            str(tmp_path),
            "--work-dir",
            str(tmp_path / "work"),
        ],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]

    table = (tmp_path / "scale_500.md").read_text()
    assert table.startswith("### S = 500 (500 customers, 5,000 transactions, 1,500 interactions)")
    for stage in DATA_STAGES:
        assert f"| {stage} |" in table
    assert "orchestrator start-up" in table and "pipeline / floor" in table

    result = json.loads((tmp_path / "scale_500.json").read_text())
    assert [len(result["runs"][kind]) for kind in ("pipeline", "naive", "floor")] == [1, 1, 1]
    # The baseline is a fair one: it computed the same customer_performance CSV, byte for byte.
    assert result["context"]["naive_identical"] is True
    pipeline_rows = {s["stage"]: s["rows"] for s in result["runs"]["pipeline"][0]["stages"]}
    assert (
        pipeline_rows["calculate_metrics"] > 0 and pipeline_rows["load"] >= 500
    )  # 500 customers loaded

    # Nothing left behind: the uniquely named databases and the work folder are gone.
    name = result["context"]["databases"]
    assert name.startswith("cpp_bench_")
    engine = sa.create_engine(pg_admin_url)
    with engine.connect() as connection:
        assert (
            connection.execute(
                sa.text("SELECT count(*) FROM pg_database WHERE datname = :n"), {"n": name}
            ).scalar_one()
            == 0
        )
    engine.dispose()
    engine = sa.create_engine(mysql_admin_url)
    with engine.connect() as connection:
        assert connection.execute(sa.text("SHOW DATABASES LIKE :n"), {"n": name}).fetchall() == []
    engine.dispose()
    assert not (tmp_path / "work").exists()
