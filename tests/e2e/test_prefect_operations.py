"""Operating the pipeline with Prefect, end to end (SPEC §1, §9): deploy, run, rerun, UI.

One real `prefect server start` on loopback for the whole module, the project's own
prefect.yaml deployed with `prefect --no-prompt deploy --all`, and a process worker; the
runs are triggered with `prefect deployment run`, the reruns with the documented
commands, and everything is read back from the server with the Prefect client, as the UI
would show it. Each scenario has its own config (300 customers, every path under the
module's temporary folder), so its outputs can be compared with the clean run's byte for
byte: the demo pins the run time, so two correct runs write identical CSVs.
"""

from __future__ import annotations

import json
import re
import sqlite3
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from demo.generate import write_demo
from tasks.config import DEFAULT_CONFIG
from tasks.extract import DEMO_CRM_TOKEN
from tasks.settings import SOURCES
from tasks.staging import SUFFIX
from tests.e2e.prefect_stack import ROOT, PrefectStack, RunView, eventually, nightly_deployment

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CUSTOMERS = 300
LABEL = "july2025"  # the demo config's period, 2025-07
STAGES = ("filter_period", "validate_data", "calculate_metrics", "aggregate", "deliver")
CSV_NAMES = tuple(
    f"{kind}_{LABEL}.csv"
    for kind in ("customer_performance", "regional_summary", "data_quality_report")
)
DEPLOYMENT = f"customer-performance/{nightly_deployment()['name']}"
FAULT = {"CPP_FAIL_STAGE_ONCE": "calculate_metrics"}  # tasks.run_context.inject_fault
# Which stage publishes which keyed artifact (tasks/stages.py, tasks/summary.py).
ARTIFACTS = {
    **{f"filter-period-stg-{source}": "filter_period" for source in SOURCES},
    "quality-report": "validate_data",
    "calculate-metrics-customer-performance": "calculate_metrics",
    "aggregate-regional-summary": "aggregate",
    "aggregate-performance-trends": "aggregate",
    "run-summary": "parent",
}
STAGE_LOG = r"{stage}: rows in [\d,]+, rows out [\d,]+, quarantined [\d,]+, \d+\.\d\d s"
SUMMARY_LOG = (
    r"stage {stage}: rows in ([\d,]+|-), rows out [\d,]+, quarantined ([\d,]+|-), \d+\.\d\d s"
)
PASSWORD_IN_URL = re.compile(r"://[^\s:/@]+:[^\s@*]+@")


# --- fixtures ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("prefect-ops")
    write_demo(root / "demo-data", customers=CUSTOMERS, seed=7)
    return root


@pytest.fixture(scope="module")
def stack(workdir: Path) -> Iterator[PrefectStack]:
    stack = PrefectStack(home=workdir / "prefect-home", logs=workdir / "logs")
    try:
        yield stack.start()
    finally:
        stack.stop()


def write_config(workdir: Path, name: str) -> Path:
    """config/demo.yaml at 300 customers, sources shared, everything else under workdir/name."""
    config = yaml.safe_load(DEFAULT_CONFIG.read_text(encoding="utf-8"))
    data, own = workdir / "demo-data", workdir / name
    config["base_dir"] = str(own)
    config["demo_data"] = {"folder": str(data), "customers": CUSTOMERS, "seed": 7}
    config["sources"]["customers"]["connection"] = {"url": f"sqlite:///{data / 'customers.db'}"}
    config["sources"]["transactions"]["connection"] = {"url": f"sqlite:///{data / 'sales.db'}"}
    config["sources"]["interactions"]["demo_db"] = str(data / "crm.db")
    config["destinations"]["analytics"]["connection"] = {
        "url": f"sqlite:///{own / 'output' / 'analytics.db'}"
    }
    config["output_dir"], config["staging_url"] = str(own / "output"), str(own / "staging")
    own.mkdir(parents=True, exist_ok=True)
    path = own / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


