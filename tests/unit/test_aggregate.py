"""Regional summary and performance trends (SPEC §7), on hand-written frames."""

from __future__ import annotations

import pandas as pd
import pytest

from tasks.aggregate import bucket_grid, performance_trends, regional_summary
from tasks.config import MetricsConfig
from tasks.money import dollars_to_cents
from tasks.period import Period
from tasks.settings import PERFORMANCE_TRENDS_COLUMNS, REGIONAL_SUMMARY_COLUMNS
from tests.unit.metrics_frames import (
    JULY,
    RATES,
    customers,
    interactions,
    performance,
    run_metrics,
    transactions,
    utc,
)

pytestmark = pytest.mark.unit

CONFIG = MetricsConfig()
JUNE = "2025-06-15T00:00:00Z"

# Four customers, total revenue 100.00:
#   a  EU/DE/BE   vip      2 tx  60.00  eng 80  sat 4.0  old customer; bought in June too (retained)
#   b  EU/DE/BE   regular  0 tx   0.00  eng 20  sat —    registered 2025-07-10 (new); bought in June only (lost)
#   c  EU/FR/unk  vip      1 tx  30.00  eng 60  sat 2.0  registered 2025-07-01 00:00 (new: first instant)
#   d  NA/US/CA   regular  1 tx  10.00  eng 40  sat 3.0  registered 2025-06-30 23:59:59 (not new)
PERFORMANCE = performance(
    {"customer_id": "a", "customer_segment": "vip", "transaction_count": 2, "total_revenue": 60.0,
     "engagement_score": 80.0, "avg_satisfaction": 4.0},
    {"customer_id": "b", "engagement_score": 20.0, "registration_date": "2025-07-10T00:00:00Z"},
    {"customer_id": "c", "country": "FR", "state": "unknown", "customer_segment": "vip",
     "transaction_count": 1, "total_revenue": 30.0, "engagement_score": 60.0, "avg_satisfaction": 2.0,
     "registration_date": "2025-07-01T00:00:00Z"},
    {"customer_id": "d", "region": "NA", "country": "US", "state": "CA", "transaction_count": 1,
     "total_revenue": 10.0, "engagement_score": 40.0, "avg_satisfaction": 3.0,
     "registration_date": "2025-06-30T23:59:59Z"},
)
# The July purchases behind those revenues, by category.
JULY_SALES = transactions(
    {"customer_id": "a", "amount": 25.0, "product_category": "books"},
    {"customer_id": "a", "amount": 35.0, "product_category": "games"},
    {"customer_id": "c", "amount": 30.0, "product_category": "books"},
    {"customer_id": "d", "amount": 10.0, "product_category": "games"},
    {"customer_id": "d", "amount": 99.0, "product_category": "books", "status": "pending"},  # not revenue
)
# June: a bought books (and buys books again in July), b bought toys (nobody buys toys in July).
JUNE_SALES = transactions(
    {"customer_id": "a", "amount": 5.0, "product_category": "books", "order_date": JUNE},
    {"customer_id": "b", "amount": 7.0, "product_category": "toys", "order_date": JUNE},
    {"customer_id": "d", "amount": 8.0, "product_category": "games", "order_date": JUNE,
     "status": "cancelled"},  # not revenue: d was not active in June
)


def summary() -> pd.DataFrame:
    return regional_summary(PERFORMANCE, JULY_SALES, JUNE_SALES, period=JULY, rates=RATES, config=CONFIG)


def row(frame: pd.DataFrame, dimension: str, **keys: str) -> pd.Series:
    mask = frame["dimension"].eq(dimension)
    for column, value in keys.items():
        mask &= frame[column].eq(value)
    matched = frame[mask.fillna(False).to_numpy(dtype=bool)]
    assert len(matched) == 1, f"{dimension} {keys}: {len(matched)} rows"
    return matched.iloc[0]


def check(actual: pd.Series, **expected: float | int | None) -> None:
    for column, value in expected.items():
        got = actual[column]
        if value is None:
            assert pd.isna(got), f"{column}: expected null, got {got}"
        else:
            assert got == pytest.approx(value), f"{column}: expected {value}, got {got}"


# --- regional summary ----------------------------------------------------------------------

