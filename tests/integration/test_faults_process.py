"""The process dies (SIGKILL) mid-run: nothing half-written is left for a later stage, and
the next run with the same --run-id completes with the outputs of a clean run.

The flow runs as `python flows/main.py` in a subprocess that talks to the test's Prefect
API (so it starts no server of its own that a SIGKILL would orphan). The kill comes the
moment the staging folder shows the filter stage has started writing; whatever the
process was doing then, every staged `.arrow` / `.json` a stage could read must be whole.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tasks.staging import SUFFIX, read_frame
from tests.fixtures.pipeline import (
    PROJECT_ROOT,
    assert_nothing_lost,
    clean_baseline,
    config_dict,
    csv_hashes,
    shared_demo,
    write_config,
)

pytestmark = pytest.mark.integration

RUN_ID = "killed-run"
WAIT_LIMIT_SECONDS = 180  # only a safety net against a hung child; never reached when green


def _environment(home: Path) -> dict[str, str]:
    from prefect.settings import PREFECT_API_URL

    env = dict(os.environ)
    env.update(
        PREFECT_API_URL=str(PREFECT_API_URL.value()),
        PREFECT_HOME=str(home),
        PREFECT_LOGGING_LEVEL="WARNING",
    )
    return env


def _wait_for(path_glob: str, folder: Path, process: subprocess.Popen[bytes]) -> Path | None:
    """The first file matching the glob, or None if the process ended before it appeared."""
    deadline = time.monotonic() + WAIT_LIMIT_SECONDS
    while time.monotonic() < deadline:
        found = sorted(folder.rglob(path_glob)) if folder.exists() else []
        if found:
            return found[0]
        if process.poll() is not None:
            return None
        time.sleep(0.005)
    raise AssertionError(f"{path_glob} did not appear under {folder}")


def _assert_every_staged_file_is_whole(run_folder: Path) -> list[str]:
    """Every file a stage could read parses; returns the names of leftover temp files."""
    for staged in run_folder.glob(f"*{SUFFIX}"):
        read_frame(staged)  # raises on a truncated file (no footer)
    for document in run_folder.glob("*.json"):
        json.loads(document.read_text())
    return sorted(p.name for p in run_folder.iterdir() if p.name.endswith(".tmp"))


def test_sigkill_during_a_stage_leaves_only_whole_files_and_the_same_run_id_resumes(
    tmp_path: Path, prefect_harness: None
) -> None:
    baseline = clean_baseline()
    path = write_config(tmp_path, config_dict(tmp_path, shared_demo()))
    command = [
        sys.executable,
        str(PROJECT_ROOT / "flows" / "main.py"),
        "--config",
        str(path),
        "--run-id",
        RUN_ID,
    ]
    env = _environment(tmp_path / ".prefect")

    first = subprocess.Popen(
        command, cwd=PROJECT_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        started = _wait_for(f"stg_customers{SUFFIX}", tmp_path / "staging", first)
        first.send_signal(signal.SIGKILL)
    finally:
        first.kill()
        first.wait(timeout=30)
    assert started is not None, "the run finished before the filter stage could be caught"
    assert first.returncode == -signal.SIGKILL
    run_folder = started.parent
    assert run_folder.name == RUN_ID
    # Stages read only '<name>.arrow' / '<name>.json': a temp file is never an input.
    leftovers = _assert_every_staged_file_is_whole(run_folder)
    assert all(name.endswith(".tmp") for name in leftovers)
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*.csv"))

    second = subprocess.run(
        command,
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=WAIT_LIMIT_SECONDS,
    )
    assert second.returncode == 0, second.stderr[-2000:]
    assert "completed" in second.stdout.strip().splitlines()[-1]
    assert assert_nothing_lost(tmp_path / "out") == baseline.accounting
    assert csv_hashes(tmp_path / "out") == baseline.hashes
    _assert_every_staged_file_is_whole(run_folder)


WRITER = textwrap.dedent(
    """
    import sys
    import pandas as pd
    from tasks.staging import StagingArea

    area = StagingArea(__import__("pathlib").Path(sys.argv[1]), "p", "2025-07", "r")
    rows = 400_000
    area.write("frame", pd.DataFrame({"version": [1] * rows, "text": ["x" * 40] * rows}))
    print("ready", flush=True)
    version = 2
    while True:  # rewrite the same name forever; killed somewhere in the middle of a write
        area.write("frame", pd.DataFrame({"version": [version] * rows, "text": ["y" * 40] * rows}))
        version += 1
    """
)


def test_sigkill_in_the_middle_of_a_staging_write_leaves_the_previous_version_whole(
    tmp_path: Path,
) -> None:
    # A writer replaces one staged frame over and over; it is killed while a temp file is
    # being written. The staged name must then hold one whole version, never a mix or a stub.
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(tmp_path)],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "ready"
        folder = tmp_path / "p" / "2025-07" / "r"
        temp = _wait_for("*.tmp", folder, writer)
        assert temp is not None
        while temp.exists() and temp.stat().st_size == 0:  # the write has begun, not ended
            time.sleep(0.001)
        writer.send_signal(signal.SIGKILL)
    finally:
        writer.kill()
        writer.wait(timeout=30)
    frame = read_frame(folder / f"frame{SUFFIX}")
    versions = set(frame["version"].tolist())
    assert len(frame) == 400_000 and len(versions) == 1
