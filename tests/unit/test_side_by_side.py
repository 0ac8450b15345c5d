"""Independent pieces of a stage on two threads: same results, same context, no lost work."""

from __future__ import annotations

import contextvars
import threading
import time

import pytest

from tasks.side_by_side import run_side_by_side

pytestmark = pytest.mark.unit

_run = contextvars.ContextVar("run", default=None)


def test_results_come_back_in_call_order() -> None:
    def slow(value: int) -> int:
        time.sleep(0.05 if value == 0 else 0)  # the first call finishes last
        return value

    assert run_side_by_side(*(lambda v=v: slow(v) for v in range(4))) == [0, 1, 2, 3]


def test_the_pieces_really_run_on_two_threads() -> None:
    both_started = threading.Barrier(2, timeout=5)  # a single thread would never pass it

    def meet() -> str:
        both_started.wait()
        return threading.current_thread().name

    names = run_side_by_side(meet, meet)
    assert len(set(names)) == 2


def test_each_piece_sees_the_callers_context() -> None:
    """Prefect's run logger and artifacts find their task run through contextvars."""
    token = _run.set("task-run-1")
    try:
        assert run_side_by_side(_run.get, _run.get, _run.get) == ["task-run-1"] * 3
    finally:
        _run.reset(token)


def test_a_failure_is_raised_after_every_piece_has_finished() -> None:
    finished: list[str] = []

    def fails() -> None:
        raise ValueError("bad piece")

    def writes() -> str:
        time.sleep(0.1)
        finished.append("written")
        return "ok"

    with pytest.raises(ValueError, match="bad piece"):
        run_side_by_side(fails, writes)
    assert finished == ["written"]  # the stage did not end while a piece still wrote


def test_one_piece_or_one_worker_runs_inline() -> None:
    caller = threading.current_thread().name
    assert run_side_by_side(lambda: threading.current_thread().name) == [caller]
    assert run_side_by_side(
        lambda: threading.current_thread().name, lambda: threading.current_thread().name, workers=1
    ) == [caller, caller]