def test_summary_columns_dimensions_and_unused_keys_null() -> None:
    out = summary()
    assert list(out.columns) == list(REGIONAL_SUMMARY_COLUMNS)
    assert out["dimension"].tolist() == ["geography"] * 3 + ["customer_segment"] * 2 + ["product_category"] * 3
    assert set(out["period"]) == {"2025-07"}
    geography = out[out["dimension"] == "geography"]
    assert geography[["customer_segment", "product_category"]].isna().all().all()
    segments = out[out["dimension"] == "customer_segment"]
    assert segments[["region", "country", "state", "product_category"]].isna().all().all()
    categories = out[out["dimension"] == "product_category"]
    assert categories[["region", "country", "state", "customer_segment"]].isna().all().all()


def test_geography_rows_by_hand() -> None:
    out = summary()
    # EU/DE/BE = a + b: 60.00 of 100; active a; new b; a's 2 tx -> AOV 30; eng (80 + 20)/2;
    # satisfaction 4.0 (b has none); June buyers a, b -> a still buys: 1/2; penetration 1/2.
    check(row(out, "geography", region="EU", country="DE", state="BE"),
          revenue=60.0, revenue_share=0.6, customers=2, active_customers=1, new_customers=1,
          transactions=2, avg_order_value=30.0, avg_engagement=50.0, avg_satisfaction=4.0,
          retention_rate=0.5, penetration=0.5)
    # EU/FR/unknown = c: new at the period's first instant; no June buyer -> retention null.
    check(row(out, "geography", region="EU", country="FR", state="unknown"),
          revenue=30.0, revenue_share=0.3, customers=1, active_customers=1, new_customers=1,
          transactions=1, avg_order_value=30.0, avg_engagement=60.0, avg_satisfaction=2.0,
          retention_rate=None, penetration=1.0)
    # NA/US/CA = d: registered one second before July -> not new; June order was cancelled.
    check(row(out, "geography", region="NA", country="US", state="CA"),
          revenue=10.0, revenue_share=0.1, customers=1, active_customers=1, new_customers=0,
          transactions=1, avg_order_value=10.0, avg_engagement=40.0, avg_satisfaction=3.0,
          retention_rate=None, penetration=1.0)


def test_segment_rows_by_hand() -> None:
    out = summary()
    # vip = a + c: 90.00, 3 tx -> AOV 30; eng (80 + 60)/2 = 70; sat (4 + 2)/2 = 3;
    # June buyers among them: a, still active -> 1.0.
    check(row(out, "customer_segment", customer_segment="vip"),
          revenue=90.0, revenue_share=0.9, customers=2, active_customers=2, new_customers=1,
          transactions=3, avg_order_value=30.0, avg_engagement=70.0, avg_satisfaction=3.0,
          retention_rate=1.0, penetration=1.0)
    # regular = b + d: 10.00 from d's 1 tx; eng (20 + 40)/2 = 30; sat 3.0 (d only);
    # June buyers: b, lost -> 0.0; active d of 2 -> 0.5.
    check(row(out, "customer_segment", customer_segment="regular"),
          revenue=10.0, revenue_share=0.1, customers=2, active_customers=1, new_customers=1,
          transactions=1, avg_order_value=10.0, avg_engagement=30.0, avg_satisfaction=3.0,
          retention_rate=0.0, penetration=0.5)


def test_product_category_rows_by_hand() -> None:
    out = summary()
    # books: a 25 + c 30 = 55.00 (d's pending 99 is not revenue); buyers a, c; c is new;
    # eng (80 + 60)/2; sat (4 + 2)/2; June books buyers {a}, a buys books again -> 1.0.
    check(row(out, "product_category", product_category="books"),
          revenue=55.0, revenue_share=0.55, customers=2, active_customers=2, new_customers=1,
          transactions=2, avg_order_value=27.5, avg_engagement=70.0, avg_satisfaction=3.0,
          retention_rate=1.0, penetration=1.0)
    # games: a 35 + d 10 = 45.00; eng (80 + 40)/2 = 60; sat 3.5; d's June games order was
    # cancelled, so no June buyer -> retention null.
    check(row(out, "product_category", product_category="games"),
          revenue=45.0, revenue_share=0.45, customers=2, active_customers=2, new_customers=0,
          transactions=2, avg_order_value=22.5, avg_engagement=60.0, avg_satisfaction=3.5,
          retention_rate=None, penetration=1.0)
    # toys: sold only in June (to b, who did not come back): a row that says so.
    check(row(out, "product_category", product_category="toys"),
          revenue=0.0, revenue_share=0.0, customers=0, active_customers=0, new_customers=0,
          transactions=0, avg_order_value=None, avg_engagement=None, avg_satisfaction=None,
          retention_rate=0.0, penetration=None)


