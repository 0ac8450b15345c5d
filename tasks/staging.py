"""The staging area: where each stage reads its inputs and writes its outputs.

Keyed by (pipeline, period, run id), one Parquet file per frame plus a small JSON file per
stage with its counts. This is what makes one stage rerunnable on its own (its inputs are
on disk, not in memory or in a pickled Prefect result) and what the previews show.

Writes are atomic (temp file + rename in the same folder), so a process killed mid-write
never leaves a half-written file that a later stage could read.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

_NAME_RE = re.compile(r"^[a-z0-9_]+$")


class StagingError(RuntimeError):
    """A stage asked for an input that an earlier stage did not produce."""


@dataclass(frozen=True)
class StagingArea:
    root: Path
    pipeline: str
    period: str
    run_id: str

    @property
    def folder(self) -> Path:
        return self.root / self.pipeline / self.period / self.run_id

    def path(self, name: str) -> Path:
        if not _NAME_RE.match(name):
            raise ValueError(f"staging name {name!r} must be lower-case letters, digits, '_'")
        return self.folder / f"{name}.parquet"

    def write(self, name: str, frame: pd.DataFrame) -> Path:
        target = self.path(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target.parent, suffix=".tmp", delete=False) as tmp:
            temp_path = Path(tmp.name)
        try:
            frame.reset_index(drop=True).to_parquet(temp_path, index=False)
            os.replace(temp_path, target)
        finally:
            temp_path.unlink(missing_ok=True)
        return target

    def read(self, name: str) -> pd.DataFrame:
        target = self.path(name)
        if not target.exists():
            raise StagingError(
                f"staged input {target} is missing: the stage that writes {name!r} has not "
                f"completed for run {self.run_id}"
            )
        return pd.read_parquet(target)

    def exists(self, name: str) -> bool:
        return self.path(name).exists()

    def write_json(self, name: str, payload: dict[str, Any]) -> Path:
        target = self.folder / f"{name}.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        temp_path = target.with_suffix(".json.tmp")
        temp_path.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str))
        os.replace(temp_path, target)
        return target

    def read_json(self, name: str) -> dict[str, Any]:
        target = self.folder / f"{name}.json"
        if not target.exists():
            raise StagingError(f"staged file {target} is missing for run {self.run_id}")
        return json.loads(target.read_text())
