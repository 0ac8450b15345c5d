"""The lifetime history folded from the counted orders (tasks/history.py), on tiny frames."""

from __future__ import annotations

import pandas as pd
import pytest

from tasks.history import HISTORY_COLUMNS, aggregate_history

pytestmark = pytest.mark.unit


def orders(rows: list[tuple]) -> pd.DataFrame:
    frame = pd.DataFrame(
        rows, columns=["transaction_id", "customer_id", "currency", "order_date", "amount", "net_cents"]
    )
    frame["order_date"] = pd.to_datetime(frame["order_date"], utc=True)
    return frame


def test_an_order_ingested_twice_counts_once_and_a_repeated_id_with_other_content_twice() -> None:
    history = aggregate_history(
        orders(
            [
                ("T1", "C1", "USD", "2025-01-05 10:00", 10.00, 1000.0),
                ("T1", "C1", "USD", "2025-01-05 10:00", 10.00, 1000.0),  # exact copy: once
                ("T2", "C1", "USD", "2025-03-01 09:00", 20.50, 1950.0),  # 20.50 - 1.00 discount
                ("T2", "C1", "USD", "2025-03-02 09:00", 20.50, 1950.0),  # same id, other time
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
                ("T3", "C2", "EUR", "2025-02-01", 5.00, 500.0),
                ("T1", "C1", None, "2025-02-01", 1.00, 100.0),
                ("T2", "C1", "USD", "2025-02-01", 2.00, 200.0),
                ("T4", "C2", "EUR", "2025-02-03", 7.00, 700.0),
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
        orders([("T1", "C1", "USD", "2025-02-01", 0.10, 10.0), ("T2", "C1", "USD", "2025-02-02", 0.20, 20.0)])
    )
    assert history["net_amount"].tolist() == [0.30]


def test_no_orders_gives_the_empty_history_and_missing_columns_are_named() -> None:
    empty = aggregate_history(orders([]))
    assert list(empty.columns) == list(HISTORY_COLUMNS)
    assert empty.empty
    with pytest.raises(ValueError, match="net_cents"):
        aggregate_history(orders([]).drop(columns="net_cents"))


def test_copies_in_a_null_currency_group_are_taken_back_out_of_that_group_only() -> None:
    history = aggregate_history(
        orders(
            [
                ("T1", "C1", None, "2025-02-01", 3.00, 300.0),
                ("T1", "C1", None, "2025-02-01", 3.00, 300.0),  # exact copy
                ("T1", "C1", None, "2025-02-01", 3.00, 300.0),  # and another
                ("T2", "C1", "USD", "2025-02-02", 4.00, 400.0),
            ]
        )
    )
    by_currency = dict(zip(history["currency"].fillna("<null>"), history["net_amount"], strict=True))
    assert by_currency == {"USD": 4.00, "<null>": 3.00}
    assert history["order_count"].tolist() == [1, 1]


def test_the_duckdb_fold_gives_the_pandas_reference_frame_exactly() -> None:
    import numpy as np

    from tasks.history import aggregate_history_pandas

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
    frame["net_cents"] = (frame["amount"] * 100).round()
    copies = frame.sample(600, random_state=3)  # exact re-ingested rows
    frame = pd.concat([frame, copies], ignore_index=True)
    frame.loc[[1, 2], "net_cents"] = np.nan
    frame.loc[[3, 4], "order_date"] = pd.NaT
    frame.loc[5, "customer_id"] = "Zoë"  # non-ASCII keys sort by code point in both
    expected = aggregate_history_pandas(frame)
    folded = aggregate_history(frame)
    pd.testing.assert_frame_equal(folded, expected)
    assert int(folded["order_count"].sum()) < len(frame)  # the copies were dropped
