"""Artifacts are sent by a background thread: a stage goes on while the API stores them.

The Prefect calls are replaced by recorders here (no server); that the stored artifacts
land on the right runs is checked against a real Prefect API in
tests/integration/test_security.py and tests/e2e/test_prefect_operations.py.
"""

from __future__ import annotations

import contextvars
import threading
from typing import Any

import pandas as pd
import pytest

import tasks.artifacts as artifacts

pytestmark = pytest.mark.unit

RUN = contextvars.ContextVar("run", default=None)  # stands in for Prefect's run context


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """create_table_artifact replaced: blocks until released, records what it was given,
    in which thread and under which run context."""
    seen: dict[str, Any] = {"calls": [], "release": threading.Event(), "warnings": []}

    def create(**artifact: Any) -> None:
        seen["release"].wait(10)
        if artifact["key"].endswith("broken"):
            raise RuntimeError("API down")
        seen["calls"].append({**artifact, "thread": threading.current_thread().name, "run": RUN.get()})

    monkeypatch.setattr(artifacts, "create_table_artifact", create)
    monkeypatch.setattr(artifacts, "_warn", seen["warnings"].append)
    return seen


def test_a_preview_is_sent_in_the_background_in_the_callers_run_context(recorder: dict) -> None:
    frame = pd.DataFrame({"customer_id": ["C1", "C2"], "email": ["ada@example.com", None]})
    RUN.set("task-run-1")
    artifacts.publish_preview("validate-data", "customers", frame, {"rows": 2})
    # publish_preview has returned while the API call is still blocked: nothing stored yet
    assert recorder["calls"] == []
    frame.loc[0, "customer_id"] = "changed later by the stage"  # the preview was taken already
    recorder["release"].set()
    assert artifacts.flush_artifacts() >= 1
    (call,) = recorder["calls"]
    assert call["key"] == "validate-data-customers"
    assert call["thread"].startswith("artifacts")
    assert call["run"] == "task-run-1"
    assert call["table"][0] == {"customer_id": "C1", "email": "a***@example.com"}


def test_a_failed_send_is_a_warning_never_an_error(recorder: dict) -> None:
    recorder["release"].set()
    artifacts.publish_table("broken", pd.DataFrame({"rule": ["x"]}), "a report")
    artifacts.flush_artifacts()
    assert recorder["calls"] == []
    assert recorder["warnings"] == ["could not publish broken: API down"]


def test_the_outermost_flow_run_waits_for_its_artifacts_even_when_it_fails(recorder: dict) -> None:
    with pytest.raises(ValueError, match="stage failed"), artifacts.artifacts_stored_at_the_end():
        artifacts.publish_preview("aggregate", "regional-summary", pd.DataFrame({"a": [1]}), {})
        threading.Timer(0.2, recorder["release"].set).start()
        raise ValueError("stage failed")
    # no flow run here, so this is the outermost: the context waited for the send
    assert [c["key"] for c in recorder["calls"]] == ["aggregate-regional-summary"]
