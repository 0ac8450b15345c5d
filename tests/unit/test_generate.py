"""The demo generator: deterministic, to scale, with exactly the documented defects."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from demo import generate
from demo.generate import (
    DEFECT_KINDS,
    KNOWN_CURRENCIES,
    expected_defect_count,
    generate_frames,
    write_demo,
)
from tasks.settings import CUSTOMER_FIELDS, INTERACTION_FIELDS, TRANSACTION_FIELDS

pytestmark = pytest.mark.unit

SANE_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")  # the pattern SPEC §5 names
STAMP = "%Y-%m-%d %H:%M:%S"
TEXT_TIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")


@pytest.fixture(scope="module")
def data() -> generate.DemoData:
    # 1,000 customers: every defect count below is a whole number, worked out by hand.
    return generate_frames(customers=1_000, seed=11)


def test_same_seed_gives_identical_frames_and_another_seed_does_not() -> None:
    first, second = generate_frames(customers=200, seed=3), generate_frames(customers=200, seed=3)
    for name in ("customers", "transactions", "interactions"):
        pd.testing.assert_frame_equal(getattr(first, name), getattr(second, name))
    assert first.defects == second.defects
    other = generate_frames(customers=200, seed=4)
    assert not first.transactions.equals(other.transactions)


def test_scale_is_10x_transactions_and_3x_interactions(data: generate.DemoData) -> None:
    # 1,000 customers -> 10,000 transaction rows (duplicates included) and 3,000 interactions.
    assert len(data.customers) == 1_000
    assert len(data.transactions) == 10_000
    assert len(data.interactions) == 3_000
    assert data.customers["customer_id"].is_unique
    assert data.interactions["interaction_id"].is_unique


def test_columns_are_the_canonical_fields_in_order(data: generate.DemoData) -> None:
    assert tuple(data.customers.columns) == CUSTOMER_FIELDS
    assert tuple(data.transactions.columns) == TRANSACTION_FIELDS
    assert tuple(data.interactions.columns) == INTERACTION_FIELDS


def test_defect_counts_are_rate_times_rows(data: generate.DemoData) -> None:
    expected = {
        "missing_email": 20,  # 2 % of 1,000 customers
        "malformed_email": 5,  # 0.5 % of 1,000
        "duplicate_transaction_id": 100,  # 1 % of 10,000 transaction rows
        "negative_amount": 30,  # 0.3 % of 10,000
        "unknown_currency": 20,  # 0.2 % of 10,000
        "orphan_transaction_customer": 50,  # 0.5 % of 10,000
        "unparseable_order_date": 20,  # 0.2 % of 10,000
        "orphan_interaction_customer": 15,  # 0.5 % of 3,000 interactions
        "satisfaction_out_of_range": 30,  # 1 % of 3,000
    }
    assert {kind: record["count"] for kind, record in data.defects.items()} == expected
    assert {kind: len(record["ids"]) for kind, record in data.defects.items()} == expected
    assert set(DEFECT_KINDS) == set(expected)


def _found(data: generate.DemoData) -> dict[str, set[str]]:
    """Each defect, detected from the frames alone (independently of the generator)."""
    customers, transactions, interactions = data.customers, data.transactions, data.interactions
    known_customers = set(customers["customer_id"])
    email = customers["email"]
    order_date = pd.to_datetime(transactions["order_date"], format=STAMP, errors="coerce")
    score = interactions["satisfaction_score"]
    return {
        "missing_email": set(customers.loc[email.isna(), "customer_id"]),
        "malformed_email": set(
            customers.loc[email.notna() & ~email.fillna("").str.match(SANE_EMAIL), "customer_id"]
        ),
        "duplicate_transaction_id": set(
            transactions.loc[transactions["transaction_id"].duplicated(), "transaction_id"]
        ),
        "negative_amount": set(transactions.loc[transactions["amount"] < 0, "transaction_id"]),
        "unknown_currency": set(
            transactions.loc[~transactions["currency"].isin(KNOWN_CURRENCIES), "transaction_id"]
        ),
        "orphan_transaction_customer": set(
            transactions.loc[~transactions["customer_id"].isin(known_customers), "transaction_id"]
        ),
        "unparseable_order_date": set(transactions.loc[order_date.isna(), "transaction_id"]),
        "orphan_interaction_customer": set(
            interactions.loc[~interactions["customer_id"].isin(known_customers), "interaction_id"]
        ),
        "satisfaction_out_of_range": set(
            interactions.loc[score.notna() & ~score.between(1, 5), "interaction_id"]
        ),
    }


def test_recorded_defect_rows_are_exactly_the_anomalous_rows(data: generate.DemoData) -> None:
    # Found from the data: no clean row looks defective, no recorded row looks clean.
    found = _found(data)
    for kind, record in data.defects.items():
        assert found[kind] == set(record["ids"]), kind


def test_duplicates_are_exact_copies(data: generate.DemoData) -> None:
    transactions = data.transactions
    repeated = transactions[transactions["transaction_id"].duplicated(keep=False)]
    # 100 ids, each twice, and every pair identical in every column.
    assert len(repeated) == 200
    assert len(repeated.drop_duplicates()) == 100


def test_no_row_carries_two_defects(data: generate.DemoData) -> None:
    kinds = list(data.defects)
    for i, first in enumerate(kinds):
        for second in kinds[i + 1:]:
            overlap = set(data.defects[first]["ids"]) & set(data.defects[second]["ids"])
            assert not overlap, (first, second, sorted(overlap)[:3])
    # A negative amount is the row's only problem: it is completed, so it would count as revenue.
    negative = data.transactions[data.transactions["amount"] < 0]
    assert set(negative["status"]) == {"completed"}


def test_defect_months_are_the_rows_months(data: generate.DemoData) -> None:
    dates = {
        "customers": data.customers.set_index("customer_id")["created_at"],
        "transactions": data.transactions.drop_duplicates("transaction_id").set_index(
            "transaction_id")["order_date"],
        "interactions": data.interactions.set_index("interaction_id")["interaction_date"],
    }
    for kind, record in data.defects.items():
        source = DEFECT_KINDS[kind][0]
        # A garbled date keeps its month prefix, so the text's first 7 characters are the month.
        actual = [dates[source][row_id][:7] for row_id in record["ids"]]
        assert record["months"] == actual, kind


def test_garbled_dates_keep_their_month_prefix(data: generate.DemoData) -> None:
    ids = set(data.defects["unparseable_order_date"]["ids"])
    garbled = data.transactions.loc[data.transactions["transaction_id"].isin(ids), "order_date"]
    # e.g. '2025-07-3x 10:00:00': textually inside its month, but no date parser accepts it.
    assert garbled.str.match(r"^\d{4}-\d{2}-\d[^\d]").all()


def test_expected_defect_count_per_month() -> None:
    # Three rows: two in July, one in June.
    defects = {"negative_amount": {"ids": ["T1", "T2", "T3"],
                                   "months": ["2025-07", "2025-06", "2025-07"]}}
    assert expected_defect_count(defects, "negative_amount", "2025-07") == 2
    assert expected_defect_count(defects, "negative_amount", "2025-05") == 0
    assert expected_defect_count(defects, "negative_amount") == 3


def test_facts_fall_in_the_13_month_window(data: generate.DemoData) -> None:
    valid = pd.to_datetime(data.transactions["order_date"], format=STAMP, errors="coerce")
    interaction = pd.to_datetime(data.interactions["interaction_date"], format="%Y-%m-%d %H:%M:%S")
    for stamps in (valid.dropna(), interaction):
        assert stamps.min() >= pd.Timestamp("2024-07-01")
        assert stamps.max() < pd.Timestamp("2025-08-01")
    # Both demo-relevant months and their previous months hold facts.
    months = set(data.transactions["order_date"].str[:7])
    assert {"2025-05", "2025-06", "2025-07"} <= months


def test_shape_is_realistic(data: generate.DemoData) -> None:
    transactions, customers = data.transactions, data.customers
    currency_share = transactions["currency"].value_counts(normalize=True)
    assert currency_share.idxmax() == "USD"
    assert set(generate.KNOWN_CURRENCIES) <= set(currency_share.index)
    assert 0.85 < (transactions["status"] == "completed").mean() < 0.95
    assert (transactions["discount_applied"] <= transactions["amount"].abs()).all()
    assert (transactions["tax_amount"] >= 0).all() and (transactions["quantity"] >= 1).all()
    # Heavy tail: the top 20 % of buyers bring far more than 20 % of revenue.
    revenue = transactions[transactions["amount"] > 0].groupby("customer_id")["amount"].sum()
    top = revenue.sort_values(ascending=False).head(len(revenue) // 5).sum()
    assert top / revenue.sum() > 0.4
    # Some customers registered in the 30 days before 2025-08-01; statuses vary.
    assert (customers["registration_date"] >= "2025-07-02").any()
    assert set(customers["status"]) == {"active", "inactive", "suspended"}
    # Churned: bought in the window, but not in its last three months.
    last = transactions.groupby("customer_id")["order_date"].max()
    assert (last < "2025-05-01").sum() > 0
    # Fewer weekend orders than weekday orders, per day.
    weekday = pd.to_datetime(
        transactions["order_date"], format="%Y-%m-%d %H:%M:%S", errors="coerce"
    ).dt.weekday
    assert (weekday >= 5).sum() / 2 < (weekday < 5).sum() / 5


def test_write_demo_stores_typed_sqlite_and_manifest(tmp_path: Path) -> None:
    out = write_demo(tmp_path / "demo", customers=100, seed=5)
    manifest = json.loads((out / "defects.json").read_text(encoding="utf-8"))
    assert manifest["rows"] == {"customers": 100, "transactions": 1_000, "interactions": 300}
    assert manifest["defects"] == generate_frames(customers=100, seed=5).defects

    def types(db: str, table: str, columns: str) -> set[tuple[str, ...]]:
        with sqlite3.connect(out / db) as connection:
            query = f"SELECT DISTINCT {columns} FROM {table}"  # noqa: S608 - test-owned names
            return set(connection.execute(query).fetchall())

    # Ids and timestamps as TEXT, money REAL, counts INTEGER (satisfaction may also be NULL).
    columns = "typeof(transaction_id), typeof(order_date), typeof(amount), typeof(quantity)"
    assert types("sales.db", "transactions", columns) == {("text", "text", "real", "integer")}
    assert types("customers.db", "customers", "typeof(customer_id), typeof(registration_date)") == {
        ("text", "text")}
    assert types("crm.db", "interactions", "typeof(duration), typeof(satisfaction_score)") <= {
        ("integer", "integer"), ("integer", "null")}
    with sqlite3.connect(out / "customers.db") as connection:
        stored = connection.execute("SELECT registration_date FROM customers LIMIT 1").fetchone()[0]
    assert TEXT_TIME.match(stored)


def test_write_demo_rerun_replaces_files(tmp_path: Path) -> None:
    write_demo(tmp_path, customers=50, seed=1)
    write_demo(tmp_path, customers=60, seed=1)  # a second run must not append to the first
    with sqlite3.connect(tmp_path / "customers.db") as connection:
        assert connection.execute("SELECT count(*) FROM customers").fetchone()[0] == 60
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))


def test_cli_writes_the_four_files(tmp_path: Path) -> None:
    assert generate.main(["--out", str(tmp_path), "--customers", "40", "--seed", "2"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "crm.db", "customers.db", "defects.json", "sales.db"]
