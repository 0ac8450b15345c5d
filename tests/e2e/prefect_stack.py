"""A real Prefect server, process work pool, deployment and worker, for the e2e tests.

`PrefectStack.start()` runs exactly the commands the README gives an operator (server,
work pool, `prefect --no-prompt deploy --all` from the project's prefect.yaml, worker) on
loopback, with its own PREFECT_HOME under the test's temporary folder; `stop()` ends
every process it started (each in its own process group, so the flow-run processes the
worker spawned go too).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[2]
SERVER_START_SECONDS = 180.0  # a fresh SQLite DB runs every migration first (~30 s here)
RUN_SECONDS = 240.0
TERMINAL = ("COMPLETED", "FAILED", "CANCELLED", "CRASHED")


T = TypeVar("T")


class StackError(RuntimeError):
    """A command of the stack failed; the message carries its output."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def nightly_deployment() -> dict[str, Any]:
    """The deployment as prefect.yaml declares it: what the test deploys and checks."""
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text(encoding="utf-8"))
    (deployment,) = spec["deployments"]  # SPEC §9: one deployment
    return deployment


@dataclass(frozen=True)
class RunView:
    """A parent run as the UI shows it: its state, its sub-flow runs, its extract task runs."""

    run: Any
    subflows: dict[str, list[Any]]  # flow name -> its runs, oldest first
    extracts: list[Any]

    def stage(self, name: str) -> Any:
        (only,) = self.subflows[name]
        return only

    @property
    def run_ids(self) -> list[uuid.UUID]:
        return [self.run.id, *(r.id for runs in self.subflows.values() for r in runs)]


def eventually(
    read: Callable[[], T], done: Callable[[T], bool], what: str, seconds: float = 30.0
) -> T:
    """Read until `done`: logs, for one, reach the API shortly after a run's final state."""
    deadline = time.monotonic() + seconds
    while True:
        value = read()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(1)


@dataclass
class PrefectStack:
    home: Path
    logs: Path
    port: int = field(default_factory=free_port)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env.update(
            PREFECT_HOME=str(self.home),
            PREFECT_API_URL=self.api_url,
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="5",  # upcoming runs appear soon
            PREFECT_WORKER_QUERY_SECONDS="1",  # the worker notices a new run within a second
            PREFECT_LOGGING_LEVEL="INFO",  # the per-stage lines are INFO
            GX_ANALYTICS_ENABLED="false",
            DO_NOT_TRACK="1",
            PWD=str(ROOT),  # prefect.yaml's "{{ $PWD }}" is read from the environment
        )
        return env

    # --- processes ---------------------------------------------------------------------

    def _spawn(self, name: str, *args: str) -> None:
        log = (self.logs / f"{name}.log").open("wb")
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", "prefect", *args],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def prefect(self, *args: str, check: bool = True) -> str:
        """Run one `prefect ...` command against this server; its combined output."""
        return self.command([sys.executable, "-m", "prefect", *args], check=check)

    def command(self, argv: list[str], check: bool = True) -> str:
        done = subprocess.run(
            argv, cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=RUN_SECONDS
        )
        output = done.stdout + done.stderr
        if check and done.returncode != 0:
            raise StackError(f"{' '.join(argv[2:])} exited {done.returncode}:\n{output[-4000:]}")
        return output

    def log_tail(self, name: str, chars: int = 3000) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def start(self) -> PrefectStack:
        self.home.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        self._spawn(
            "server", "server", "start", "--host", "127.0.0.1", "--port", str(self.port), "--no-ui"
        )
        self._wait_healthy()
        pool = nightly_deployment()["work_pool"]["name"]
        self.prefect("work-pool", "create", pool, "--type", "process", "--overwrite")
        self.prefect("--no-prompt", "deploy", "--all")
        self._spawn("worker", "worker", "start", "--pool", pool, "--limit", "3")
        return self

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + SERVER_START_SECONDS
        while time.monotonic() < deadline:
            if self.processes["server"].poll() is not None:
                raise StackError(f"prefect server exited:\n{self.log_tail('server')}")
            try:
                if httpx.get(f"{self.api_url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise StackError(
            f"prefect server not healthy after {SERVER_START_SECONDS:.0f} s:\n{self.log_tail('server')}"
        )

    def stop(self) -> None:
        """Worker first (it may be running a flow), then the server: TERM, then KILL."""
        for name in ("worker", "server"):
            process = self.processes.pop(name, None)
            if process is None or process.poll() is not None:
                continue
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)

    # --- the API ---------------------------------------------------------------------

    def client(self) -> Any:
        """A sync client bound to this server (no global settings touched)."""
        from prefect.client.orchestration import SyncPrefectClient

        return SyncPrefectClient(self.api_url)

    def run_deployment(
        self, name: str, params: dict[str, str], env: dict[str, str] | None = None
    ) -> str:
        """`prefect deployment run` (the operator's command); the new flow run's id."""
        args = ["deployment", "run", name] + [
            item for k, v in params.items() for item in ("--param", f"{k}={v}")
        ]
        if env:
            args += ["--job-variable", "env=" + json.dumps(env)]  # merged into the deployment's env
        output = self.prefect(*args)
        match = re.search(r"UUID: ([0-9a-f-]{36})", output)
        if not match:
            raise StackError(f"no flow run id in:\n{output}")
        return match.group(1)

    def wait(self, flow_run_id: str) -> Any:
        """The flow run once it is in a terminal state (the worker runs it)."""
        deadline = time.monotonic() + RUN_SECONDS
        with self.client() as client:
            while True:
                run = client.read_flow_run(uuid.UUID(flow_run_id))
                if run.state is not None and run.state.type.value in TERMINAL:
                    return run
                if time.monotonic() > deadline:
                    raise StackError(
                        f"flow run {flow_run_id} still {run.state.type.value if run.state else '?'} "
                        f"after {RUN_SECONDS:.0f} s; worker log:\n{self.log_tail('worker')}"
                    )
                time.sleep(1)

    def view(self, run_id: str) -> RunView:
        from prefect.client.schemas.filters import (
            FlowFilter,
            FlowFilterId,
            FlowRunFilter,
            FlowRunFilterId,
            FlowRunFilterParentFlowRunId,
            TaskRunFilter,
            TaskRunFilterName,
        )

        with self.client() as client:
            run = client.read_flow_run(uuid.UUID(run_id))
            children = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run.id])
                )
            )
            flow_filter = FlowFilter(id=FlowFilterId(any_=[c.flow_id for c in children]))
            flows = {f.id: f.name for f in client.read_flows(flow_filter=flow_filter)}
            extracts = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])),
                task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_="extract-")),
            )
        subflows: dict[str, list[Any]] = {}
        for child in sorted(children, key=lambda c: c.expected_start_time):
            subflows.setdefault(flows[child.flow_id], []).append(child)
        return RunView(run, subflows, extracts)

    def artifacts(self, run_ids: list[uuid.UUID]) -> dict[str, Any]:
        """The keyed artifacts of these runs, by key (result records have no key)."""
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

        with self.client() as client:
            found = client.read_artifacts(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=run_ids))
            )
        return {a.key: a for a in found if a.key}

    def log_messages(self, run_ids: list[uuid.UUID]) -> list[str]:
        from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

        messages: list[str] = []
        with self.client() as client:
            while True:
                page = client.read_logs(
                    log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=run_ids)),
                    limit=200,
                    offset=len(messages),
                )
                messages += [entry.message for entry in page]
                if len(page) < 200:
                    return messages