def test_product_category_revenue_is_converted_exactly() -> None:
    sales = transactions(
        {"customer_id": "a", "amount": 0.1, "product_category": "misc"},
        {"customer_id": "a", "amount": 0.2, "product_category": "misc"},  # 0.1 + 0.2 = 0.30
        {"customer_id": "c", "amount": 10.0, "discount_applied": 1.0, "currency": "EUR",
         "product_category": "misc"},  # 9 EUR × 1.08 = 9.72
        {"customer_id": "c", "amount": 1.0, "product_category": None},  # no category -> "unknown"
    )
    out = regional_summary(PERFORMANCE, sales, transactions(), period=JULY, rates=RATES, config=CONFIG)
    check(row(out, "product_category", product_category="misc"), revenue=10.02, transactions=3,
          avg_order_value=3.34)  # 10.02 / 3
    check(row(out, "product_category", product_category="unknown"), revenue=1.0, transactions=1)


def test_shares_are_null_when_nobody_bought() -> None:
    idle = performance({"customer_id": "a"}, {"customer_id": "b", "region": "NA"})
    out = regional_summary(idle, transactions(), transactions(), period=JULY, rates=RATES, config=CONFIG)
    assert out["dimension"].tolist() == ["geography", "geography", "customer_segment"]
    assert out["revenue_share"].isna().all()
    assert out["revenue"].tolist() == [0.0, 0.0, 0.0]
    assert out["retention_rate"].isna().all()  # nobody bought last period either
    assert out["penetration"].tolist() == [0.0, 0.0, 0.0]


def test_invariants_on_computed_customer_metrics() -> None:
    # EUR amounts give sub-cent USD figures (0.05 × 1.08 = 0.054, 0.15 × 1.08 = 0.162); each
    # customer's total is rounded once, and every dimension must add up to exactly those
    # rounded totals (a, b share EU/DE/BE; c is NA; d bought nothing).
    people = customers(
        {"customer_id": "a"}, {"customer_id": "b"}, {"customer_id": "c", "region": "NA", "country": "US"},
        {"customer_id": "d", "region": "APAC", "country": "JP", "state": "unknown"},
    )
    sales = transactions(
        {"customer_id": "a", "amount": 0.05, "currency": "EUR", "product_category": "x"},
        {"customer_id": "a", "amount": 0.15, "currency": "EUR", "product_category": "y"},
        {"customer_id": "b", "amount": 0.1, "product_category": "x"},
        {"customer_id": "b", "amount": 0.2, "product_category": "z"},
        {"customer_id": "c", "amount": 19.99, "discount_applied": 0.5, "currency": "EUR"},
        {"customer_id": "c", "amount": 3.33, "product_category": "y"},
    )
    metrics = run_metrics(people, sales)
    out = regional_summary(metrics, sales, transactions(), period=JULY, rates=RATES, config=CONFIG)
    customer_cents = int(dollars_to_cents(metrics["total_revenue"]).sum())
    # a: (5 + 15) cents × 1.08 = 21.6 -> 0.22; b: 0.30; c: 19.49 × 1.08 = 21.0492 + 3.33 -> 24.38
    assert customer_cents == 22 + 30 + 2438
    for dimension in ("geography", "customer_segment"):
        part = out[out["dimension"] == dimension]
        assert int(dollars_to_cents(part["revenue"]).sum()) == customer_cents
        assert part["customers"].sum() == len(metrics)
    for dimension in ("geography", "customer_segment", "product_category"):
        assert out.loc[out["dimension"] == dimension, "revenue_share"].sum() == pytest.approx(1.0, abs=1e-12)


# --- trends --------------------------------------------------------------------------------

