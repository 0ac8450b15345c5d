"""The lifetime history per (customer, currency), folded from the counted orders.

The extract reads the orders the history counts (tasks/extract_history.history_query: the
filter and projection pushed down, the amount and discount as stored); this module is
the pure half: each row's net money becomes whole cents, round(amount × 100) minus
round(discount × 100) as tasks/money.to_cents rounds the period's rows; exact duplicate
rows (a transaction ingested twice) count once; then each (customer, currency) gets its
first and last order time, its net amount and its order count. The sum is of whole cents
held in float64, which is exact below 2**53 cents.

DuckDB folds the rows (`SELECT DISTINCT` then `GROUP BY`, on Arrow buffers, on every
core): at 10^6 customers, 9 M order rows, it took 2.6-3.1 s where the same fold in pandas
(`aggregate_history_pandas`, kept as the reference the tests compare with) took 7.9-8.6 s,
mostly hashing 9 M transaction ids and grouping on text keys. The rows come as the Arrow
table the reader typed; the cents are computed on it with Arrow's kernels (`net_cents_arrow`,
`net_cents`' twin), so the orders never become a pandas frame.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

ORDER_COLUMNS = (
    "transaction_id", "customer_id", "currency", "order_date", "amount", "discount_applied",
)
FOLD_MEMORY = "512MB"
HISTORY_COLUMNS = (
    "customer_id", "currency", "first_order_at", "last_order_at", "net_amount", "order_count",
)


def aggregate_history(orders: pd.DataFrame | pa.Table) -> pd.DataFrame:
    """One row per (customer_id, currency), sorted by them; a null currency is its own group
    (the metrics fill it with the reporting currency, as for the month's rows).

    `orders` is a frame, or the Arrow table a fast reader typed (tasks/sql_fastpath.read_query
    with `arrow=True`), which reaches DuckDB without a trip through pandas: at 10^6
    customers, 9 M orders, converting it to pandas, computing the cents there and converting
    back cost 1.0-1.3 s more wall time and 1.1 s more CPU (bench/README.md). The result is
    the same frame either way, typed as `orders` (or its `to_pandas()`) types its columns.
    """
    if isinstance(orders, pa.Table):
        _check_columns(orders.column_names)
        cents = net_cents_arrow(orders) if orders.num_rows else None
        if cents is None:  # no rows, or money of a kind only pandas parses (text)
            return aggregate_history(orders.to_pandas())
        dtypes = orders.schema.empty_table().to_pandas().dtypes
        table = orders.select(list(ORDER_COLUMNS)).append_column("net_cents", cents)
    else:
        _check_columns(orders.columns)
        if orders.empty:
            return _empty_history()
        dtypes = orders.dtypes
        table = pa.Table.from_pandas(  # NaN cents become null: left out of the sum, like pandas
            orders.loc[:, list(ORDER_COLUMNS)].assign(net_cents=net_cents(orders)), preserve_index=False
        )
    # Bounded: past FOLD_MEMORY DuckDB spills its hash tables to a temp folder instead of
    # growing (9 M rows: +0.7 GB RSS and 2.6 s at 512 MB, against +1.3 GB and 2.9 s unbounded).
    with (
        tempfile.TemporaryDirectory(prefix="cpp-history-") as spill,
        duckdb.connect(config={"memory_limit": FOLD_MEMORY, "temp_directory": spill}) as connection,
    ):
        connection.register("orders", table)
        folded = connection.sql(_FOLD_SQL).to_arrow_table().to_pandas()
    history = pd.DataFrame(
        {
            "customer_id": folded["customer_id"].astype(dtypes["customer_id"]),
            "currency": folded["currency"].astype(dtypes["currency"]),
            "first_order_at": folded["first_order_at"].astype(dtypes["order_date"]),
            "last_order_at": folded["last_order_at"].astype(dtypes["order_date"]),
            "net_amount": folded["net_cents"].astype("float64") / 100,
            "order_count": folded["order_count"].astype(np.int64),
        }
    )
    return history[list(HISTORY_COLUMNS)]


def net_cents(orders: pd.DataFrame) -> pd.Series:
    """Each order's net money in whole cents (float64): round(amount × 100) minus
    round(discount × 100), a missing discount being none, rounded as tasks/money.to_cents
    rounds (numpy's round). An amount that is not a number gives NaN, which no sum counts.

    Computed here rather than by the database: the same expression in SQL cost MariaDB a
    third of its work on the history's rows (S = 10^6: 18.7 against 13.2 CPU-s for 9 M
    rows), and the database's thread is what the history's read waits on.
    """
    amount = pd.to_numeric(orders["amount"], errors="coerce").astype("float64")
    discount = pd.to_numeric(orders["discount_applied"], errors="coerce").astype("float64")
    return np.round(amount * 100) - np.round(discount.fillna(0.0) * 100)


def net_cents_arrow(orders: pa.Table) -> pa.ChunkedArray | None:
    """`net_cents` on an Arrow table, value for value (NaN as null, as `pa.Table.from_pandas`
    makes it): numpy's round is Arrow's half_to_even at 0 digits. None when the amount or
    the discount is not a number column (text, as a loosely typed source gives it): that
    needs pandas' lenient parse."""
    money = [orders.column(name) for name in ("amount", "discount_applied")]
    if not all(pa.types.is_floating(c.type) or pa.types.is_integer(c.type) or pa.types.is_null(c.type) for c in money):
        return None
    amount, discount = (column.cast(pa.float64()) for column in money)
    discount = pc.fill_null(pc.if_else(pc.is_nan(discount), 0.0, discount), 0.0)  # pandas' fillna
    cents = pc.subtract(_whole_cents(amount), _whole_cents(discount))
    return pc.if_else(pc.is_nan(cents), pa.scalar(None, pa.float64()), cents)


def _whole_cents(money: pa.ChunkedArray) -> pa.ChunkedArray:
    return pc.round(pc.multiply(money, 100.0), 0, round_mode="half_to_even")


# Exact copies (every column equal, nulls equal; net_cents follows from the others) count
# once. Only rows sharing a transaction id (or both without one) can be copies, so only
# those go through DISTINCT; the rest, nearly all, go straight to the GROUP BY. At 10^6
# customers (9 M rows) that took the fold from 2.0-2.2 s to 1.7 s (CPU 4.1 -> 3.4 s) against
# a DISTINCT of every row, with the same result. ORDER BY as pandas' sorted groups: text in
# code-point order (DuckDB compares bytes: UTF-8 keeps that order), null last.
_FOLD_SQL = """
WITH shared AS (SELECT transaction_id FROM orders GROUP BY transaction_id HAVING count(*) > 1),
counted AS (
    SELECT * FROM orders ANTI JOIN shared USING (transaction_id) WHERE transaction_id IS NOT NULL
    UNION ALL
    SELECT DISTINCT * FROM (
        SELECT * FROM orders SEMI JOIN shared USING (transaction_id)
        UNION ALL
        SELECT * FROM orders WHERE transaction_id IS NULL
    )
)
SELECT customer_id, currency,
       min(order_date) AS first_order_at, max(order_date) AS last_order_at,
       coalesce(sum(net_cents), 0) AS net_cents, count(*) AS order_count
FROM counted
GROUP BY customer_id, currency
ORDER BY customer_id ASC NULLS LAST, currency ASC NULLS LAST
"""


def _check_columns(columns: Iterable[str]) -> None:
    present = set(columns)
    missing = [c for c in ORDER_COLUMNS if c not in present]
    if missing:
        raise ValueError(f"history orders lack columns {missing}")


def _empty_history() -> pd.DataFrame:
    empty = {name: pd.Series(dtype="object") for name in HISTORY_COLUMNS}
    empty["net_amount"] = pd.Series(dtype="float64")
    return pd.DataFrame(empty)


def aggregate_history_pandas(orders: pd.DataFrame) -> pd.DataFrame:
    """`aggregate_history` in pandas alone: the reference implementation."""
    _check_columns(orders.columns)
    if orders.empty:
        return _empty_history()
    # Only rows sharing a transaction id can be copies of each other: whole rows are
    # compared among those few (exact), sparing a hash of six columns of every row.
    shared_id = orders["transaction_id"].duplicated(keep=False).to_numpy(dtype=bool)
    copies = orders[shared_id].duplicated(subset=list(ORDER_COLUMNS)).to_numpy(dtype=bool)
    # Fold every row, then take the copies' cents and counts back out: no filtered copy
    # of millions of rows is made, and an exact copy cannot move a first or last order.
    history = _fold(orders, with_times=True)
    repeated = orders[shared_id][copies]
    if len(repeated):
        taken_back = _fold(repeated, with_times=False).reindex(history.index, fill_value=0)
        history["net_cents"] -= taken_back["net_cents"]
        history["order_count"] -= taken_back["order_count"]
    history = history.reset_index()
    history.insert(4, "net_amount", history.pop("net_cents") / 100)
    return history[list(HISTORY_COLUMNS)].astype({"order_count": "int64"})


def _fold(orders: pd.DataFrame, *, with_times: bool) -> pd.DataFrame:
    """Per (customer_id, currency): net cents, order count and, if asked, first/last time."""
    grouped = orders.assign(net_cents=net_cents(orders)).groupby(
        ["customer_id", "currency"], dropna=False, sort=True
    )
    times = (
        {"first_order_at": ("order_date", "min"), "last_order_at": ("order_date", "max")}
        if with_times else {}
    )
    return grouped.agg(
        **times, net_cents=("net_cents", "sum"), order_count=("order_date", "size")
    )
