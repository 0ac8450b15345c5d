"""The scale benchmark: pipeline vs naive baseline vs floor, on real servers, in one invocation.

    python -m bench.run --scale 100000 [--repeat 3] [--skip-naive] [--scale-out K] [--keep]

1. set-up (not timed): generate S customers, 10·S transactions over 13 months, 3·S
   interactions; COPY the customers into PostgreSQL, LOAD DATA the transactions into
   MariaDB (fresh databases `cpp_bench_<tag>`), serve the interactions from the CRM stand-in
   in a process of its own;
2. per repeat, interleaved, each in a fresh process: the whole pipeline through its Prefect
   flow (bench.pipeline_probe), optionally the scale-out flow, the naive baseline
   (bench.naive), and the floor (bench.floor);
3. medians, ratios, a Markdown table (bench/results/scale_<S>.md, also printed) and the raw
   JSON (bench/results/scale_<S>.json); then the databases and the work folder are dropped.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import logging
import os
import platform
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from bench.bench_config import pipeline_config
from bench.datasets import BenchDatabases, transaction_months
from bench.report import markdown, summarise

logger = logging.getLogger("bench")

RESULTS = Path(__file__).resolve().parent / "results"
PROJECT = Path(__file__).resolve().parents[1]


def machine() -> str:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    memory_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} vCPU {cpu}, {memory_gb:.0f} GiB, {platform.system()} {platform.release()}"


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


@dataclass
class Workspace:
    """Everything one invocation creates, so that all of it can be removed at the end."""

    databases: BenchDatabases
    folder: Path
    token: str
    env: dict[str, str]
    crm: subprocess.Popen[bytes] | None = None
    crm_url: str = ""

    def python(self, module: str, *args: str, timeout: float | None = None) -> None:
        command = [sys.executable, "-m", module, *args]
        logger.info("$ %s", " ".join(command[2:]))
        try:
            subprocess.run(command, check=True, cwd=PROJECT, env=self.env, timeout=timeout)
        finally:
            self.reap()

    def reap(self) -> None:
        """End what a finished probe left running under our PREFECT_HOME (an ephemeral API
        server outlives a process that exits abruptly). Found by its environment, ended by id."""
        ours = f"PREFECT_HOME={self.env['PREFECT_HOME']}".encode()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            if self.crm is not None and int(entry.name) == self.crm.pid:
                continue
            try:
                environ = (entry / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if ours in environ:
                logger.info("ending leftover process %s", entry.name)
                try:
                    os.kill(int(entry.name), signal.SIGTERM)
                except ProcessLookupError:
                    pass

    def start_crm(self) -> None:
        ready = self.folder / "crm_url"
        self.crm = subprocess.Popen(
            [sys.executable, "-m", "bench.crm_serve", "--parquet", str(self.folder / "interactions.parquet"),
             "--token", self.token, "--ready-file", str(ready)],
            cwd=PROJECT, env=self.env,
        )
        deadline = time.time() + 900
        while not ready.exists():
            if self.crm.poll() is not None or time.time() > deadline:
                raise RuntimeError("the CRM stand-in did not start")
            time.sleep(0.2)
        self.crm_url = ready.read_text().strip()

    def close(self, keep: bool) -> None:
        if self.crm is not None:
            self.crm.terminate()
            self.crm.wait(timeout=30)
        if not keep:
            self.databases.drop()
            shutil.rmtree(self.folder, ignore_errors=True)


def write_yaml(path: Path, payload: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(payload, sort_keys=False))
    return path


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def same_csvs(left: Path, right: Path, label: str) -> bool:
    """The three exported CSVs are byte-identical in both folders."""
    names = [f"customer_performance_{label}.csv", f"regional_summary_{label}.csv",
             f"data_quality_report_{label}.csv"]
    return all(filecmp.cmp(left / n, right / n, shallow=False) for n in names)


def bench(args: argparse.Namespace) -> dict[str, Any]:
    tag = secrets.token_hex(5)
    databases = BenchDatabases(f"cpp_bench_{tag}")
    folder = Path(args.work_dir or f"/tmp/cpp_bench_{tag}")
    folder.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "PREFECT_HOME": str(folder / "prefect"),
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "600",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "GX_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "PYTHONPATH": str(PROJECT),
    }
    space = Workspace(databases, folder, secrets.token_hex(12), env)
    context: dict[str, Any] = {"scale": args.scale, "repeat": args.repeat, "machine": machine(),
                               "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
                               "databases": databases.name, "partitions": args.scale_out}
    load_before = loadavg()
    try:
        space.python("bench.datasets", "--scale", str(args.scale), "--name", databases.name,
                     "--folder", str(folder), "--out", str(folder / "setup.json"))
        setup = read_json(folder / "setup.json")
        context["rows"] = setup["rows"]
        context["setup"] = {k: setup[k] for k in ("generate_s", "load_s")}
        context["transactions_per_month"] = transaction_months(databases.mysql_url)
        space.start_crm()
        credentials = ["--crm-url", space.crm_url, "--token", space.token]
        pipeline_yaml = write_yaml(folder / "pipeline.yaml", pipeline_config(databases, folder / "pipeline"))
        naive_yaml = write_yaml(folder / "naive.yaml", pipeline_config(databases, folder / "naive", schema="naive"))
        scaled_yaml = write_yaml(folder / "scaled.yaml", pipeline_config(databases, folder / "scaled", schema="scaled"))
        space.python("bench.pipeline_probe", "--config", str(pipeline_yaml), *credentials, "--register-only")
        runs: dict[str, list[dict[str, Any]]] = {"pipeline": [], "naive": [], "floor": [], "scaled": []}
        for attempt in range(1, args.repeat + 1):
            logger.info("repeat %d/%d (load average %s)", attempt, args.repeat, loadavg())
            out = folder / f"pipeline_{attempt}.json"
            space.python("bench.pipeline_probe", "--config", str(pipeline_yaml), *credentials, "--out", str(out))
            runs["pipeline"].append(read_json(out))
            staging = (folder / "pipeline" / "staging" / "customer-performance" / "2025-07"
                       / runs["pipeline"][-1]["run_id"])
            if args.scale_out:
                out = folder / f"scaled_{attempt}.json"
                space.python("bench.pipeline_probe", "--config", str(scaled_yaml), *credentials, "--out", str(out),
                             "--mode", "scale-out", "--partitions", str(args.scale_out))
                runs["scaled"].append(read_json(out))
            if not args.skip_naive:
                out = folder / f"naive_{attempt}.json"
                try:
                    space.python("bench.naive", "--config", str(naive_yaml), *credentials, "--out", str(out))
                    runs["naive"].append(read_json(out))
                except subprocess.CalledProcessError as exc:  # e.g. killed for memory at a large S
                    reason = f"exit status {exc.returncode}" + (" (killed: out of memory?)" if exc.returncode < 0 else "")
                    logger.warning("the naive baseline failed: %s", reason)
                    context.setdefault("naive_failures", []).append(reason)
            out = folder / f"floor_{attempt}.json"
            space.python("bench.floor", "--config", str(pipeline_yaml), "--staging", str(staging),
                         *credentials, "--out", str(out))
            runs["floor"].append(read_json(out))
            for kind in ("pipeline", "scaled", "naive"):
                for old in (folder / kind / "staging").glob("*/*/*"):
                    if old.name != (runs[kind][-1]["run_id"] if runs[kind] else ""):
                        shutil.rmtree(old, ignore_errors=True)  # keep the disk bounded
        label = runs["pipeline"][0]["period_label"]
        if runs["naive"]:
            context["naive_identical"] = same_csvs(folder / "pipeline" / "output", folder / "naive" / "output", label)
        if runs["scaled"]:
            context["scale_out_identical"] = same_csvs(folder / "pipeline" / "output", folder / "scaled" / "output", label)
        context["loadavg"] = f"{load_before} / {loadavg()}"
        summary = summarise(runs["pipeline"], runs["naive"], runs["floor"], runs["scaled"])
        return {"context": context, "summary": summary, "runs": runs}
    finally:
        space.close(keep=args.keep)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=100_000, help="customers S (transactions 10·S, interactions 3·S)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-naive", action="store_true", help="pipeline and floor only")
    parser.add_argument("--scale-out", type=int, default=0, metavar="K",
                        help="also run the scale-out flow with K partitions on a Dask LocalCluster")
    parser.add_argument("--keep", action="store_true", help="keep the databases and the work folder")
    parser.add_argument("--work-dir", help="work folder (default /tmp/cpp_bench_<tag>)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the report goes")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    result = bench(args)
    args.results.mkdir(parents=True, exist_ok=True)
    stem = f"scale_{args.scale}"
    (args.results / f"{stem}.json").write_text(json.dumps(result, indent=1, default=str))
    table = markdown(result["summary"], result["context"])
    (args.results / f"{stem}.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
