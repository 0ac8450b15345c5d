"""Measuring helpers shared by the pipeline probe, the naive baseline and the floor.

- `RssSampler`: a daemon thread that samples resident memory every 25 ms (this process, or
  this process plus its worker children, e.g. a Dask LocalCluster), so each stage gets the
  peak reached while it ran, even when stages overlap or run in other processes.
- `StageClock`: wall time, rows and peak RSS of the named stages of a plain Python run.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
MB = 1024 * 1024


def process_rss(pid: int) -> int:
    """Resident bytes of one process (0 when it is gone)."""
    try:
        resident = Path(f"/proc/{pid}/statm").read_text().split()[1]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return 0
    return int(resident) * PAGE_BYTES


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return ""


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (children of all its threads, recursively)."""
    found: list[int] = []
    stack = [pid]
    while stack:
        parent = stack.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except FileNotFoundError:
            continue
        for tid in tasks:
            try:
                text = Path(f"/proc/{parent}/task/{tid}/children").read_text()
            except FileNotFoundError:
                continue
            for child in text.split():
                found.append(int(child))
                stack.append(int(child))
    return found


def is_orchestrator(pid: int) -> bool:
    """The ephemeral Prefect API server: the orchestrator's, not the pipeline's memory."""
    command = _command(pid)
    return "uvicorn" in command or "prefect.server" in command or " server start" in command


def peak_rss_self() -> int:
    """The kernel's high-water mark of this process (VmHWM), in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


@dataclass
class RssSampler:
    """Samples (unix time, bytes) in a daemon thread until `stop()`."""

    include_children: bool = False
    interval: float = 0.025
    samples: list[tuple[float, int]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def current(self) -> int:
        pid = os.getpid()
        total = process_rss(pid)
        if self.include_children:
            total += sum(process_rss(p) for p in descendants(pid) if not is_orchestrator(p))
        return total

    def start(self) -> RssSampler:
        def loop() -> None:
            while not self._stop.is_set():
                self.samples.append((time.time(), self.current()))
                self._stop.wait(self.interval)

        self._thread = threading.Thread(target=loop, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self.samples.append((time.time(), self.current()))

    def peak(self, start: float | None = None, end: float | None = None) -> int:
        """The largest sample in [start, end] (everything when unbounded)."""
        chosen = [
            rss for at, rss in self.samples
            if (start is None or at >= start - self.interval) and (end is None or at <= end + self.interval)
        ]
        return max(chosen, default=0)


@dataclass
class Stage:
    name: str
    seconds: float
    rows: int
    peak_rss: int
    started: float = 0.0

    def as_dict(self) -> dict[str, object]:
        return {"stage": self.name, "seconds": self.seconds, "rows": self.rows,
                "peak_rss_mb": round(self.peak_rss / MB, 1)}


@dataclass
class StageClock:
    """Times named stages of a plain Python run (the naive baseline, the floor)."""

    sampler: RssSampler
    stages: list[Stage] = field(default_factory=list)

    @contextmanager
    def stage(self, name: str, rows: Callable[[], int] | int = 0) -> Iterator[dict[str, int]]:
        """Time the block; `counter["rows"]` may be set inside it instead of `rows`."""
        counter: dict[str, int] = {"rows": rows if isinstance(rows, int) else 0}
        started = time.time()
        yield counter
        ended = time.time()
        count = rows() if callable(rows) else counter["rows"]
        self.stages.append(Stage(name, ended - started, count, self.sampler.peak(started, ended), started))
