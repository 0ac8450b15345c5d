"""What the Prefect UI shows for a run: previews, the quality report, a run summary.

Artifacts are best-effort views: they never carry credentials (only frames the pipeline
produced) and a failure to create one never fails the stage.
"""

from __future__ import annotations

import json
import logging

import pandas as pd
from prefect.artifacts import create_markdown_artifact, create_table_artifact

log = logging.getLogger(__name__)


def _records(frame: pd.DataFrame, rows: int) -> list[dict[str, object]]:
    # to_json handles Timestamps and NaN (-> null); to_dict("records") would not.
    visible = frame[[c for c in frame.columns if c != "record"]].head(rows)
    return json.loads(visible.to_json(orient="records", date_format="iso"))


def key_for(text: str) -> str:
    """Artifact keys allow only lower-case letters, digits and dashes."""
    return "".join(ch if ch.isalnum() else "-" for ch in text.lower()).strip("-")


def publish_preview(stage: str, name: str, frame: pd.DataFrame, counts: dict[str, int], rows: int = 10) -> None:
    description = f"{stage}: {name}, first {min(rows, len(frame))} of {len(frame):,} rows; " + ", ".join(
        f"{k} {v:,}" for k, v in counts.items()
    )
    try:
        create_table_artifact(key=key_for(f"{stage}-{name}"), table=_records(frame, rows), description=description)
    except Exception as exc:  # a view must not fail the stage
        log.warning("could not publish the %s preview: %s", name, exc)


def publish_table(key: str, frame: pd.DataFrame, description: str, rows: int = 500) -> None:
    try:
        create_table_artifact(key=key_for(key), table=_records(frame, rows), description=description)
    except Exception as exc:
        log.warning("could not publish %s: %s", key, exc)


def publish_markdown(key: str, markdown: str, description: str) -> None:
    try:
        create_markdown_artifact(key=key_for(key), markdown=markdown, description=description)
    except Exception as exc:
        log.warning("could not publish %s: %s", key, exc)