@dataclass(frozen=True)
class Scenario:
    run_id: str
    folder: Path

    @property
    def output(self) -> Path:
        return self.folder / "output"

    @property
    def staging(self) -> Path:
        return self.folder / "staging" / "customer-performance" / "2025-07" / self.run_id


def start(
    stack: PrefectStack, workdir: Path, name: str, env: dict[str, str] | None = None
) -> Scenario:
    config = write_config(workdir, name)
    return Scenario(
        stack.run_deployment(DEPLOYMENT, {"config_path": str(config)}, env), config.parent
    )


@dataclass(frozen=True)
class Attempts:
    """The module's three deployment runs after their first attempt."""

    clean: Scenario
    rerun: Scenario  # failed at calculate_metrics; `prefect flow-run retry` already issued
    rerun_before: RunView  # ... what it looked like before that retry
    rerun_raw: dict[str, int]  # ... and its raw extracts' mtimes
    stage: Scenario  # failed at calculate_metrics; rerun stage by stage by its test


@pytest.fixture(scope="module")
def attempts(stack: PrefectStack, workdir: Path) -> Attempts:
    """Three runs at once (the worker takes up to 3): a clean one, and two whose
    calculate_metrics fails on its first attempt, for the two ways to rerun. The retry of
    the first failed run is issued here, so the worker runs it while the stage-by-stage
    test runs (that keeps the module near 3 minutes on two cores)."""
    clean = start(stack, workdir, "clean")
    rerun = start(stack, workdir, "rerun", env=FAULT)
    stage = start(stack, workdir, "stage", env=FAULT)
    for scenario in (clean, rerun, stage):
        stack.wait(scenario.run_id)
    before, raw = stack.view(rerun.run_id), mtimes(rerun.staging)
    if before.run.state.type.value == "FAILED":  # else its test reports what went wrong
        stack.prefect("flow-run", "retry", rerun.run_id)  # the documented rerun: back to the worker
    return Attempts(clean, rerun, before, raw, stage)


@pytest.fixture(scope="module")
def clean(attempts: Attempts) -> Scenario:
    return attempts.clean


# --- files ---------------------------------------------------------------------------


def table_rows(artifact: Any) -> list[dict[str, Any]]:
    return json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data


def csv_rows(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines()) - 1  # minus the header


def mtimes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted(folder.glob(f"raw_*{SUFFIX}"))}


def assert_same_outputs(scenario: Scenario, clean: Scenario) -> None:
    for name in CSV_NAMES:
        assert (scenario.output / name).read_bytes() == (clean.output / name).read_bytes(), name


# --- deployment ----------------------------------------------------------------------


def test_the_deployment_runs_nightly_at_2am_from_this_checkout(stack: PrefectStack) -> None:
    declared = nightly_deployment()
    zone = declared["schedules"][0]["timezone"]
    with stack.client() as client:
        deployment = client.read_deployment_by_name(DEPLOYMENT)
        assert [(s.schedule.cron, s.schedule.timezone, s.active) for s in deployment.schedules] == [
            ("0 2 * * *", zone, True)
        ]
        assert deployment.work_pool_name == declared["work_pool"]["name"]
        assert deployment.parameters == {"period": None, "config_path": "config/production.yaml"}
        # "{{ $PWD }}" was resolved at deploy time: the worker runs this checkout.
        (step,) = deployment.pull_steps
        assert step["prefect.deployments.steps.set_working_directory"]["directory"] == str(ROOT)
        # The server's scheduler turned the cron into upcoming runs, each at 02:00.
        upcoming = eventually(
            lambda: client.read_flow_runs(deployment_filter=_deployment_filter(deployment.id)),
            lambda runs: len(runs) > 0,
            "the scheduler's upcoming runs",
        )
    starts = {r.expected_start_time.astimezone(ZoneInfo(zone)).strftime("%H:%M") for r in upcoming}
    assert starts == {"02:00"}


def _deployment_filter(deployment_id: uuid.UUID) -> Any:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    return DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))


# --- a clean run: what the UI shows -------------------------------------------------


