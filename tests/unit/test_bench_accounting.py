"""The benchmark's data work counts time once when stages run side by side."""

from __future__ import annotations

import pytest

from bench.pipeline_probe import covered_seconds


@pytest.mark.parametrize(
    ("spans", "covered"),
    [
        ([], 0.0),
        ([(0.0, 2.0), (3.0, 4.0)], 3.0),  # one after the other: the sum
        ([(0.0, 2.0), (1.0, 3.0)], 3.0),  # the load and the export overlapping by 1 s
        ([(1.0, 3.0), (0.0, 2.0)], 3.0),  # order does not matter
        ([(0.0, 5.0), (1.0, 2.0)], 5.0),  # one inside the other
        ([(0.0, 1.0), (1.0, 2.0)], 2.0),  # touching
    ],
)
def test_covered_seconds_counts_overlap_once(spans: list[tuple[float, float]], covered: float) -> None:
    assert covered_seconds(spans) == pytest.approx(covered)
