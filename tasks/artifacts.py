"""What the Prefect UI shows for a run: previews, the quality report, a run summary.

Every artifact is keyed (lower-case letters, digits, dashes), so the UI's Artifacts page
lists each one with its history across runs; each is attached to the (sub-)flow run that
made it. Artifacts are best-effort views: a failure to create one never fails the stage.

What they never carry (SPEC §9): credentials. The frames are the pipeline's own data, and
every text is passed through `redact_credentials` in case a value or a path holds a URL
with a password. Previews also mask contact details (email, phone): the Prefect UI has a
wider audience than the report's recipients, and a preview does not need them to be read.

A stage does not wait for the API to store its artifacts: each request (~45 ms, nearly
all of it the server's) is sent by one background thread, in the run context of the task
that made it, while the stage goes on; `flush_artifacts` waits for them, and the
outermost flow run of the process calls it before it ends (`artifacts_stored_at_the_end`). The
frames are turned into the artifact's rows at once, in the stage's own thread.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from typing import Any

import pandas as pd
from prefect.artifacts import create_markdown_artifact, create_table_artifact

log = logging.getLogger(__name__)

PREVIEW_ROWS = 10
REPORT_ROWS = 500
INVALID_SUFFIX = "__invalid"  # tasks.settings: the raw text of a value that did not parse
MASKED_COLUMNS = ("email", "phone")
# scheme://user:password@host -> scheme://user:***@host
_URL_PASSWORD_RE = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s:/@]+:)[^\s@]+@")
FLUSH_TIMEOUT_SECONDS = 120

_sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="artifacts")
_pending: list[Future] = []
_pending_lock = threading.Lock()


def redact_credentials(text: str) -> str:
    """Replace the password of every `scheme://user:password@host` in `text` with ***."""
    return _URL_PASSWORD_RE.sub(r"\g<head>***@", text)


def mask_contact(column: str, value: object) -> object:
    """An email keeps its first letter and domain (v***@example.com); a phone its last
    three digits (***815): enough to tell rows apart, not enough to contact anyone."""
    if not isinstance(value, str) or not value:
        return value
    if column == "email":
        local, at, domain = value.partition("@")
        return f"{local[:1]}***@{domain}" if at else "***"
    digits = re.sub(r"\D", "", value)
    return f"***{digits[-3:]}" if len(digits) > 3 else "***"


def preview_frame(frame: pd.DataFrame, rows: int = PREVIEW_ROWS) -> pd.DataFrame:
    """The first `rows` rows as the UI shows them.

    Dropped: the quarantine's `record` (a whole row as JSON), internal helper columns
    (`_row`), and every `<column>__invalid` that is empty in the whole frame (one per typed
    column; they would double the width). An `__invalid` column with any value stays: it
    is what a reader needs to see.
    """
    keep = [
        column
        for column in frame.columns
        if column != "record"
        and not str(column).startswith("_")
        and not (str(column).endswith(INVALID_SUFFIX) and not frame[column].notna().any())
    ]
    head = frame[keep].head(rows).copy()
    for column in MASKED_COLUMNS:
        if column in head.columns:
            head[column] = [mask_contact(column, value) for value in head[column].astype(object)]
    return head


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON-safe rows: to_json handles Timestamps and NaN (-> null); to_dict would not."""
    rows: list[dict[str, Any]] = json.loads(frame.to_json(orient="records", date_format="iso"))
    return [
        {k: redact_credentials(v) if isinstance(v, str) else v for k, v in row.items()}
        for row in rows
    ]


def key_for(text: str) -> str:
    """Artifact keys allow only lower-case letters, digits and dashes."""
    key = "".join(ch if ch.isascii() and ch.isalnum() else "-" for ch in text.lower())
    return re.sub(r"-{2,}", "-", key).strip("-")


def preview_description(
    stage: str, name: str, shown: int, total: int, counts: dict[str, int]
) -> str:
    description = f"{stage}: {name}, first {shown:,} of {total:,} rows"
    if counts:
        description += "; " + ", ".join(f"{k} {v:,}" for k, v in counts.items())
    return description


def publish_preview(
    stage: str, name: str, frame: pd.DataFrame, counts: dict[str, int], rows: int = PREVIEW_ROWS
) -> None:
    """A stage's output, first rows only: key `<stage>-<name>`, e.g. `aggregate-regional-summary`."""
    try:
        head = preview_frame(frame, rows)
        _send(
            f"the {name} preview",
            create_table_artifact,
            key=key_for(f"{stage}-{name}"),
            table=records(head),
            description=redact_credentials(
                preview_description(stage, name, len(head), len(frame), counts)
            ),
        )
    except Exception as exc:  # a view must not fail the stage
        _warn(f"could not publish the {name} preview: {exc}")


def publish_table(key: str, frame: pd.DataFrame, description: str, rows: int = REPORT_ROWS) -> None:
    """A whole report (up to `rows` rows), e.g. the quality report."""
    try:
        shown = frame[[c for c in frame.columns if c != "record"]].head(rows)
        if len(frame) > rows:
            description += f" (first {rows:,} of {len(frame):,} rows)"
        _send(key, create_table_artifact,
              key=key_for(key), table=records(shown), description=redact_credentials(description))
    except Exception as exc:
        _warn(f"could not publish {key}: {exc}")


def publish_markdown(key: str, markdown: str, description: str) -> None:
    try:
        _send(
            key,
            create_markdown_artifact,
            key=key_for(key),
            markdown=redact_credentials(markdown),
            description=redact_credentials(description),
        )
    except Exception as exc:
        _warn(f"could not publish {key}: {exc}")


def _send(what: str, create: Callable[..., Any], **artifact: Any) -> None:
    """Create the artifact on the background thread, in this run's context (so it is
    attached to this task or flow run); a failure there is logged, never raised."""

    def create_logged() -> None:
        try:
            create(**artifact)
        except Exception as exc:
            _warn(f"could not publish {what}: {exc}")

    future = _sender.submit(contextvars.copy_context().run, create_logged)
    with _pending_lock:
        _pending[:] = [f for f in _pending if not f.done()]
        _pending.append(future)


def flush_artifacts(timeout: float = FLUSH_TIMEOUT_SECONDS) -> int:
    """Wait until every artifact requested so far is stored; return how many were waited on."""
    with _pending_lock:
        pending = list(_pending)
    done, not_done = wait(pending, timeout=timeout)
    if not_done:
        _warn(f"{len(not_done)} artifact(s) not stored after {timeout:.0f} s")
    return len(pending)


@contextmanager
def artifacts_stored_at_the_end() -> Iterator[None]:
    """Around a flow's body: when the flow run has no parent (the nightly run, or a stage
    sub-flow rerun on its own) its artifacts are stored before it ends, failed or not (the
    process may end next, and a finished run's artifacts should be there to read). A
    sub-flow inside the nightly run leaves them to its parent and goes on."""
    try:
        yield
    finally:
        from prefect.context import FlowRunContext

        context = FlowRunContext.get()
        run = context.flow_run if context is not None else None
        if run is None or run.parent_task_run_id is None:
            flush_artifacts()


def _warn(message: str) -> None:
    """To the run's log when there is a run (so the UI shows it), else to the module log."""
    from prefect.exceptions import MissingContextError
    from prefect.logging import get_run_logger

    try:
        get_run_logger().warning(message)
    except MissingContextError:
        log.warning(message)
