"""The staging area: atomic Arrow IPC file per frame, clear error on a missing input."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from tasks.staging import SUFFIX, StagingArea, StagingError, prune_runs

pytestmark = pytest.mark.unit


def test_round_trip_and_atomic_write(tmp_path: Path) -> None:
    area = StagingArea(tmp_path, "p", "2025-07", "run1")
    frame = pd.DataFrame({"a": [1, 2], "t": pd.to_datetime(["2025-07-01", None], utc=True)})
    area.write("raw_x", frame)
    pd.testing.assert_frame_equal(area.read("raw_x"), frame)
    area.write("raw_x", frame.head(1))  # replaced whole
    assert len(area.read("raw_x")) == 1
    assert [p.name for p in area.folder.iterdir()] == [f"raw_x{SUFFIX}"]  # no temp files left


def test_a_frame_read_back_outlives_its_file_and_can_be_changed(tmp_path: Path) -> None:
    # Staged files are read memory-mapped. A frame read from one must stay whole when a
    # rerun replaces the file or the retention prunes the run, and the stages that edit
    # what they read (validation nulls bad values) must be able to.
    area = StagingArea(tmp_path, "p", "2025-07", "run1")
    frame = pd.DataFrame(
        {
            "id": pd.Series([f"C{i:06d}" for i in range(50_000)], dtype="string"),
            "amount": [float(i) for i in range(50_000)],
            "n": pd.Series(range(50_000), dtype="Int64"),
        }
    )
    area.write("stg_x", frame)
    back = area.read("stg_x")
    area.write("stg_x", frame.head(3))  # a rerun's write
    for path in area.folder.iterdir():
        path.unlink()
    area.folder.rmdir()  # and the run pruned
    pd.testing.assert_frame_equal(back, frame)
    back.loc[[0, 1], "amount"] = None
    back.loc[[0, 1], "n"] = None
    back.loc[[0, 1], "id"] = None
    assert back["amount"].isna().sum() == 2 and back["n"].isna().sum() == 2 and back["id"].isna().sum() == 2
    pd.testing.assert_frame_equal(back.iloc[2:], frame.iloc[2:])


def test_missing_input_names_the_stage(tmp_path: Path) -> None:
    area = StagingArea(tmp_path, "p", "2025-07", "run1")
    with pytest.raises(StagingError, match="customer_performance"):
        area.read("customer_performance")


def test_names_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        StagingArea(tmp_path, "p", "2025-07", "run1").path("../escape")


def test_an_empty_frame_comes_back_with_its_dtypes_and_still_merges(tmp_path: Path) -> None:
    # An empty stage output (a source with no rows this month) must behave like any frame
    # downstream: the aggregation outer-merges (category, customer) pairs of text columns.
    area = StagingArea(tmp_path, "p", "2025-07", "run1")
    text = pd.Series([], dtype="string")
    empty = pd.DataFrame({"product_category": text, "customer_id": text, "n": pd.Series([], dtype="int64")})
    area.write("pairs", empty)
    back = area.read("pairs")
    pd.testing.assert_frame_equal(back, empty)
    pairs = back[["product_category", "customer_id"]].drop_duplicates()
    merged = pairs.assign(now=True).merge(
        pairs.assign(before=True), how="outer", on=["product_category", "customer_id"]
    )
    assert merged.empty and list(merged.columns) == ["product_category", "customer_id", "now", "before"]


def _run_folder(root: Path, period: str, run_id: str, days_old: float, now: datetime) -> Path:
    folder = root / "customer-performance" / period / run_id
    folder.mkdir(parents=True)
    (folder / "raw_customers.arrow").write_bytes(b"x")
    stamp = (now - timedelta(days=days_old)).timestamp()
    for path in (folder / "raw_customers.arrow", folder):
        os.utime(path, (stamp, stamp))
    return folder


def test_prune_removes_runs_last_written_before_the_retention_only(tmp_path: Path) -> None:
    now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    old = _run_folder(tmp_path, "2025-06", "old-run", 9, now)
    young = _run_folder(tmp_path, "2025-07", "young-run", 2, now)
    current = _run_folder(tmp_path, "2025-07", "this-run", 30, now)  # the run starting
    rerun = _run_folder(tmp_path, "2025-07", "rerun", 20, now)
    (rerun / "metrics.json").write_text("{}")  # a rerun wrote today: the run is young again
    (tmp_path / "customer-performance" / "notes.txt").write_text("not a run")

    removed = prune_runs(tmp_path, "customer-performance", now=now, older_than=timedelta(days=7),
                         keep="this-run")

    assert removed == [old]
    assert not old.exists() and not old.parent.exists()  # its period held nothing else
    assert young.exists() and current.exists() and rerun.exists()
    assert (tmp_path / "customer-performance" / "notes.txt").exists()


def test_prune_of_a_missing_staging_root_removes_nothing(tmp_path: Path) -> None:
    now = datetime(2026, 11, 26, tzinfo=UTC)
    assert prune_runs(tmp_path / "absent", "customer-performance", now=now,
                      older_than=timedelta(days=7), keep="x") == []
