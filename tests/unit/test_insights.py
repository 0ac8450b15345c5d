"""Business insights (SPEC §7): the numbers behind the run summary, dashboard and e-mail."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tasks.insights import at_risk_customers, business_insights, engagement_revenue_correlation
from tests.unit.metrics_frames import interactions, performance

pytestmark = pytest.mark.unit

# Ten customers, July revenue 100.00 from seven buyers; engagement = 2 × revenue throughout
# (a perfect linear relation: Pearson r = 1).
#   id  segment  revenue  prev   clv     churn  region
#   a   vip        50      40    1000    0.1    EU
#   b   vip        20      10     500    0.2    EU
#   c   regular    10      10     —      0.3    NA
#   d   regular     8       8     200    0.3    NA
#   e   regular     6       6     —      0.3    NA
#   f   regular     4       4     —      0.3    NA
#   g   regular     2       2     —      0.3    NA
#   h   at_risk     0      25     —      0.70   EU    most valuable at-risk: first in the list
#   i   at_risk     0       5     —      0.65   EU    ties j on prev; lower churn -> after j
#   j   at_risk     0       5     —      0.95   EU
PEOPLE = performance(
    *(
        {"customer_id": cid, "customer_segment": seg, "total_revenue": rev, "revenue_prev_period": prev,
         "clv": clv, "churn_probability": churn, "region": region, "transaction_count": 1 if rev else 0,
         "engagement_score": 2 * rev}
        for cid, seg, rev, prev, clv, churn, region in [
            ("a", "vip", 50.0, 40.0, 1000.0, 0.1, "EU"),
            ("b", "vip", 20.0, 10.0, 500.0, 0.2, "EU"),
            ("c", "regular", 10.0, 10.0, None, 0.3, "NA"),
            ("d", "regular", 8.0, 8.0, 200.0, 0.3, "NA"),
            ("e", "regular", 6.0, 6.0, None, 0.3, "NA"),
            ("f", "regular", 4.0, 4.0, None, 0.3, "NA"),
            ("g", "regular", 2.0, 2.0, None, 0.3, "NA"),
            ("h", "at_risk", 0.0, 25.0, None, 0.70, "EU"),
            ("i", "at_risk", 0.0, 5.0, None, 0.65, "EU"),
            ("j", "at_risk", 0.0, 5.0, None, 0.95, "EU"),
        ]
    )
)
# Geography rows as regional_summary writes them: EU 70.00 (two countries), NA 30.00.
REGIONS = pd.DataFrame(
    {
        "dimension": pd.array(["geography", "geography", "geography", "customer_segment"], dtype="string"),
        "region": pd.array(["EU", "EU", "NA", None], dtype="string"),
        "revenue": [60.0, 10.0, 30.0, 100.0],  # the segment row must not count as a region
    }
)
# a raised a ticket (rated 2) and e-mailed (rated 4); b chatted (5); c called (unrated).
CONTACTS = interactions(
    {"customer_id": "a", "interaction_type": "ticket", "satisfaction_score": 2.0},
    {"customer_id": "a", "interaction_type": "email", "satisfaction_score": 4.0},
    {"customer_id": "b", "interaction_type": "chat", "satisfaction_score": 5.0},
    {"customer_id": "c", "interaction_type": "call"},
)


@pytest.fixture(scope="module")
def insights() -> dict:
    return business_insights(PEOPLE, REGIONS, CONTACTS)


def test_insights_are_strict_json(insights: dict) -> None:
    text = json.dumps(insights, allow_nan=False)  # NaN would raise here
    assert json.loads(text) == insights


def test_totals(insights: dict) -> None:
    # prev: 40 + 10 + 10 + 8 + 6 + 4 + 2 + 25 + 5 + 5 = 115; growth (100 − 115)/115 = −13.04 %
    assert insights["totals"] == {
        "revenue": 100.0, "revenue_prev_period": 115.0, "revenue_growth_pct": -13.04,
        "customers": 10, "active_customers": 7, "transactions": 7,
    }


def test_pareto_share_of_the_top_fifth_of_buyers(insights: dict) -> None:
    # 7 buyers -> top ceil(1.4) = 2: a + b = 70 of 100
    assert insights["pareto"] == {
        "top_customer_share": 0.2, "buyers": 7, "top_customers": 2, "top_revenue": 70.0,
        "revenue_share": 0.7,
    }


def test_growth_and_clv_by_segment(insights: dict) -> None:
    segments = insights["segments"]
    assert list(segments) == ["vip", "at_risk", "regular"]  # fixed order, absent 'new' left out
    # vip: 70 vs 50 -> +40 %; CLV of a, b: mean 750, median 750
    assert segments["vip"] == {
        "customers": 2, "revenue": 70.0, "revenue_prev_period": 50.0, "revenue_growth_pct": 40.0,
        "clv_customers": 2, "clv_mean": 750.0, "clv_median": 750.0,
    }
    # regular: 30 vs 30 -> 0 %; only d has a CLV (200)
    assert segments["regular"]["revenue_growth_pct"] == 0.0
    assert (segments["regular"]["clv_customers"], segments["regular"]["clv_mean"]) == (1, 200.0)
    # at_risk: 0 vs 35 -> −100 %; no CLV at all -> null, not NaN
    assert segments["at_risk"]["revenue_growth_pct"] == -100.0
    assert segments["at_risk"]["clv_mean"] is None


def test_engagement_revenue_correlation(insights: dict) -> None:
    assert insights["engagement_revenue_correlation"] == {"pearson_r": 1.0, "customers": 10}
    flat = PEOPLE.assign(engagement_score=50.0)  # constant engagement: r undefined
    assert engagement_revenue_correlation(flat)["pearson_r"] is None


def test_satisfaction_with_and_without_tickets(insights: dict) -> None:
    # with: a's ratings 2 and 4 -> 3.0; without: b's 5 (c rated nothing) -> 5.0
    assert insights["satisfaction_by_tickets"] == {
        "with_tickets": {"customers": 1, "ratings": 2, "avg_satisfaction": 3.0},
        "without_tickets": {"customers": 2, "ratings": 1, "avg_satisfaction": 5.0},
    }


def test_at_risk_list_most_valuable_first(insights: dict) -> None:
    listed = insights["at_risk"]["customers"]
    assert insights["at_risk"]["count"] == 3
    assert [c["customer_id"] for c in listed] == ["h", "j", "i"]
    assert listed[0]["revenue_prev_period"] == 25.0 and listed[0]["churn_probability"] == 0.7
    assert listed[0]["days_since_last_purchase"] is None  # null Int64 -> JSON null
    # the list is capped; the count still says how many there are
    capped = at_risk_customers(PEOPLE, limit=2)
    assert capped["count"] == 3 and [c["customer_id"] for c in capped["customers"]] == ["h", "j"]


def test_top_regions_roll_geography_up_to_the_region(insights: dict) -> None:
    assert insights["top_regions"] == [
        {"region": "EU", "revenue": 70.0, "revenue_share": 0.7},
        {"region": "NA", "revenue": 30.0, "revenue_share": 0.3},
    ]


def test_no_customers_gives_nulls_not_errors() -> None:
    empty = PEOPLE.iloc[:0]
    result = business_insights(empty, REGIONS.iloc[:0], CONTACTS.iloc[:0])
    json.dumps(result, allow_nan=False)
    assert result["totals"]["revenue"] == 0.0 and result["totals"]["revenue_growth_pct"] is None
    assert result["pareto"]["revenue_share"] is None
    assert result["segments"] == {} and result["at_risk"] == {"count": 0, "customers": []}


def test_at_risk_order_is_the_same_whether_or_not_the_table_comes_sorted_by_id() -> None:
    """Sorted by id, the list is ranked by a stable sort on the two numbers; shuffled, by the
    general three-key sort. 3,000 at-risk rows on 5 x 4 values (every key tied many times,
    some NaN) must come out in the same order both ways, ties broken by id ascending."""
    import numpy as np

    from tasks.insights import _most_valuable

    rng = np.random.default_rng(7)
    n = 3_000
    prev = rng.choice([0.0, 5.0, 12.5, 40.0, np.nan], n)
    churn = rng.choice([0.6, 0.7, 0.95, np.nan], n)
    frame = pd.DataFrame({
        "customer_id": pd.array([f"C{i:05d}" for i in range(n)], dtype="string"),
        "revenue_prev_period": prev,
        "churn_probability": churn,
    })
    every = np.arange(n)
    by_id = frame["customer_id"].to_numpy()[_most_valuable(frame, every, n)]
    shuffled = frame.sample(frac=1, random_state=3).reset_index(drop=True)
    assert not shuffled["customer_id"].is_monotonic_increasing  # the general path
    general = shuffled["customer_id"].to_numpy()[_most_valuable(shuffled, every, n)]
    assert list(by_id) == list(general)
    # and it is the documented order: prev desc, churn desc, id asc, NaN last
    expected = frame.sort_values(
        ["revenue_prev_period", "churn_probability", "customer_id"], ascending=[False, False, True]
    )["customer_id"].to_numpy()
    assert list(by_id) == list(expected)
