"""Arrow hash lookups on text keys: the same answers as pandas' isin / reindex."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tasks.keys import isin_text, positions_in, take_aligned

pytestmark = pytest.mark.unit


def test_isin_text_answers_like_isin_and_a_null_is_never_a_member() -> None:
    values = pd.Series(["C1", "C2", None, "C4", " C1"], dtype="string")
    members = ["C1", "C4", None]
    assert isin_text(values, members).tolist() == [True, False, False, True, False]
    assert isin_text(values, set()).tolist() == [False] * 5
    assert isin_text(values, pd.Index(["C2"])).tolist() == [False, True, False, False, False]


def test_positions_in_is_get_indexer_for_text_keys() -> None:
    index = pd.Index(["C3", "C1", "C2"], dtype="string")
    keys = pd.Series(["C1", "C9", None, "C3", "C1"], dtype="string")
    assert positions_in(keys, index).tolist() == [1, -1, -1, 0, 1]
    expected = index.get_indexer(pd.Index(["C1", "C9", "C3", "C1"], dtype="string"))
    assert positions_in(keys.dropna(), index).tolist() == expected.tolist()


@pytest.mark.parametrize(
    "column",
    [
        pd.Series([5, 6, 7], dtype=np.int64),
        pd.Series([1.5, np.nan, 2.0]),
        pd.Series(pd.to_datetime(["2025-01-01", "2025-02-01", None], utc=True)),
        pd.Series([1, None, 3], dtype="Int64"),
        pd.Series(["a", None, "c"], dtype="string"),
    ],
    ids=["int64", "float64", "datetime-utc", "Int64", "string"],
)
def test_take_aligned_gives_what_reindex_gives(column: pd.Series) -> None:
    totals = column.set_axis(pd.Index(["x", "y", "z"], dtype="string"))
    ids = pd.Series(["z", "q", "x", "y"], dtype="string", index=[10, 11, 12, 13])
    expected = totals.reindex(pd.Index(ids.to_numpy())).set_axis(ids.index)
    taken = take_aligned(totals, positions_in(ids, totals.index), ids.index)
    pd.testing.assert_series_equal(taken, expected, check_names=False)


def test_the_duckdb_join_for_large_lookups_answers_like_arrow(monkeypatch: pytest.MonkeyPatch) -> None:
    """Large lookups are DuckDB joins; small ones Arrow's. Forced both ways on the same
    keys (nulls, repeats, near-misses, absent ids) the answers must be identical, and a
    value set with a repeated id still answers with its first position."""
    import tasks.keys as keys_module

    rng = np.random.default_rng(11)
    ids = [f"C{i}" for i in range(500)]
    index = pd.Index(ids, dtype="string")
    keys = pd.Series(rng.choice(ids + ["C9999", " C1", "c1", None], 3_000), dtype="string")
    members = pd.Series(rng.choice(ids + [None], 200), dtype="string")
    repeated = pd.Index(ids + ["C7", "C3"], dtype="string")  # C7 and C3 twice

    def answers() -> tuple[list, list, list]:
        return (isin_text(keys, members).tolist(), positions_in(keys, index).tolist(),
                positions_in(keys, repeated).tolist())

    monkeypatch.setattr(keys_module, "_JOIN_FROM_ROWS", 10**9)
    by_arrow = answers()
    monkeypatch.setattr(keys_module, "_JOIN_FROM_ROWS", 0)
    by_join = answers()
    assert by_join == by_arrow
    assert sum(by_join[0]) > 0 and by_join[0].count(False) > 0
    assert by_join[1] == index.get_indexer(keys.fillna("<null>")).tolist()
    first = {}
    for position, value in enumerate(repeated):
        first.setdefault(value, position)
    assert by_join[2] == [first.get(key, -1) if key is not pd.NA else -1 for key in keys]
    few = pd.Series(["C7", "C3", "C1"], dtype="string")
    assert positions_in(few, repeated).tolist() == [7, 3, 1]
