"""The staging area: where each stage reads its inputs and writes its outputs.

Keyed by (pipeline, period, run id), one Arrow IPC file (Feather v2, LZ4-compressed) per
frame plus a small JSON file per stage with its counts. This is what makes one stage
rerunnable on its own (its inputs are on disk, not in memory or in a pickled Prefect
result) and what the previews show. pandas, pyarrow, DuckDB and Polars read the files
(`pd.read_feather`).

Why not Parquet: the files live for one run and are read back at once, so encoding speed
matters more than size. On the bench's staged frames (100 k customers) writing them was
3x faster and reading 1.7x faster than snappy Parquet, for files ~1.5x larger.

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
import pyarrow as pa
import pyarrow.feather as feather

_NAME_RE = re.compile(r"^[a-z0-9_]+$")
SUFFIX = ".arrow"


def write_frame(frame: pd.DataFrame, path: Path) -> None:
    """One frame as an Arrow IPC file; pandas dtypes come back as they went in."""
    table = pa.Table.from_pandas(frame.reset_index(drop=True), preserve_index=False)
    feather.write_feather(table, str(path), compression="lz4")


def read_frame(path: Path) -> pd.DataFrame:
    table = feather.read_table(str(path))
    if table.num_rows == 0:
        # A file of no record batches reads as columns of no chunks, which pandas' Arrow
        # text columns cannot merge or join ('cannot construct ChunkedArray from empty
        # vector'); an empty table of the same schema has one empty chunk per column.
        table = table.schema.empty_table()
    return table.to_pandas()


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
        return self.folder / f"{name}{SUFFIX}"

    def write(self, name: str, frame: pd.DataFrame) -> Path:
        target = self.path(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target.parent, suffix=".tmp", delete=False) as tmp:
            temp_path = Path(tmp.name)
        try:
            write_frame(frame, temp_path)
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
        return read_frame(target)

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