def test_a_run_has_three_extracts_and_one_subflow_per_stage(
    stack: PrefectStack, clean: Scenario
) -> None:
    seen = stack.view(clean.run_id)
    assert seen.run.state.type.value == "COMPLETED", seen.run.state.message
    assert seen.run.deployment_id is not None and seen.run.run_count == 1
    assert sorted(t.name for t in seen.extracts) == sorted(f"extract-{s}" for s in SOURCES)
    assert {t.state.name for t in seen.extracts} == {"Completed"}
    assert sorted(seen.subflows) == sorted(STAGES)
    assert all(seen.stage(s).state.type.value == "COMPLETED" for s in STAGES)
    # the outputs (SPEC §8)
    for name in (
        *CSV_NAMES,
        f"dashboard_{LABEL}.html",
        f"outbox/customer-performance-report-{LABEL}.eml",
    ):
        assert (clean.output / name).stat().st_size > 0, name
    with sqlite3.connect(clean.output / "analytics.db") as db:
        tables = {
            row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
    assert {
        f"customer_performance_{LABEL}",
        f"regional_summary_{LABEL}",
        f"performance_trends_{LABEL}",
    } <= tables


def test_the_ui_shows_a_preview_per_stage_the_quality_report_and_a_summary(
    stack: PrefectStack, clean: Scenario
) -> None:
    seen = stack.view(clean.run_id)
    keyed = stack.artifacts(seen.run_ids)
    assert set(ARTIFACTS) <= set(keyed)
    for key, stage in ARTIFACTS.items():  # each on the run page of the stage that made it
        owner = seen.run if stage == "parent" else seen.stage(stage)
        assert keyed[key].flow_run_id == owner.id, key
    # A preview is the first rows of the staged output and says how many there are.
    regional = keyed["aggregate-regional-summary"]
    assert len(table_rows(regional)) == 10
    assert f"of {csv_rows(clean.output / CSV_NAMES[1]):,} rows" in regional.description
    # Contact details are masked in previews (the CSV itself keeps them).
    emails = [
        row["email"]
        for row in table_rows(keyed["calculate-metrics-customer-performance"])
        if row["email"]
    ]
    assert emails and all(re.fullmatch(r".\*\*\*@[^@]+", e) for e in emails)
    # The quality report is the CSV's (source, rule) rows before the metrics suite's.
    report = [(r["source"], r["rule"]) for r in table_rows(keyed["quality-report"])]
    csv_lines = (clean.output / CSV_NAMES[2]).read_text(encoding="utf-8").splitlines()[1:]
    assert report == [tuple(line.split(",")[:2]) for line in csv_lines[: len(report)]]
    # The run summary: one row per stage with its rows and seconds.
    summary = keyed["run-summary"].data
    rows = {
        m[0]: m[1:]
        for m in re.findall(
            r"^\| (\w+) \| ([\d,-]+) \| ([\d,-]+) \| ([\d,-]+) \| ([\d.]+) s \|", summary, re.M
        )
    }
    assert list(rows) == ["extract", *STAGES]
    assert (
        int(rows["calculate_metrics"][1].replace(",", ""))
        == csv_rows(clean.output / CSV_NAMES[0])
        == CUSTOMERS
    )


def test_the_logs_say_rows_and_seconds_per_stage_and_hold_no_secret(
    stack: PrefectStack, clean: Scenario
) -> None:
    seen = stack.view(clean.run_id)
    messages = eventually(
        lambda: stack.log_messages(seen.run_ids),
        lambda found: any(m.startswith("stage deliver:") for m in found),
        "the run summary's log lines",
    )
    for stage in STAGES[:4]:  # each stage's own line, on its sub-flow run's page
        assert any(re.fullmatch(STAGE_LOG.format(stage=stage), m) for m in messages), stage
    for source in SOURCES:
        assert any(
            re.fullmatch(rf"extract {source} from .+ in \d+\.\d\d s", m) for m in messages
        ), source
    for stage in ("extract", *STAGES):  # and all of them again on the parent run's page
        assert any(re.fullmatch(SUMMARY_LOG.format(stage=stage), m) for m in messages), stage
    shown = messages + [f"{a.description} {a.data}" for a in stack.artifacts(seen.run_ids).values()]
    assert not [m for m in shown if DEMO_CRM_TOKEN in m or PASSWORD_IN_URL.search(m)]


# --- reruns ----------------------------------------------------------------------------


def test_a_failed_stage_reruns_on_its_own_then_the_run_finishes(
    stack: PrefectStack, attempts: Attempts, clean: Scenario
) -> None:
    faulty = attempts.stage
    assert stack.wait(faulty.run_id).state.type.value == "FAILED"
    failed_stage = stack.view(faulty.run_id).stage("calculate_metrics")

    # 1. Only the stage: `prefect flow-run retry <sub-flow id> --entrypoint flows/stages.py:...`
    #    (through make rerun's script, which prints the command it runs).
    output = stack.command([sys.executable, "flows/rerun.py", faulty.run_id, "--stage-only"])
    assert (
        f"prefect flow-run retry {failed_stage.id} --entrypoint {ROOT}/flows/stages.py:calculate_metrics"
        in output
    )
    middle = stack.view(faulty.run_id)
    stage = middle.stage("calculate_metrics")  # the same sub-flow run, now completed
    assert stage.id == failed_stage.id and stage.run_count == 2
    assert stage.state.type.value == "COMPLETED"
    assert middle.run.state.type.value == "FAILED"  # the parent is not rerun by this
    assert "aggregate" not in middle.subflows
    assert (faulty.staging / f"customer_performance{SUFFIX}").exists()
    raw = mtimes(faulty.staging)

    # 2. Then the run: it reuses the rerun stage and finishes the stages after it.
    output = stack.command([sys.executable, "flows/rerun.py", faulty.run_id, "--wait"])
    assert f"prefect flow-run retry {faulty.run_id}\n" in output
    assert output.rstrip().endswith("finished COMPLETED")
    done = stack.view(faulty.run_id)
    assert done.run.state.type.value == "COMPLETED" and done.run.run_count == 2
    assert {s: len(runs) for s, runs in done.subflows.items()} == {s: 1 for s in STAGES}
    assert mtimes(faulty.staging) == raw
    assert_same_outputs(faulty, clean)


def test_rerunning_a_failed_run_reruns_only_the_failed_stage_and_after(
    stack: PrefectStack, attempts: Attempts, clean: Scenario
) -> None:
    faulty, before = attempts.rerun, attempts.rerun_before
    assert before.run.state.type.value == "FAILED"
    assert before.stage("calculate_metrics").state.type.value == "FAILED"
    assert "aggregate" not in before.subflows and "deliver" not in before.subflows
    assert sorted(attempts.rerun_raw) == sorted(f"raw_{s}{SUFFIX}" for s in SOURCES)

    second = stack.wait(faulty.run_id)  # `prefect flow-run retry <id>` was issued by the fixture

    assert second.id == before.run.id and second.run_count == 2  # the same flow run, attempt 2
    assert second.state.type.value == "COMPLETED", second.state.message
    after = stack.view(faulty.run_id)
    # Extracts: attempt 1 ran them, attempt 2 found them Cached; the raw files are untouched.
    assert Counter(t.state.name for t in after.extracts) == {"Completed": 3, "Cached": 3}
    assert mtimes(faulty.staging) == attempts.rerun_raw
    # Finished stages were reused (still one run each); the failed one ran once more.
    assert {s: len(runs) for s, runs in after.subflows.items()} == {
        "filter_period": 1,
        "validate_data": 1,
        "calculate_metrics": 2,
        "aggregate": 1,
        "deliver": 1,
    }
    assert [r.state.type.value for r in after.subflows["calculate_metrics"]] == [
        "FAILED",
        "COMPLETED",
    ]
    assert_same_outputs(faulty, clean)
