"""A small demo config with every path under a temporary folder (shared by e2e tests)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]


def demo_config(
    folder: Path, output: str, customers: int = 600, mutate: Callable[[dict[str, Any]], None] | None = None
) -> Path:
    """Write config/demo.yaml re-pointed at `folder`; its data is generated on first run."""
    raw = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
    demo = folder / "demo"
    raw["demo_data"] = {"folder": str(demo), "customers": customers, "seed": 11}
    raw["sources"]["customers"]["connection"] = {"url": f"sqlite:///{demo / 'customers.db'}"}
    raw["sources"]["transactions"]["connection"] = {"url": f"sqlite:///{demo / 'sales.db'}"}
    raw["sources"]["interactions"]["demo_db"] = str(demo / "crm.db")
    raw["destinations"]["analytics"]["connection"] = {"url": f"sqlite:///{folder / f'{output}.db'}"}
    raw["output_dir"] = str(folder / output)
    raw["staging_url"] = str(folder / "staging")
    if mutate is not None:
        mutate(raw)
    path = folder / f"{output}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path