# July 2025 starts on a Tuesday: ISO weeks start Mon 30 June (clipped to 1 July), 7, 14, 21, 28.
TREND_PEOPLE = performance(
    {"customer_id": "a"},  # EU
    {"customer_id": "b", "registration_date": "2025-07-06T08:00:00Z"},  # EU, registers on Sunday 6th
    {"customer_id": "c", "region": "NA"},
    {"customer_id": "d", "registration_date": "2025-06-15T00:00:00Z"},  # registered before July
)
TREND_SALES = transactions(
    {"customer_id": "a", "amount": 10.0, "order_date": "2025-07-01T00:00:00Z"},  # first instant
    {"customer_id": "a", "amount": 5.0, "order_date": "2025-07-06T23:59:59Z"},  # Sunday: week of 1st
    {"customer_id": "c", "amount": 1.0, "currency": "EUR", "order_date": "2025-07-07T00:00:00Z"},  # Monday: 1.08
    {"customer_id": "c", "amount": 50.0, "status": "pending", "order_date": "2025-07-07T00:00:00Z"},  # not revenue
    {"customer_id": "c", "amount": 2.0, "order_date": "2025-07-31T23:59:59Z"},  # last instant
)
TREND_CONTACTS = interactions(
    {"customer_id": "a", "interaction_date": "2025-07-01T10:00:00Z", "satisfaction_score": 4.0},
    {"customer_id": "c", "interaction_date": "2025-07-01T11:00:00Z", "satisfaction_score": 2.0},
    {"customer_id": "c", "interaction_date": "2025-07-07T09:00:00Z"},  # unrated
)


def trends() -> pd.DataFrame:
    return performance_trends(TREND_PEOPLE, TREND_SALES, TREND_CONTACTS, period=JULY, rates=RATES, config=CONFIG)


def bucket(frame: pd.DataFrame, grain: str, start: str, region: str | None = None) -> pd.Series:
    mask = frame["grain"].eq(grain) & frame["bucket_start"].eq(utc(start))
    mask &= frame["region"].isna() if region is None else frame["region"].eq(region)
    matched = frame[mask.fillna(False).to_numpy(dtype=bool)]
    assert len(matched) == 1
    return matched.iloc[0]


def test_trend_shape_and_day_buckets_cover_the_month() -> None:
    out = trends()
    assert list(out.columns) == list(PERFORMANCE_TRENDS_COLUMNS)
    # (31 days + 5 weeks) × (overall + EU + NA)
    assert len(out) == (31 + 5) * 3
    overall_days = out[(out["grain"] == "day") & out["region"].isna()]
    assert overall_days["bucket_start"].tolist() == list(pd.date_range("2025-07-01", "2025-07-31", tz="UTC"))
    weeks = out[(out["grain"] == "week") & out["region"].isna()]["bucket_start"].dt.strftime("%m-%d").tolist()
    assert weeks == ["07-01", "07-07", "07-14", "07-21", "07-28"]
    assert set(out["region"].dropna()) == {"EU", "NA"}


def test_day_buckets_by_hand() -> None:
    out = trends()
    check(bucket(out, "day", "2025-07-01"), revenue=10.0, transactions=1, active_customers=1,
          new_customers=0, interactions=2, avg_satisfaction=3.0)  # (4 + 2) / 2
    check(bucket(out, "day", "2025-07-06"), revenue=5.0, transactions=1, active_customers=1,
          new_customers=1, interactions=0, avg_satisfaction=None)
    check(bucket(out, "day", "2025-07-07"), revenue=1.08, transactions=1, active_customers=1,
          new_customers=0, interactions=1, avg_satisfaction=None)  # the only rating is missing
    check(bucket(out, "day", "2025-07-31"), revenue=2.0, transactions=1)
    # a quiet day is zero-filled, not missing
    check(bucket(out, "day", "2025-07-15"), revenue=0.0, transactions=0, active_customers=0,
          new_customers=0, interactions=0, avg_satisfaction=None)


def test_week_buckets_clip_to_the_period_and_split_by_region() -> None:
    out = trends()
    # week of Mon 30 June, clipped to Tue 1 July: a's two orders (one customer), b's signup
    check(bucket(out, "week", "2025-07-01"), revenue=15.0, transactions=2, active_customers=1,
          new_customers=1, interactions=2, avg_satisfaction=3.0)
    check(bucket(out, "week", "2025-07-07"), revenue=1.08, transactions=1, active_customers=1, interactions=1)
    check(bucket(out, "week", "2025-07-28"), revenue=2.0, transactions=1)
    # per region: EU has a and b; NA has c
    check(bucket(out, "week", "2025-07-01", "EU"), revenue=15.0, transactions=2, new_customers=1,
          interactions=1, avg_satisfaction=4.0)
    check(bucket(out, "week", "2025-07-01", "NA"), revenue=0.0, transactions=0, new_customers=0,
          interactions=1, avg_satisfaction=2.0)
    check(bucket(out, "week", "2025-07-07", "NA"), revenue=1.08, transactions=1)


