"""What every stage needs to find its inputs, rebuilt from JSON parameters.

Sub-flows take only (config_path, period, run_id): strings that Prefect stores as
parameters, so any stage run can be retried on its own and find the same staged data.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from tasks.config import PipelineConfig
from tasks.config_file import load_and_check, resolve_period
from tasks.period import Period
from tasks.staging import StagingArea


class InjectedFault(RuntimeError):
    """Raised by the fault switch that the rerun tests use (never in normal runs)."""


@dataclass(frozen=True)
class RunContext:
    config: PipelineConfig
    config_path: str
    period: Period
    run_id: str
    run_time: pd.Timestamp

    @classmethod
    def build(cls, config_path: str, period: str | None, run_id: str) -> RunContext:
        config = load_and_check(config_path, period)
        return cls(
            config=config,
            config_path=str(config_path),
            period=resolve_period(config, period),
            run_id=run_id,
            run_time=config.clock(),
        )

    @property
    def staging(self) -> StagingArea:
        root = self.config.resolve_path(self.config.staging_url)
        return StagingArea(root, self.config.pipeline, str(self.period), self.run_id)

    @property
    def output_dir(self) -> Path:
        return self.config.resolve_path(self.config.output_dir)

    @property
    def as_of(self) -> pd.Timestamp:
        return self.period.as_of(self.run_time)

    def inject_fault(self, stage: str) -> None:
        """Fail `stage` once per run when CPP_FAIL_STAGE_ONCE (or config.fault) names it.

        The marker file lives in the run's staging folder, so the retry of the same run
        passes: this is how the rerun tests make a stage fail without editing code.
        """
        wanted = os.environ.get("CPP_FAIL_STAGE_ONCE") or self.config.fault.get("fail_stage_once")
        if wanted != stage:
            return
        marker = self.staging.folder / f".fault-{stage}"
        if marker.exists():
            return
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text("injected once\n")
        raise InjectedFault(f"fault switch: stage {stage!r} fails on its first attempt")
