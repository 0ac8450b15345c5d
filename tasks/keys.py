"""Hash lookups on text keys (customer ids, statuses), done by Arrow.

pandas 3 keeps text in Arrow arrays, but its `isin` turns the value set into Python
scalars one by one, and `reindex` / `map` on a text index hash through Python objects:
at a million customers (cProfile, bench data) reindexing took 4.2 of the 7.7 s of
`customer_metrics`, and isin + map 3.8 of the 11.2 s of the aggregation stage. Arrow's
`is_in` / `index_in` hash the same keys in C++ (6x faster than `Index.get_indexer` for
1 M ids in 400 k, and without a Python object per key).

A null key is never found, and a null in the value set matches nothing.

Large lookups go to DuckDB instead (`_JOIN_FROM_ROWS`): Arrow hashes on one thread, and
at 10^6 customers a lookup of the ~900 k transactions' ids in the 10^6 customers' took
0.69 s there against 0.23 s as a DuckDB join on both cores (same answers); the
validation and aggregation stages make several such lookups per run.
"""

from __future__ import annotations

from collections.abc import Iterable

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

# The value-set size from which a DuckDB join beats Arrow's lookup (medians of 5): at
# 10^6 ids 0.26-0.29 s against 0.57-0.66 s; at 10^5 Arrow wins (0.02-0.05 s against
# 0.06-0.09 s: DuckDB's start-up), as against a few values (a status list, 900 k keys).
_JOIN_FROM_ROWS = 400_000


def _text(values: pd.Series | pd.Index | Iterable[str]) -> pa.Array:
    series = pd.Series(values if isinstance(values, pd.Series | pd.Index) else list(values))
    array = pa.array(series.astype("string"), from_pandas=True)
    array = array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array
    return array.cast(pa.large_string())


def isin_text(values: pd.Series, members: pd.Series | pd.Index | Iterable[str]) -> np.ndarray:
    """Boolean array: is each value (as text) one of `members`?"""
    value_set = pc.drop_null(_text(members))
    keys = _text(values)
    if len(value_set) >= _JOIN_FROM_ROWS:
        found = np.zeros(len(keys), dtype=bool)
        found[_joined(keys, value_set, "SELECT k.rn FROM k SEMI JOIN v USING (key)")["rn"]] = True
        return found
    found = pc.is_in(keys, value_set=value_set)
    return found.fill_null(False).to_numpy(zero_copy_only=False).astype(bool)


def positions_in(keys: pd.Series, index: pd.Index | pd.Series) -> np.ndarray:
    """Position of each key in `index` (unique text keys), -1 where it is absent.

    `index.get_indexer(keys)`, for text; look a table up once and `take` every column with
    the result instead of reindexing column by column.
    """
    value_set = _text(index)
    key_text = _text(keys)
    if len(value_set) >= _JOIN_FROM_ROWS:
        pairs = _joined(key_text, value_set, "SELECT k.rn, v.pos FROM k JOIN v USING (key)")
        positions = np.full(len(key_text), -1, dtype=np.intp)
        positions[pairs["rn"]] = pairs["pos"]
        if len(pairs["rn"]) == int((positions >= 0).sum()):
            return positions
        # A repeated index value matched some key twice; index_in answers with its first.
    positions = pc.index_in(key_text, value_set=value_set, skip_nulls=True)
    return positions.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.intp)


def _joined(keys: pa.Array, value_set: pa.Array, sql: str) -> dict[str, np.ndarray]:
    """`sql` over k(key, rn) and v(key, pos): each side's text with its row positions.

    SQL equality never matches a null, as Arrow's lookups never do. The join's output
    comes in no particular order; the callers place it by rn.
    """
    with duckdb.connect() as connection:
        connection.register("k", pa.table({"key": keys, "rn": np.arange(len(keys), dtype=np.int64)}))
        connection.register(
            "v", pa.table({"key": value_set, "pos": np.arange(len(value_set), dtype=np.int64)})
        )
        result = connection.sql(sql).to_arrow_table()
    return {name: result[name].to_numpy() for name in result.column_names}


def take_aligned(column: pd.Series, positions: np.ndarray, index: pd.Index) -> pd.Series:
    """`column`'s values at `positions` (from `positions_in`), missing (NaN/NaT/NA) at -1,
    with the dtype `Series.reindex` would give; labelled by `index`."""
    taken = pd.api.extensions.take(column.array, positions, allow_fill=True)
    return pd.Series(taken, index=index, name=column.name)
