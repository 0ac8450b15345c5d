"""Serve the benchmark's interactions through the CRM stand-in, in a process of its own.

The pipeline reaches it like a real CRM (through a `CrmApiCredentials` block), so neither
its memory nor its CPU is counted as the pipeline's.

The stand-in's `in_range` scans every record on every page request: O(records × pages),
about 690 M comparisons for one month at S = 1,000,000. A real CRM answers a date range
from an index, so here the records (which the stand-in keeps sorted by date, undated last)
are cut with a binary search instead. Same records, same order, same pages.

    python -m bench.crm_serve --parquet interactions.parquet --token T --ready-file url.txt
"""

from __future__ import annotations

import argparse
import bisect
import logging
import threading
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

import demo.crm_server as crm

logger = logging.getLogger(__name__)

MAX_PAGE_SIZE = 10_000


def indexed_in_range(records: Sequence[Mapping[str, Any]], instants: Sequence[datetime | None],
                     start: datetime | None, end: datetime | None) -> list[Mapping[str, Any]]:
    """`crm.in_range` by binary search: `instants` is sorted with the undated (None) last."""
    if start is None and end is None:
        return list(records)
    dated = bisect.bisect_left(instants, True, key=lambda at: at is None)
    low = 0 if start is None else bisect.bisect_left(instants, start, 0, dated)
    high = dated if end is None else bisect.bisect_left(instants, end, 0, dated)
    return list(records[low:high])


def serve(parquet: Path, token: str, ready_file: Path, port: int = 0) -> None:
    """Serve until killed; write the base URL to `ready_file` once listening."""
    frame = pd.read_parquet(parquet)
    crm.in_range = indexed_in_range  # type: ignore[assignment]  # see the module docstring
    stand_in = crm.CrmStandIn.from_frame(
        frame, token=token, auth="bearer", pagination="page", max_page_size=MAX_PAGE_SIZE, port=port
    )
    del frame
    with stand_in as server:
        temp = ready_file.with_suffix(".tmp")
        temp.write_text(server.base_url)
        temp.replace(ready_file)
        logger.info("CRM stand-in: %d records at %s", len(server.records), server.base_url)
        threading.Event().wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parquet", type=Path, required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--ready-file", type=Path, required=True)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    serve(args.parquet, args.token, args.ready_file, args.port)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