def test_region_rows_add_up_to_the_overall_rows() -> None:
    out = trends()
    for grain in ("day", "week"):
        part = out[out["grain"] == grain]
        overall = part[part["region"].isna()].set_index("bucket_start")
        regions = part[part["region"].notna()].groupby("bucket_start")
        for column in ("transactions", "new_customers", "interactions"):
            assert (regions[column].sum() == overall[column]).all()
        assert (dollars_to_cents(regions["revenue"].sum()) == dollars_to_cents(overall["revenue"])).all()


def test_buckets_follow_the_pipeline_time_zone() -> None:
    berlin = Period(2025, 7, "Europe/Berlin")  # July starts 2025-06-30 22:00 UTC (CEST = UTC+2)
    days = bucket_grid(berlin, "day")
    assert len(days) == 31 and days[0] == utc("2025-06-30T22:00:00") and days[-1] == utc("2025-07-30T22:00:00")
    # 00:30 Berlin on 1 July is 22:30 UTC on 30 June: it belongs to Berlin's 1 July bucket.
    sales = transactions({"customer_id": "a", "amount": 3.0, "order_date": "2025-06-30T22:30:00Z"})
    out = performance_trends(TREND_PEOPLE, sales, interactions(), period=berlin, rates=RATES, config=CONFIG)
    check(bucket(out, "day", "2025-06-30T22:00:00"), revenue=3.0, transactions=1)
    assert bucket(out, "week", "2025-06-30T22:00:00")["revenue"] == 3.0


def test_revenue_statuses_apply_to_trends() -> None:
    config = MetricsConfig(revenue_statuses=["completed", "pending"])
    out = performance_trends(TREND_PEOPLE, TREND_SALES, TREND_CONTACTS, period=JULY, rates=RATES, config=config)
    check(bucket(out, "day", "2025-07-07"), revenue=51.08, transactions=2, active_customers=1)


def test_february_has_28_day_buckets() -> None:
    assert len(bucket_grid(Period(2025, 2), "day")) == 28
    # 1 Feb 2025 is a Saturday: weeks start 1 (clipped from Mon 27 Jan), 3, 10, 17, 24
    assert [d.day for d in bucket_grid(Period(2025, 2), "week")] == [1, 3, 10, 17, 24]


def test_no_customers_and_no_sales_still_give_well_formed_outputs() -> None:
    # A brand-new deployment: nothing anywhere. The summary is empty; the trends still have
    # every bucket (overall only, since there is no region), all zero.
    nobody = run_metrics(customers())
    out = regional_summary(nobody, transactions(), transactions(), period=JULY, rates=RATES, config=CONFIG)
    assert out.empty and list(out.columns) == list(REGIONAL_SUMMARY_COLUMNS)
    flat = performance_trends(nobody, transactions(), interactions(), period=JULY, rates=RATES, config=CONFIG)
    assert len(flat) == 31 + 5 and flat["region"].isna().all()
    assert flat["revenue"].sum() == 0 and flat["transactions"].sum() == 0


def test_category_pairs_are_the_outer_merge_of_both_periods_distinct_pairs() -> None:
    import numpy as np

    from tasks.aggregate import category_pairs

    rng = np.random.default_rng(5)

    def rows(n: int) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "product_category": pd.Series(
                    rng.choice(["Books", "Électronique", "Toys", "toys", "UNKNOWN"], n), dtype="string"
                ),
                "customer_id": pd.Series([f"C{i}" for i in rng.integers(0, 60, n)], dtype="string"),
            }
        )

    current, previous = rows(400), rows(300)
    got = category_pairs(current, previous)
    keys = ["product_category", "customer_id"]
    want = (
        current[keys].drop_duplicates().assign(is_active=True)
        .merge(previous[keys].drop_duplicates().assign(was_active=True), how="outer", on=keys)
        .fillna({"is_active": False, "was_active": False})
        .astype({"is_active": bool, "was_active": bool})
    )
    pd.testing.assert_frame_equal(got, want.reset_index(drop=True))
    assert got["was_active"].any() and not got["is_active"].all()  # both one-sided kinds occur
    with pytest.raises(ValueError, match="customer id"):
        category_pairs(current.assign(customer_id=pd.NA), previous)
