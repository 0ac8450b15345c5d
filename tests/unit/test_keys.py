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
