"""The lifetime history folded from the counted orders (tasks/history.py), on tiny frames."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.history import (
    HISTORY_COLUMNS,
    aggregate_history,
    aggregate_history_pandas,
    net_cents,
    net_cents_arrow,
)

pytestmark = pytest.mark.unit


def orders(rows: list[tuple]) -> pd.DataFrame:
    frame = pd.DataFrame(
        rows,
        columns=["transaction_id", "customer_id", "currency", "order_date", "amount", "discount_applied"],
    )
    frame["order_date"] = pd.to_datetime(frame["order_date"], utc=True)
    return frame


def test_an_order_ingested_twice_counts_once_and_a_repeated_id_with_other_content_twice() -> None:
    history = aggregate_history(
        orders(
            [
                ("T1", "C1", "USD", "2025-01-05 10:00", 10.00, None),
                ("T1", "C1", "USD", "2025-01-05 10:00", 10.00, None),  # exact copy: once
                ("T2", "C1", "USD", "2025-03-01 09:00", 20.50, 1.00),  # 20.50 - 1.00 discount
                ("T2", "C1", "USD", "2025-03-02 09:00", 20.50, 1.00),  # same id, other time
            ]
        )
    )
    assert list(history.columns) == list(HISTORY_COLUMNS)
    [row] = history.to_dict("records")
    # 1000 + 1950 + 1950 cents: the copy is dropped, the differing row is not.
    assert row["net_amount"] == 49.00
    assert row["order_count"] == 3
    assert row["first_order_at"] == pd.Timestamp("2025-01-05 10:00", tz="UTC")
    assert row["last_order_at"] == pd.Timestamp("2025-03-02 09:00", tz="UTC")


def test_one_row_per_customer_and_currency_sorted_with_a_null_currency_as_its_own_group() -> None:
    history = aggregate_history(
        orders(
            [
                ("T3", "C2", "EUR", "2025-02-01", 5.00, None),
                ("T1", "C1", None, "2025-02-01", 1.00, None),
                ("T2", "C1", "USD", "2025-02-01", 2.00, None),
                ("T4", "C2", "EUR", "2025-02-03", 7.00, None),
            ]
        )
    )
    keys = list(zip(history["customer_id"], history["currency"].fillna("<null>"), strict=True))
    assert keys == [("C1", "USD"), ("C1", "<null>"), ("C2", "EUR")]
    assert history["net_amount"].tolist() == [2.00, 1.00, 12.00]
    assert history["order_count"].tolist() == [1, 1, 2]


def test_cents_sum_exactly_where_float_dollars_would_drift() -> None:
    # 0.1 + 0.2 in float dollars is 0.30000000000000004; as cents it is 30.
    history = aggregate_history(
        orders([("T1", "C1", "USD", "2025-02-01", 0.10, None), ("T2", "C1", "USD", "2025-02-02", 0.20, 0.0)])
    )
    assert history["net_amount"].tolist() == [0.30]


def test_no_orders_gives_the_empty_history_and_missing_columns_are_named() -> None:
    empty = aggregate_history(orders([]))
    assert list(empty.columns) == list(HISTORY_COLUMNS)
    assert empty.empty
    with pytest.raises(ValueError, match="discount_applied"):
        aggregate_history(orders([]).drop(columns="discount_applied"))


def test_copies_in_a_null_currency_group_are_taken_back_out_of_that_group_only() -> None:
    history = aggregate_history(
        orders(
            [
                ("T1", "C1", None, "2025-02-01", 3.00, 0.0),
                ("T1", "C1", None, "2025-02-01", 3.00, 0.0),  # exact copy
                ("T1", "C1", None, "2025-02-01", 3.00, 0.0),  # and another
                ("T2", "C1", "USD", "2025-02-02", 4.00, 0.0),
            ]
        )
    )
    by_currency = dict(zip(history["currency"].fillna("<null>"), history["net_amount"], strict=True))
    assert by_currency == {"USD": 4.00, "<null>": 3.00}
    assert history["order_count"].tolist() == [1, 1]


def messy_orders() -> pd.DataFrame:
    """Ids that repeat, exact copies, no-number amounts, missing times and ids, a null
    currency, a non-ASCII key: what the fold must treat alike on every path."""
    rng = np.random.default_rng(11)
    n = 5_000
    frame = pd.DataFrame(
        {
            "transaction_id": [f"T{i}" for i in rng.integers(0, 4_000, n)],  # ids repeat
            "customer_id": [f"C{i}" for i in rng.integers(0, 300, n)],
            "currency": rng.choice(np.array(["USD", "EUR", "GBP", None], dtype=object), n),
            "order_date": pd.to_datetime("2024-01-01", utc=True)
            + pd.to_timedelta(rng.integers(0, 400 * 86_400, n), unit="s"),
            "amount": rng.integers(1, 50_000, n) / 100,
        }
    )
    frame["discount_applied"] = np.where(rng.random(n) < 0.3, rng.integers(0, 500, n) / 100, np.nan)
    copies = frame.sample(600, random_state=3)  # exact re-ingested rows
    frame = pd.concat([frame, copies], ignore_index=True)
    frame.loc[[1, 2], "amount"] = np.nan  # not a number: no cents, still an order
    frame.loc[[3, 4], "order_date"] = pd.NaT
    frame.loc[5, "customer_id"] = "Zoë"  # non-ASCII keys sort by code point in both
    frame.loc[[6, 7, 8], "transaction_id"] = None  # rows without an id: copies of each other?
    return pd.concat([frame, frame.loc[[6, 7]]], ignore_index=True)  # two of them, yes


def test_the_duckdb_fold_gives_the_pandas_reference_frame_exactly() -> None:
    frame = messy_orders()
    expected = aggregate_history_pandas(frame)
    folded = aggregate_history(frame)
    pd.testing.assert_frame_equal(folded, expected)
    assert int(folded["order_count"].sum()) < len(frame)  # the copies were dropped


def typed_table(frame: pd.DataFrame) -> pa.Table:
    """The orders as the fast readers hand them over: Arrow text, UTC instants, doubles."""
    schema = pa.schema(
        [("transaction_id", pa.string()), ("customer_id", pa.string()), ("currency", pa.string()),
         ("order_date", pa.timestamp("us", tz="UTC")), ("amount", pa.float64()), ("discount_applied", pa.float64())]
    )
    return pa.Table.from_pandas(frame, schema=schema, preserve_index=False)


def test_the_readers_arrow_table_folds_to_the_frame_its_pandas_copy_folds_to() -> None:
    table = typed_table(messy_orders())
    folded = aggregate_history(table)
    pd.testing.assert_frame_equal(folded, aggregate_history(table.to_pandas()))
    pd.testing.assert_frame_equal(folded, aggregate_history_pandas(table.to_pandas()))
    assert str(folded["first_order_at"].dtype) == "datetime64[us, UTC]"  # not DuckDB's Etc/UTC


def test_an_arrow_table_with_text_money_or_no_rows_takes_the_pandas_path() -> None:
    frame = messy_orders().head(50)
    text = typed_table(frame).set_column(4, "amount", pa.array(frame["amount"].map(lambda v: f"{v:.2f}".replace(".", ","))))
    # '12,50' is no number to pandas' parse either: the same frame as the pandas path's
    pd.testing.assert_frame_equal(aggregate_history(text), aggregate_history(text.to_pandas()))
    empty = aggregate_history(typed_table(frame).slice(0, 0))
    assert list(empty.columns) == list(HISTORY_COLUMNS) and empty.empty
    with pytest.raises(ValueError, match="discount_applied"):
        aggregate_history(typed_table(frame).drop_columns(["discount_applied"]))


money = st.one_of(
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-10**9, 10**9).map(lambda i: i / 200),  # half cents: the ties
    st.decimals(min_value=-10**6, max_value=10**6, places=3).map(float),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(money, money), min_size=1, max_size=40))
def test_arrow_cents_are_pandas_cents_bit_for_bit(pairs: list[tuple[float | None, float | None]]) -> None:
    frame = pd.DataFrame(pairs, columns=["amount", "discount_applied"], dtype="float64")
    expected = net_cents(frame).to_numpy()
    # Arrow keeps None (null) and NaN apart; pandas sees both as missing
    table = pa.table({name: pa.array([pair[i] for pair in pairs], pa.float64()) for i, name in enumerate(frame.columns)})
    got = net_cents_arrow(table).to_numpy(zero_copy_only=False)
    got = np.asarray(got, dtype="float64")  # None (a null) as NaN
    assert np.isnan(got).tolist() == np.isnan(expected).tolist()  # NaN cents: null, as from_pandas makes them
    keep = ~np.isnan(expected)
    assert got[keep].view(np.int64).tolist() == expected[keep].view(np.int64).tolist()  # -0.0 included


def test_net_cents_round_as_the_period_metrics_do_and_a_missing_discount_is_none() -> None:
    from tasks.money import to_cents

    frame = pd.DataFrame(
        {
            "amount": [19.99, 0.125, 1e6 + 0.01, 7.0, 0.3],
            "discount_applied": [1.005, None, 0.015, np.nan, 0.1],
        }
    )
    want = to_cents(frame["amount"]) - to_cents(frame["discount_applied"], null_as_zero=True)
    assert net_cents(frame).tolist() == want.astype(float).tolist()
    text = frame.astype({"amount": "string", "discount_applied": "string"})  # as a text reader gives it
    assert net_cents(text).tolist() == want.astype(float).tolist()
    assert np.isnan(net_cents(pd.DataFrame({"amount": ["12,50"], "discount_applied": [None]}))[0])
