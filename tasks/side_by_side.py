"""Independent pieces of one stage, run on two threads.

A stage's pandas and Arrow work runs on one core (its CPU time equals its wall time), while
the machines this runs on have two or more. Where a stage does separate things (one per
source, say), the heavy kernels of one (Arrow takes and hashing, DuckDB, file writes)
release the GIL while the other runs Python. Measured at S = 10⁶ on the bench's staged
data (bench/README.md, "the middle stages side by side"); at S = 100 k it makes no
difference either way.

Each piece runs in a copy of the caller's context, so Prefect's run logger and the UI
artifacts it publishes belong to the calling task, as they would without threads.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

R = TypeVar("R")

WORKERS = 2  # beyond two, the GIL-bound parts queue up: three were no faster than two


def run_side_by_side(*calls: Callable[[], R], workers: int = WORKERS) -> list[R]:
    """[call() for call in calls], on `workers` threads, results in call order.

    Every call is waited for; the first failure (in call order) is then raised, so a stage
    never ends while one of its pieces still writes.
    """
    if len(calls) < 2 or workers < 2:
        return [call() for call in calls]
    with ThreadPoolExecutor(max_workers=min(workers, len(calls)), thread_name_prefix="stage") as pool:
        futures = [pool.submit(contextvars.copy_context().run, call) for call in calls]
    return [future.result() for future in futures]
