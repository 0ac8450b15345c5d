"""The soak script, three runs: a CRM failing 20 % of requests changes nothing in the outputs.

`python -m bench.soak --runs 100 --fail-rate 0.2` is the real soak (minutes); this keeps
its machinery honest on every test run.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.soak import RunRecord, run_soak

pytestmark = pytest.mark.integration


def test_three_runs_with_a_failing_crm_all_complete_with_the_reference_outputs(
    tmp_path: Path, prefect_harness: None
) -> None:
    seen: list[RunRecord] = []
    result = run_soak(3, 0.2, customers=300, seed=7, workdir=tmp_path, progress=seen.append)
    summary = result.summary()
    assert [record.index for record in seen] == [0, 1, 2]
    assert summary["completed"] == 3, summary["failed"]
    # Byte-identical CSVs in every run, equal to the fault-free reference run's.
    assert summary["distinct_output_hashes"] == {result.reference_hash: 3}
    assert summary["ok"] is True
    # The faults were real: the seeded plan injected some (and the runs still matched).
    assert sum(summary["faults_injected"].values()) >= 1
    assert summary["crm_requests"] > 3 * 2  # at least two pages per run
