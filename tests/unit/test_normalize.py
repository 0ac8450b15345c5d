"""Staging casts: every value typed once; nothing unparseable is silently lost."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tasks.normalize import normalize, normalize_history, quarantine_rows

pytestmark = pytest.mark.unit


def test_transactions_are_typed_and_bad_values_kept_as_text() -> None:
    raw = pd.DataFrame(
        {
            "transaction_id": ["T1", "T2", "T3", "T4", "  T5 "],
            # float ids (17850.0) are the integer id; text "17850.0" too
            "customer_id": [17850.0, 17851.0, None, 3.0, 4.0],
            "order_date": ["2025-07-01 10:00:00", "2025-07-3x 10:00:00", None, "0000-00-00", "2025-07-02T01:02:03+02:00"],
            "amount": ["12.50", "12,50", "N/A", "1e309", 7],
            "currency": ["usd", "EUR", None, "gbp", "USD"],
            "quantity": ["2", "1.5", None, "3", 1],
            "status": ["Completed", "completed", "REFUNDED", None, "completed"],
        }
    )
    stg = normalize("transactions", raw)
    assert list(stg["customer_id"]) == ["17850", "17851", pd.NA, "3", "4"]
    assert stg.loc[4, "transaction_id"] == "T5"  # stripped
    # row 1: garbled date kept as text; row 2: null is not "invalid", just missing;
    # row 3: MySQL zero date is unparseable; row 4: an offset is converted to UTC
    assert stg["order_date__invalid"].tolist()[1] == "2025-07-3x 10:00:00"
    assert pd.isna(stg["order_date__invalid"][2])
    assert stg["order_date__invalid"][3] == "0000-00-00"
    assert stg["order_date"][4] == pd.Timestamp("2025-07-01 23:02:03", tz="UTC")
    # "12,50", "N/A" and 1e309 (inf) are not amounts; their text is kept
    assert stg["amount"].tolist()[0] == 12.5 and stg["amount"][4] == 7.0
    assert stg["amount__invalid"].tolist()[1:4] == ["12,50", "N/A", "1e309"]
    assert list(stg["currency"])[:2] == ["USD", "EUR"]  # lower-case codes are upper-cased
    assert stg["quantity"].tolist()[0] == 2 and pd.isna(stg["quantity"][1])
    assert stg["quantity__invalid"][1] == "1.5"
    assert list(stg["status"])[:3] == ["completed", "completed", "refunded"]
    assert list(stg["_row"]) == [0, 1, 2, 3, 4]
    # canonical fields the source did not have are present and null
    assert stg["tax_amount"].isna().all() and stg["tax_amount__invalid"].isna().all()


def test_native_datetimes_are_assumed_utc() -> None:
    raw = pd.DataFrame({"customer_id": ["1"], "interaction_date": [pd.Timestamp("2025-07-05 08:00")]})
    stg = normalize("interactions", raw)
    assert stg["interaction_date"][0] == pd.Timestamp("2025-07-05 08:00", tz="UTC")


def test_quarantine_keeps_the_whole_row() -> None:
    stg = normalize("transactions", pd.DataFrame({"transaction_id": ["T9"], "amount": ["oops"]}))
    quarantine = quarantine_rows("transactions", stg, rule="r", column="amount", severity="critical")
    assert quarantine.loc[0, "row_id"] == "T9"
    assert json.loads(quarantine.loc[0, "record"])["amount__invalid"] == "oops"


def test_history_is_typed() -> None:
    raw = pd.DataFrame(
        {"customer_id": ["C1"], "currency": ["eur"], "first_order_at": ["2024-01-01 00:00:00"],
         "last_order_at": ["2025-07-01 00:00:00"], "net_amount": [10.5], "order_count": [2]}
    )
    history = normalize_history(raw)
    assert history.loc[0, "currency"] == "EUR"
    assert history.loc[0, "last_order_at"] == pd.Timestamp("2025-07-01", tz="UTC")


def test_dates_beyond_nanosecond_range_are_kept_as_invalid_text() -> None:
    # '0001-01-01' and '9999-12-31' are real dates but do not fit a ns timestamp:
    # they must become null-with-text, not crash the stage (found by the bad-input corpus).
    raw = pd.DataFrame({"transaction_id": ["T1", "T2", "T3"],
                        "order_date": ["0001-01-01 00:00:00", "9999-12-31", "2025-07-04"]})
    stg = normalize("transactions", raw)
    assert stg["order_date"].isna().tolist() == [True, True, False]
    assert stg["order_date__invalid"].tolist()[:2] == ["0001-01-01 00:00:00", "9999-12-31"]


def test_typed_dates_beyond_nanosecond_range_are_kept_as_invalid_text() -> None:
    # A typed source (the fast readers give datetime64[us, UTC]) can hold year 1 and 9999;
    # in-range columns skip the element-wise check, out-of-range values must still go.
    stamps = pd.Series(
        pd.to_datetime(["0001-01-01", "2025-07-04", None, "9999-12-31"], format="ISO8601").as_unit("us")
    ).dt.tz_localize("UTC")
    stg = normalize("transactions", pd.DataFrame({"transaction_id": ["T1", "T2", "T3", "T4"], "order_date": stamps}))
    assert stg["order_date"].dtype == "datetime64[ns, UTC]"
    assert stg["order_date"].isna().tolist() == [True, False, True, True]
    assert stg.loc[1, "order_date"] == pd.Timestamp("2025-07-04", tz="UTC")
    assert stg["order_date__invalid"].notna().tolist() == [True, False, False, True]

    in_range = normalize("transactions", pd.DataFrame({"transaction_id": ["T2", "T3"], "order_date": stamps[1:3]}))
    assert in_range["order_date"].isna().tolist() == [False, True]
    assert in_range["order_date__invalid"].isna().all()


def test_text_ids_that_went_through_a_float_lose_their_zero_fraction_only() -> None:
    raw = pd.DataFrame(
        {
            "transaction_id": ["T1", "T2", "T3", "T4", "T5"],
            "customer_id": ["17850.0", " 42.00 ", "C.0", "1.05", "C000001"],
        }
    )
    stg = normalize("transactions", raw)
    assert list(stg["customer_id"]) == ["17850", "42", "C.0", "1.05", "C000001"]
    # no id could match: the column is returned as it was typed (no rewrite pass)
    assert list(stg["transaction_id"]) == ["T1", "T2", "T3", "T4", "T5"]
