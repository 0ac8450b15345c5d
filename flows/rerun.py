"""Rerun the failed stage of a customer-performance run: `make rerun RUN=<id or name>`.

    python flows/rerun.py <run>                # the run again: its failed stage and what follows
    python flows/rerun.py <run> --stage-only   # only the failed stage's sub-flow
    python flows/rerun.py <stage sub-flow run> # that one stage sub-flow

It finds out what kind of run it was given and runs the documented Prefect command for it:

- a parent run of a deployment: `prefect flow-run retry <id>`. The same flow run goes back
  to Scheduled and a worker of the deployment's pool runs it again, with the deployment's
  environment; `--wait` follows it to the end.
- a parent run started with `python flows/main.py`: `prefect flow-run retry <id>
  --entrypoint flows/main.py:customer_performance`, which runs it here, in this process's
  environment.
- a stage sub-flow run (or `--stage-only`, which picks the parent's failed one):
  `prefect flow-run retry <id> --entrypoint flows/stages.py:<stage>`, run here.

Why retrying the parent is the default: the same flow run id means the same staging folder
and persisted results, so the finished extracts come back Cached, the finished stage
sub-flows are reused (no new run), and only the failed stage and the stages after it run
again; the run then ends Completed with every output written. Retrying the stage alone
leaves the stages after it undone and the parent Failed; it is for looking at one stage.
A later retry of the parent then reuses that stage and finishes the run.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PARENT_ENTRYPOINT = f"{ROOT / 'flows' / 'main.py'}:customer_performance"
STAGE_FLOWS = ("filter_period", "validate_data", "calculate_metrics", "aggregate", "deliver")
TERMINAL = ("COMPLETED", "FAILED", "CANCELLED", "CRASHED")
NOT_DONE = ("FAILED", "CANCELLED", "CRASHED")
POLL_SECONDS = 2.0


class RerunError(ValueError):
    """A run that cannot be rerun as asked; the message says why and what to do instead."""


@dataclass(frozen=True)
class RunFacts:
    """What deciding needs to know about one flow run."""

    id: str
    name: str
    flow_name: str
    state: str  # a StateType value: COMPLETED, FAILED, ...
    has_deployment: bool = False
    is_subflow: bool = False
    ended: float = 0.0  # end time (epoch seconds), to order a stage's attempts


@dataclass(frozen=True)
class RerunPlan:
    flow_run_id: str
    cli_args: list[str]  # after `prefect`
    on_worker: bool  # True: the worker runs it; False: it runs in the CLI process
    what: str


def stage_entrypoint(stage: str) -> str:
    return f"{ROOT / 'flows' / 'stages.py'}:{stage}"


def failed_stage(children: list[RunFacts]) -> RunFacts | None:
    """The stage sub-flow whose latest attempt did not complete (the first in pipeline order)."""
    latest: dict[str, RunFacts] = {}
    for child in sorted(children, key=lambda c: c.ended):
        latest[child.flow_name] = child
    for stage in STAGE_FLOWS:
        if stage in latest and latest[stage].state in NOT_DONE:
            return latest[stage]
    return None


def plan_rerun(
    target: RunFacts, children: list[RunFacts], *, stage_only: bool = False
) -> RerunPlan:
    """Which `prefect flow-run retry` to run for `target` (see the module docstring)."""
    if target.state not in TERMINAL:
        raise RerunError(
            f"run {target.name} ({target.id}) is {target.state}: only a finished run "
            "(completed, failed, cancelled or crashed) can be retried; wait for it or cancel it"
        )
    if target.is_subflow or stage_only:
        stage = target if target.is_subflow else failed_stage(children)
        if stage is None:
            raise RerunError(
                f"run {target.name} ({target.id}) has no failed stage sub-flow; "
                "retry the run itself (without --stage-only)"
            )
        if stage.flow_name not in STAGE_FLOWS:
            raise RerunError(
                f"{stage.name} is a run of {stage.flow_name!r}, not one of the stages {STAGE_FLOWS}"
            )
        if stage.state not in TERMINAL:
            raise RerunError(
                f"stage run {stage.name} ({stage.id}) is {stage.state}; it cannot be retried yet"
            )
        return RerunPlan(
            stage.id,
            ["flow-run", "retry", stage.id, "--entrypoint", stage_entrypoint(stage.flow_name)],
            on_worker=False,
            what=f"stage {stage.flow_name} (sub-flow run {stage.name}) on its own, here",
        )
    if target.has_deployment:
        return RerunPlan(
            target.id,
            ["flow-run", "retry", target.id],
            on_worker=True,
            what=f"run {target.name} on its deployment's worker",
        )
    return RerunPlan(
        target.id,
        ["flow-run", "retry", target.id, "--entrypoint", PARENT_ENTRYPOINT],
        on_worker=False,
        what=f"run {target.name} here",
    )


# --- I/O: the Prefect API and the CLI -------------------------------------------------


def _facts(run: Any, flow_names: dict[Any, str]) -> RunFacts:
    return RunFacts(
        id=str(run.id),
        name=run.name,
        flow_name=flow_names.get(run.flow_id, str(run.flow_id)),
        state=run.state.type.value if run.state else "UNKNOWN",
        has_deployment=run.deployment_id is not None,
        is_subflow=run.parent_task_run_id is not None,
        ended=run.end_time.timestamp() if run.end_time else 0.0,
    )


def read_runs(client: Any, id_or_name: str) -> tuple[RunFacts, list[RunFacts]]:
    """The target run and its sub-flow runs, from the Prefect API."""
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterId,
        FlowRunFilter,
        FlowRunFilterName,
        FlowRunFilterParentFlowRunId,
    )
    from prefect.exceptions import ObjectNotFound

    try:
        run = client.read_flow_run(uuid.UUID(id_or_name))
    except ObjectNotFound:
        raise RerunError(f"no flow run {id_or_name} on {client.api_url}") from None
    except ValueError:  # not a UUID: a run name such as 'enormous-magpie'
        matches = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[id_or_name]))
        )
        if len(matches) != 1:
            raise RerunError(
                f"{len(matches)} flow runs are named {id_or_name!r}; give the run id"
            ) from None
        run = matches[0]
    children = client.read_flow_runs(
        flow_run_filter=FlowRunFilter(
            parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run.id])
        )
    )
    flow_ids = list({run.flow_id, *(child.flow_id for child in children)})
    names = {
        f.id: f.name
        for f in client.read_flows(flow_filter=FlowFilter(id=FlowFilterId(any_=flow_ids)))
    }
    return _facts(run, names), [_facts(child, names) for child in children]


def wait_for(client: Any, flow_run_id: str, timeout_seconds: float) -> str:
    """Follow a run the worker will pick up until it is finished; its last state type.

    The retry has already moved it to Scheduled, so a terminal state here is the new one.
    """
    deadline = time.monotonic() + timeout_seconds
    while True:
        run = client.read_flow_run(uuid.UUID(flow_run_id))
        state = run.state.type.value if run.state else "UNKNOWN"
        if state in TERMINAL or time.monotonic() > deadline:
            return state
        time.sleep(POLL_SECONDS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="flow run id or name (a parent run or a stage sub-flow run)")
    parser.add_argument(
        "--stage-only", action="store_true", help="retry only the parent's failed stage sub-flow"
    )
    parser.add_argument(
        "--wait", action="store_true", help="for a deployment run: follow it until it finishes"
    )
    parser.add_argument(
        "--timeout", type=float, default=3600.0, help="seconds --wait follows a run"
    )
    args = parser.parse_args(argv)

    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        try:
            target, children = read_runs(client, args.run)
            plan = plan_rerun(target, children, stage_only=args.stage_only)
        except RerunError as exc:
            print(f"rerun: {exc}", file=sys.stderr)
            return 2
        failed = failed_stage(children)
        if failed is not None and not target.is_subflow:
            print(
                f"rerun: the failed stage of {target.name} is {failed.flow_name} (sub-flow run {failed.name})"
            )
        print(f"rerun: retrying {plan.what}: prefect {' '.join(plan.cli_args)}", flush=True)
        code = subprocess.call([sys.executable, "-m", "prefect", *plan.cli_args], cwd=ROOT)
        if code != 0 or not plan.on_worker or not args.wait:
            return code
        state = wait_for(client, plan.flow_run_id, args.timeout)
    print(f"rerun: run {target.name} finished {state}")
    return 0 if state == "COMPLETED" else 1


if __name__ == "__main__":
    sys.exit(main())
