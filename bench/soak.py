"""Soak: many consecutive demo runs against a CRM that fails a share of its requests.

    python -m bench.soak --runs 100 --fail-rate 0.2 [--customers 300] [--workdir DIR]

What it shows: transient CRM failures (5xx, connection resets, 429 + Retry-After) at the
given rate never fail a run, never lose or double an interaction, and never change a byte
of the outputs. The script

1. generates the small demo once (`--customers`, default 300, so 100 runs take minutes);
2. runs the plain demo once as the reference (no faults);
3. serves crm.db itself with `CrmStandIn(faults=FaultPlan(rate, kinds))` and saves a
   `CrmApiCredentials` block pointing at it (plain http is fine: loopback);
4. runs the parent flow `--runs` times in this process (one Prefect API for all, as a
   long-lived worker would), each into its own output folder, all into one analytics DB
   (so every run also re-loads the period idempotently);
5. prints a JSON summary: runs completed, distinct output hashes, whether they equal the
   reference, faults injected by kind, seconds per run (median, p95, max), peak memory.

Exit status 0 only if every run completed with the reference's outputs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEMO_CONFIG = PROJECT_ROOT / "config" / "demo.yaml"
DEFAULT_KINDS = ("500", "502", "503", "reset", "429")
OUTPUT_KINDS = ("customer_performance", "regional_summary", "data_quality_report")
CRM_TOKEN = "soak-token"  # the stand-in's credential for this run; not a secret
PERIOD_LABEL = "july2025"  # the demo config's period


@dataclass
class RunRecord:
    index: int
    seconds: float
    completed: bool
    output_hash: str | None = None
    error: str | None = None


@dataclass
class SoakResult:
    runs: int
    fail_rate: float
    customers: int
    reference_hash: str
    records: list[RunRecord] = field(default_factory=list)
    requests: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    peak_rss_mb: float = 0.0

    @property
    def completed(self) -> int:
        return sum(r.completed for r in self.records)

    @property
    def distinct_hashes(self) -> dict[str, int]:
        return dict(Counter(r.output_hash for r in self.records if r.output_hash))

    @property
    def ok(self) -> bool:
        return self.completed == self.runs and set(self.distinct_hashes) == {self.reference_hash}

    def summary(self) -> dict[str, Any]:
        seconds = sorted(r.seconds for r in self.records)
        p95 = seconds[min(len(seconds) - 1, int(0.95 * len(seconds)))] if seconds else None
        return {
            "ok": self.ok,
            "runs": self.runs,
            "completed": self.completed,
            "failed": [asdict(r) for r in self.records if not r.completed],
            "distinct_output_hashes": self.distinct_hashes,
            "identical_to_reference": set(self.distinct_hashes) == {self.reference_hash},
            "reference_hash": self.reference_hash,
            "fail_rate": self.fail_rate,
            "customers": self.customers,
            "crm_requests": self.requests,
            "faults_injected": self.faults,
            "seconds_per_run": {
                "median": round(statistics.median(seconds), 2) if seconds else None,
                "p95": round(p95, 2) if p95 is not None else None,
                "max": round(seconds[-1], 2) if seconds else None,
                "total": round(sum(seconds), 1),
            },
            "peak_rss_mb": round(self.peak_rss_mb, 1),
        }


def output_hash(output_dir: Path, label: str = PERIOD_LABEL) -> str:
    """One sha256 over the three CSVs (each file's digest, in a fixed order)."""
    digest = hashlib.sha256()
    for kind in OUTPUT_KINDS:
        digest.update(hashlib.sha256((output_dir / f"{kind}_{label}.csv").read_bytes()).digest())
    return digest.hexdigest()


def demo_config(workdir: Path, data: Path, customers: int, seed: int) -> dict[str, Any]:
    """config/demo.yaml with absolute paths: sources in `data`, the rest in `workdir`."""
    config = yaml.safe_load(DEMO_CONFIG.read_text(encoding="utf-8"))
    config.update(base_dir=str(workdir), output_dir=str(workdir / "out"),
                  staging_url=str(workdir / "staging"))
    config["demo_data"] = {"folder": str(data), "customers": customers, "seed": seed}
    config["sources"]["customers"]["connection"] = {"url": f"sqlite:///{data / 'customers.db'}"}
    config["sources"]["transactions"]["connection"] = {"url": f"sqlite:///{data / 'sales.db'}"}
    config["sources"]["interactions"]["demo_db"] = str(data / "crm.db")
    config["destinations"]["analytics"]["connection"] = {
        "url": f"sqlite:///{workdir / 'analytics.db'}"
    }
    return config


def through_block(config: dict[str, Any], block: str, run_dir: Path) -> dict[str, Any]:
    """The same config with the CRM reached through `block` and outputs under `run_dir`."""
    interactions = dict(config["sources"]["interactions"])
    for demo_only in ("demo", "demo_db"):
        interactions.pop(demo_only, None)
    interactions["block"] = block
    # Pages of 50: each run makes a few requests, so each meets the fault rate a few times.
    interactions["pagination"] = {**interactions["pagination"], "page_size": 50}
    return {**config, "sources": {**config["sources"], "interactions": interactions},
            "output_dir": str(run_dir / "out"), "staging_url": str(run_dir / "staging")}


def _write(path: Path, config: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def run_soak(
    runs: int,
    fail_rate: float,
    *,
    customers: int = 300,
    seed: int = 7,
    workdir: Path | None = None,
    kinds: Sequence[str] = DEFAULT_KINDS,
    progress: Callable[[RunRecord], None] | None = None,
) -> SoakResult:
    """The soak itself (see the module docstring); needs a reachable Prefect API, which
    Prefect starts on its own (a temporary local server) when none is configured."""
    from pydantic import SecretStr

    from blocks.crm_api import CrmApiCredentials
    from demo.crm_server import CrmStandIn, FaultPlan
    from demo.generate import write_demo
    from flows.main import customer_performance

    workdir = Path(workdir or tempfile.mkdtemp(prefix="cpp-soak-"))
    data = write_demo(workdir / "demo", customers=customers, seed=seed)
    base = demo_config(workdir, data, customers, seed)
    reference_dir = workdir / "reference"
    reference = {**base, "output_dir": str(reference_dir / "out"),
                 "staging_url": str(reference_dir / "staging")}
    customer_performance(config_path=str(_write(reference_dir / "config.yaml", reference)),
                         run_id="soak-reference")
    result = SoakResult(runs, fail_rate, customers, output_hash(reference_dir / "out"))

    plan = FaultPlan(rate=fail_rate, kinds=kinds, seed=seed)
    with CrmStandIn.from_db(data / "crm.db", token=CRM_TOKEN, faults=plan) as crm:
        block = f"soak-crm-{os.getpid()}"
        CrmApiCredentials(base_url=crm.base_url, token=SecretStr(CRM_TOKEN),
                          timeout_seconds=10).save(block, overwrite=True)
        for index in range(runs):
            run_dir = workdir / "runs" / f"{index:03d}"
            path = _write(run_dir / "config.yaml", through_block(base, block, run_dir))
            started = time.perf_counter()
            try:
                customer_performance(config_path=str(path), run_id=f"soak-{index:03d}")
                record = RunRecord(index, time.perf_counter() - started, True,
                                   output_hash(run_dir / "out"))
                shutil.rmtree(run_dir / "staging", ignore_errors=True)  # keep failed ones only
            except Exception as exc:  # a failed run is a finding, not the end of the soak
                record = RunRecord(index, time.perf_counter() - started, False,
                                   error="".join(traceback.format_exception_only(exc)).strip())
            result.records.append(record)
            if progress is not None:
                progress(record)
        result.requests = len(crm.requests)
        result.faults = dict(Counter(log.fault for log in crm.requests if log.fault))
    result.peak_rss_mb = _peak_rss_mb()
    return result


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--fail-rate", type=float, default=0.2)
    parser.add_argument("--customers", type=int, default=300)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workdir", type=Path, help="kept afterwards (default: a temp folder)")
    parser.add_argument("--kinds", default=",".join(DEFAULT_KINDS),
                        help=f"fault kinds, comma-separated (default {','.join(DEFAULT_KINDS)})")
    args = parser.parse_args(argv)
    if not 0 <= args.fail_rate < 1 or args.runs < 1:
        parser.error("--runs must be >= 1 and --fail-rate in [0, 1)")

    def report(record: RunRecord) -> None:
        state = "ok" if record.completed else f"FAILED: {record.error}"
        print(f"run {record.index + 1}/{args.runs}: {record.seconds:.1f} s {state}", flush=True)

    result = run_soak(args.runs, args.fail_rate, customers=args.customers, seed=args.seed,
                      workdir=args.workdir, kinds=args.kinds.split(","), progress=report)
    print(json.dumps(result.summary(), indent=2))
    return 0 if result.ok else 1


if __name__ == "__main__":
    # Quiet Prefect's per-task INFO lines: a hundred runs would bury the summary.
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    sys.exit(main())
