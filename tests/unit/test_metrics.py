"""Per-customer KPIs (SPEC §6): every definition pinned on hand-written frames.

Period July 2025, as_of = 2025-08-01T00:00Z unless a test says otherwise.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from tasks.config import ChurnCoefficients, EngagementWeights, MetricsConfig
from tasks.metrics import pareto_head
from tasks.money import MoneyError
from tasks.settings import CUSTOMER_PERFORMANCE_COLUMNS
from tests.unit.metrics_frames import (
    customers,
    history,
    interactions,
    run_metrics,
    transactions,
    utc,
)

pytestmark = pytest.mark.unit

# Churn switched off (σ(−10) rounds to 0.000): isolates the segment rules from the churn formula.
NO_CHURN = MetricsConfig(
    churn=ChurnCoefficients(intercept=-10, days_since_purchase=0, disengagement=0, open_tickets=0)
)


def by_id(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.set_index("customer_id")


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


# --- shape ---------------------------------------------------------------------------------

def test_one_row_per_customer_sorted_with_the_contract_columns_and_dtypes() -> None:
    out = run_metrics(
        customers({"customer_id": "c3"}, {"customer_id": "c1"}, {"customer_id": "c2"}),  # unsorted
        transactions({"customer_id": "c2", "amount": 5.0}),
    )
    assert list(out.columns) == list(CUSTOMER_PERFORMANCE_COLUMNS)
    assert out["customer_id"].tolist() == ["c1", "c2", "c3"]  # every customer, buyers or not
    assert set(out["period"]) == {"2025-07"}
    assert str(out["days_since_last_login"].dtype) == "Int64"
    assert str(out["days_since_last_purchase"].dtype) == "Int64"
    assert out["transaction_count"].tolist() == [0, 1, 0]


def test_no_customers_gives_an_empty_table_with_the_columns() -> None:
    out = run_metrics(customers())
    assert out.empty and list(out.columns) == list(CUSTOMER_PERFORMANCE_COLUMNS)


# --- purchases -----------------------------------------------------------------------------

def test_counts_revenue_aov_quantity_only_from_completed_orders() -> None:
    out = by_id(run_metrics(
        customers({"customer_id": "c1"}, {"customer_id": "c2"}, {"customer_id": "c3"}),
        transactions(
            {"customer_id": "c1", "amount": 0.10, "quantity": 1},  # counted
            {"customer_id": "c1", "amount": 0.20, "quantity": 2},  # counted: 0.1 + 0.2 = 0.3 exactly
            {"customer_id": "c1", "amount": 50.0, "status": "pending"},  # not revenue
            {"customer_id": "c1", "amount": 70.0, "status": "refunded"},  # not revenue
            {"customer_id": "c1", "amount": 0.05, "status": "COMPLETED"},  # status case-folded: counted
            # (10.00 − 1.00) EUR × 1.08 = 9.72 USD
            {"customer_id": "c2", "amount": 10.0, "discount_applied": 1.0, "currency": "EUR", "quantity": 4},
            {"customer_id": "ghost", "amount": 99.0},  # not a customer (quarantined upstream): ignored
        ),
    ))
    assert out.loc["c1", "transaction_count"] == 3
    assert out.loc["c1", "total_revenue"] == 0.35  # 10 + 20 + 5 cents
    assert out.loc["c1", "avg_order_value"] == 0.12  # 35 cents / 3 = 11.67 cents -> 0.12
    assert out.loc["c1", "total_quantity"] == 4  # 1 + 2 + 1 (default)
    assert out.loc["c2", "total_revenue"] == 9.72
    assert out.loc["c2", "avg_order_value"] == 9.72
    assert out.loc["c2", "total_quantity"] == 4
    # c3 bought nothing: zero counts, zero revenue, and no average at all
    assert out.loc["c3", "transaction_count"] == 0 and out.loc["c3", "total_revenue"] == 0.0
    assert math.isnan(out.loc["c3", "avg_order_value"])


def test_revenue_statuses_come_from_config() -> None:
    config = MetricsConfig(revenue_statuses=["completed", "shipped"])
    out = by_id(run_metrics(
        customers({"customer_id": "c1"}),
        transactions(
            {"customer_id": "c1", "amount": 1.0},
            {"customer_id": "c1", "amount": 2.0, "status": "shipped"},  # counted under this config
            {"customer_id": "c1", "amount": 4.0, "status": "pending"},  # still not
        ),
        config=config,
    ))
    assert out.loc["c1", "transaction_count"] == 2 and out.loc["c1", "total_revenue"] == 3.0


def test_unknown_currency_reaching_metrics_fails_loudly() -> None:
    with pytest.raises(MoneyError, match="CHF"):
        run_metrics(customers({"customer_id": "c1"}), transactions({"customer_id": "c1", "currency": "CHF", "amount": 1.0}))


def test_previous_period_revenue_and_growth() -> None:
    out = by_id(run_metrics(
        customers(*({"customer_id": c} for c in ["up", "lost", "newbuyer", "down"])),
        transactions(
            {"customer_id": "up", "amount": 150.0},
            {"customer_id": "newbuyer", "amount": 10.0},
            {"customer_id": "down", "amount": 1.0},
        ),
        prev=transactions(
            {"customer_id": "up", "amount": 100.0, "order_date": "2025-06-10T00:00:00Z"},
            {"customer_id": "lost", "amount": 80.0, "order_date": "2025-06-10T00:00:00Z"},
            {"customer_id": "down", "amount": 3.0, "order_date": "2025-06-10T00:00:00Z"},
            {"customer_id": "down", "amount": 9.0, "status": "cancelled"},  # not revenue last month either
        ),
    ))
    assert out.loc["up", "revenue_prev_period"] == 100.0
    assert out.loc["up", "revenue_growth_pct"] == 50.0  # (150 − 100) / 100 × 100
    assert out.loc["lost", "revenue_growth_pct"] == -100.0  # (0 − 80) / 80 × 100
    assert math.isnan(out.loc["newbuyer", "revenue_growth_pct"])  # prev = 0: undefined
    assert out.loc["down", "revenue_growth_pct"] == -66.67  # (1 − 3) / 3 × 100 = −66.666…


# --- interactions --------------------------------------------------------------------------

def test_interaction_ticket_open_ticket_and_satisfaction_counts() -> None:
    out = by_id(run_metrics(
        customers({"customer_id": "c1"}, {"customer_id": "quiet"}),
        interaction_rows=interactions(
            {"customer_id": "c1", "interaction_type": "ticket"},  # open: no resolution at all
            {"customer_id": "c1", "interaction_type": "ticket", "resolution_status": "Resolved"},  # closed
            {"customer_id": "c1", "interaction_type": "ticket", "resolution_status": "closed"},  # closed
            {"customer_id": "c1", "interaction_type": "ticket", "resolution_status": "in_progress",
             "satisfaction_score": 4.0},  # open
            {"customer_id": "c1", "interaction_type": "call", "satisfaction_score": 5.0},
            {"customer_id": "c1", "interaction_type": "email", "satisfaction_score": 2.0,
             "resolution_status": "open"},  # not a ticket, so never an open ticket
        ),
    ))
    assert out.loc["c1", "interaction_count"] == 6
    assert out.loc["c1", "ticket_count"] == 4
    assert out.loc["c1", "open_tickets"] == 2
    assert out.loc["c1", "avg_satisfaction"] == 3.67  # (4 + 5 + 2) / 3 = 3.666…, unrated ignored
    assert out.loc["quiet", "interaction_count"] == 0 and out.loc["quiet", "open_tickets"] == 0
    assert math.isnan(out.loc["quiet", "avg_satisfaction"])


# --- days since ----------------------------------------------------------------------------

def test_days_since_last_login_are_whole_days_null_when_never_and_zero_when_after_as_of() -> None:
    out = by_id(run_metrics(customers(
        {"customer_id": "minute", "last_login": "2025-07-31T23:59:00Z"},  # 1 minute -> 0 days
        {"customer_id": "thirty", "last_login": "2025-07-02T00:00:00Z"},  # exactly 30 days
        {"customer_id": "half", "last_login": "2025-07-01T12:00:00Z"},  # 30.5 days -> 30
        {"customer_id": "never"},  # no login -> null
        {"customer_id": "future", "last_login": "2025-08-03T00:00:00Z"},  # after as_of -> 0
    )))
    assert out.loc["minute", "days_since_last_login"] == 0
    assert out.loc["thirty", "days_since_last_login"] == 30
    assert out.loc["half", "days_since_last_login"] == 30
    assert out.loc["never", "days_since_last_login"] is pd.NA
    assert out.loc["future", "days_since_last_login"] == 0


def test_days_count_to_an_as_of_earlier_than_the_period_end() -> None:
    # A run on 2025-07-15 12:00 reports July so far: as_of is the run time.
    out = by_id(run_metrics(
        customers({"customer_id": "c1", "last_login": "2025-07-10T12:00:00Z"}),
        as_of=utc("2025-07-15T12:00:00"),
    ))
    assert out.loc["c1", "days_since_last_login"] == 5


def test_days_since_last_purchase_uses_the_latest_order_over_all_currencies() -> None:
    out = by_id(run_metrics(
        customers({"customer_id": "c1"}, {"customer_id": "c2"}, {"customer_id": "none"}),
        history_rows=history(
            {"customer_id": "c1", "currency": "USD", "first_order_at": "2024-01-01T00:00:00Z",
             "last_order_at": "2025-06-01T00:00:00Z", "net_amount": 10.0},
            {"customer_id": "c1", "currency": "EUR", "first_order_at": "2024-03-01T00:00:00Z",
             "last_order_at": "2025-07-31T12:00:00Z", "net_amount": 10.0},  # latest: 12 h before as_of
            {"customer_id": "c2", "first_order_at": "2025-06-01T00:00:00Z", "net_amount": 1.0},  # 61 days
        ),
    ))
    assert out.loc["c1", "days_since_last_purchase"] == 0
    assert out.loc["c2", "days_since_last_purchase"] == 61  # June has 30 days + all of July
    assert out.loc["none", "days_since_last_purchase"] is pd.NA


# --- engagement ----------------------------------------------------------------------------

def ten_rated(customer_id: str, score: float | None, count: int = 10) -> list[dict]:
    return [{"customer_id": customer_id, "satisfaction_score": score} for _ in range(count)]


def test_engagement_score_by_hand() -> None:
    out = by_id(run_metrics(
        customers(
            {"customer_id": "full", "last_login": "2025-07-31T12:00:00Z"},
            {"customer_id": "none"},
            {"customer_id": "mixed", "last_login": "2025-07-17T00:00:00Z"},
            {"customer_id": "half", "last_login": "2025-06-01T00:00:00Z"},
        ),
        transactions(
            *({"customer_id": "full", "amount": 1.0} for _ in range(6)),  # 6 ≥ 5: P capped at 1
            {"customer_id": "mixed", "amount": 1.0}, {"customer_id": "mixed", "amount": 1.0},
        ),
        interaction_rows=interactions(
            *ten_rated("full", 5.0, count=12),  # 12 ≥ 10: I capped at 1; S = (5 − 1)/4 = 1
            {"customer_id": "mixed", "satisfaction_score": 4.0},
            {"customer_id": "mixed", "satisfaction_score": 3.0},
            {"customer_id": "mixed"},
            # 4 ratings 2, 2, 2, 3: mean 2.25, S = 1.25 / 4 = 0.3125
            *({"customer_id": "half", "satisfaction_score": s} for s in (2.0, 2.0, 2.0, 3.0)),
        ),
    ))
    # full: L = 1 (0 days), I = 1, S = 1, P = 1 -> 100 × (0.3 + 0.3 + 0.2 + 0.2) = 100.0
    assert out.loc["full", "engagement_score"] == 100.0
    # none: L = 0 (never), I = 0, S = 0.5 (no rating), P = 0 -> 100 × 0.2 × 0.5 = 10.0
    assert out.loc["none", "engagement_score"] == 10.0
    # mixed: 15 days -> L = 0.5; I = 3/10; ratings 4, 3 -> 3.5, S = 0.625; P = 2/5
    #   100 × (0.3·0.5 + 0.3·0.3 + 0.2·0.625 + 0.2·0.4) = 15 + 9 + 12.5 + 8 = 44.5
    assert out.loc["mixed", "engagement_score"] == 44.5
    # half: 61 days -> L = max(0, 1 − 61/30) = 0; I = 0.4; S = 0.3125; P = 0
    #   100 × (0.12 + 0.0625) = 18.25 -> half-up 18.3 (np.round would say 18.2)
    assert out.loc["half", "engagement_score"] == 18.3


def test_engagement_weights_come_from_config() -> None:
    config = MetricsConfig(
        engagement_weights=EngagementWeights(login=0.5, interactions=0.5, satisfaction=0, purchases=0)
    )
    out = by_id(run_metrics(
        customers({"customer_id": "c1", "last_login": "2025-07-17T00:00:00Z"}),  # L = 0.5
        interaction_rows=interactions(*ten_rated("c1", None, count=3)),  # I = 0.3
        config=config,
    ))
    assert out.loc["c1", "engagement_score"] == 40.0  # 100 × (0.5·0.5 + 0.5·0.3)


# --- activity level ------------------------------------------------------------------------

def test_activity_level_rules_in_order() -> None:
    out = by_id(run_metrics(
        customers(
            {"customer_id": "h_tx"},  # 4 transactions -> high
            {"customer_id": "h_eng", "last_login": "2025-07-31T12:00:00Z"},  # 0 tx, engagement 70.0
            {"customer_id": "m_tx"},  # 2 transactions -> medium
            {"customer_id": "m_eng", "last_login": "2025-07-31T12:00:00Z"},  # 0 tx, engagement 40.0
            {"customer_id": "l_tx"},  # 1 transaction, engagement 14.0 -> low
            {"customer_id": "l_int"},  # 1 interaction, engagement 13.0 -> low
            {"customer_id": "l_login", "last_login": "2025-07-02T00:00:00Z"},  # 30 days -> low
            {"customer_id": "dormant", "last_login": "2025-07-01T00:00:00Z"},  # 31 days -> dormant
            {"customer_id": "never"},  # nothing at all -> dormant
        ),
        transactions(
            *({"customer_id": "h_tx", "amount": 1.0} for _ in range(4)),
            *({"customer_id": "m_tx", "amount": 1.0} for _ in range(2)),
            {"customer_id": "l_tx", "amount": 1.0},
        ),
        interaction_rows=interactions(
            *ten_rated("h_eng", None),  # L = 1, I = 1, S = 0.5: 30 + 30 + 10 = 70.0
            {"customer_id": "l_int"},  # I = 0.1, S = 0.5: 3 + 10 = 13.0
        ),
    ))
    assert out.loc["h_eng", "engagement_score"] == 70.0  # boundary: ≥ 70 is high
    assert out.loc["m_eng", "engagement_score"] == 40.0  # L = 1, S = 0.5: 30 + 10, boundary ≥ 40
    assert out.loc["l_tx", "engagement_score"] == 14.0  # S 0.5 -> 10, P = 0.2 -> 4
    assert out["activity_level"].to_dict() == {
        "dormant": "dormant", "h_eng": "high", "h_tx": "high", "l_int": "low", "l_login": "low",
        "l_tx": "low", "m_eng": "medium", "m_tx": "medium", "never": "dormant",
    }


# --- churn ---------------------------------------------------------------------------------

def test_churn_probability_by_hand() -> None:
    out = by_id(run_metrics(
        customers(
            {"customer_id": "buyer"},
            {"customer_id": "never"},
            {"customer_id": "ancient"},
            {"customer_id": "loyal", "last_login": "2025-07-31T12:00:00Z"},
            {"customer_id": "suspended", "last_login": "2025-07-31T12:00:00Z", "status": "suspended"},
            {"customer_id": "inactive", "status": "Inactive"},
        ),
        transactions(
            {"customer_id": "buyer", "amount": 1.0},
            *({"customer_id": c, "amount": 1.0} for c in ("loyal", "suspended") for _ in range(5)),
        ),
        interaction_rows=interactions(
            {"customer_id": "buyer", "interaction_type": "ticket"},  # 1 open ticket
            *ten_rated("loyal", 5.0), *ten_rated("suspended", 5.0),
        ),
        history_rows=history(
            {"customer_id": "buyer", "first_order_at": "2025-07-22T00:00:00Z"},  # 10 days ago
            {"customer_id": "ancient", "first_order_at": "2024-01-01T00:00:00Z"},  # 578 days > cap 365
            {"customer_id": "loyal", "first_order_at": "2025-07-31T12:00:00Z"},  # 0 days
            {"customer_id": "suspended", "first_order_at": "2025-07-31T12:00:00Z"},
        ),
    ))
    # buyer: engagement = 100 × (0 + 0.3·0.1 + 0.2·0.5 + 0.2·0.2) = 17.0
    #   x = −2 + 0.04·10 + 2.5·(1 − 0.17) + 0.5·1 = 0.975; σ(0.975) = 0.72611 -> 0.726
    assert out.loc["buyer", "engagement_score"] == 17.0
    assert out.loc["buyer", "churn_probability"] == round(sigmoid(0.975), 3) == 0.726
    # never purchased = 365 days: x = −2 + 14.6 + 2.5·0.9 = 14.85 -> 1.000
    assert out.loc["never", "churn_probability"] == 1.0
    # 578 days is capped at 365, so ancient equals never (same engagement 10.0)
    assert out.loc["ancient", "churn_probability"] == out.loc["never", "churn_probability"]
    # loyal: engagement 100, 0 days, no tickets: x = −2 -> σ = 0.1192 -> 0.119
    assert out.loc["loyal", "churn_probability"] == 0.119
    # suspended: same signals as loyal but cannot buy: floored at 0.9
    assert out.loc["suspended", "churn_probability"] == 0.9
    # inactive (any case) with churn 1.0 already: the floor does not lower it
    assert out.loc["inactive", "churn_probability"] == 1.0


def test_churn_coefficients_come_from_config() -> None:
    config = MetricsConfig(
        churn=ChurnCoefficients(intercept=0, days_since_purchase=0, disengagement=0, open_tickets=1,
                                inactive_floor=0.95)
    )
    out = by_id(run_metrics(
        customers({"customer_id": "c1"}, {"customer_id": "off", "status": "inactive"}),
        interaction_rows=interactions({"customer_id": "c1", "interaction_type": "ticket"}),
        config=config,
    ))
    assert out.loc["c1", "churn_probability"] == round(sigmoid(1.0), 3) == 0.731  # x = 1 open ticket
    assert out.loc["off", "churn_probability"] == 0.95  # σ(0) = 0.5, floored at 0.95


# --- CLV -----------------------------------------------------------------------------------

def test_clv_by_hand() -> None:
    out = by_id(run_metrics(
        customers({"customer_id": "tenured"}, {"customer_id": "recent"}, {"customer_id": "none"}),
        history_rows=history(
            # 181 days to as_of -> 5.9466 months: 1000 / (181 / 30.4375) × 24 = 4035.9116 -> 4035.91
            {"customer_id": "tenured", "first_order_at": "2025-02-01T00:00:00Z", "net_amount": 1000.0},
            # 12 days -> under a month, so max(1, …) = 1: (50 EUR × 1.08 + 6 USD) × 24 = 60 × 24
            {"customer_id": "recent", "currency": "EUR", "first_order_at": "2025-07-20T00:00:00Z",
             "net_amount": 50.0},
            {"customer_id": "recent", "currency": "USD", "first_order_at": "2025-07-25T00:00:00Z",
             "net_amount": 6.0},
        ),
    ))
    assert out.loc["tenured", "clv"] == 4035.91
    assert out.loc["recent", "clv"] == 1440.0
    assert math.isnan(out.loc["none", "clv"])


def test_clv_lifetime_comes_from_config() -> None:
    out = by_id(run_metrics(
        customers({"customer_id": "c1"}),
        history_rows=history({"customer_id": "c1", "first_order_at": "2025-07-20T00:00:00Z", "net_amount": 10.0}),
        config=MetricsConfig(expected_lifetime_months=12),
    ))
    assert out.loc["c1", "clv"] == 120.0  # 10 per month × 12


# --- segments ------------------------------------------------------------------------------

def revenues(**amounts: float) -> pd.DataFrame:
    return transactions(*({"customer_id": c, "amount": a} for c, a in amounts.items() if a))


def test_pareto_head_tie_break_by_customer_id() -> None:
    # Total 100, 80 % of it = 80. Sorted by revenue desc then id asc (d precedes c in the
    # input, ids decide): a 50 (revenue before it: 0), b 15 (50), c 15 (65), d 15 (80), e 5 (95),
    # z 0. Below 80: a, b, c. d misses by the tie-break alone.
    out = by_id(run_metrics(
        customers(*({"customer_id": c} for c in ["z", "e", "d", "c", "b", "a"])),
        revenues(a=50.0, b=15.0, d=15.0, c=15.0, e=5.0),
        config=NO_CHURN,
    ))
    assert out["customer_segment"].to_dict() == {
        "a": "vip", "b": "vip", "c": "vip", "d": "regular", "e": "regular", "z": "regular",
    }


def test_pareto_head_exact_boundary_and_no_revenue() -> None:
    ids = pd.Series(["a", "b", "c"])
    # a 80, b 20: b's preceding revenue is exactly 80 % of 100, not below it -> not vip
    assert pareto_head(pd.Series([8000, 2000, 0]), ids, 0.8).tolist() == [True, False, False]
    # nobody bought: nobody is vip
    assert pareto_head(pd.Series([0, 0, 0]), ids, 0.8).tolist() == [False, False, False]
    # tie on revenue, ids decide: 'a' first even though it is last in the input
    assert pareto_head(pd.Series([50, 50]), pd.Series(["b", "a"]), 0.5).tolist() == [False, True]


def test_pareto_head_same_on_sorted_ids_as_on_the_same_rows_shuffled() -> None:
    # Sorted ids take the fast path (a stable sort on revenue alone); shuffled, the same
    # rows take the sort on (revenue, id). Many ties, so the tie-break decides the head.
    rng = np.random.default_rng(7)
    ids = pd.Series([f"C{n:05d}" for n in range(2_000)], dtype="string")
    cents = pd.Series(rng.choice([0, 500, 1_000, 2_500, 10_000], size=len(ids)))
    sorted_head = pareto_head(cents, ids, 0.8)
    shuffle = rng.permutation(len(ids))
    shuffled_head = pareto_head(
        cents.iloc[shuffle].reset_index(drop=True), ids.iloc[shuffle].reset_index(drop=True), 0.8
    )
    assert 0 < sorted_head.sum() < len(ids)
    assert shuffled_head.to_numpy()[np.argsort(shuffle)].tolist() == sorted_head.tolist()


def test_segment_precedence_vip_then_at_risk_then_new_then_regular() -> None:
    out = by_id(run_metrics(
        customers(
            {"customer_id": "vip_susp", "status": "suspended"},  # vip although churn 0.9
            {"customer_id": "risk_new", "status": "suspended", "registration_date": "2025-07-20T00:00:00Z"},
            {"customer_id": "new_edge", "registration_date": "2025-07-02T00:00:00Z"},  # exactly 30 days
            {"customer_id": "new_late", "registration_date": "2025-07-31T00:00:00Z"},
            {"customer_id": "old", "registration_date": "2025-07-01T23:59:59Z"},  # 30 days + 1 s
            {"customer_id": "noreg", "registration_date": None},
        ),
        revenues(vip_susp=100.0),
        config=NO_CHURN,
    ))
    assert out.loc["vip_susp", "churn_probability"] == 0.9
    assert out.loc["old", "churn_probability"] == 0.0
    assert out["customer_segment"].to_dict() == {
        "new_edge": "new", "new_late": "new", "noreg": "regular", "old": "regular",
        "risk_new": "at_risk", "vip_susp": "vip",
    }


@pytest.mark.parametrize(("threshold", "expected"), [(0.9, "at_risk"), (0.95, "new")])
def test_at_risk_threshold_is_inclusive_and_configurable(threshold: float, expected: str) -> None:
    config = NO_CHURN.model_copy(update={"at_risk_churn": threshold})
    out = by_id(run_metrics(
        customers({"customer_id": "c1", "status": "suspended", "registration_date": "2025-07-20T00:00:00Z"}),
        config=config,
    ))
    assert out.loc["c1", "customer_segment"] == expected  # churn 0.9 (the suspended floor)


def test_vip_share_is_configurable() -> None:
    # a 60, b 40: at 50 % only a (b sees 60); at 80 % both (b sees 60 < 80).
    for share, expected in ((0.5, "regular"), (0.8, "vip")):
        out = by_id(run_metrics(
            customers({"customer_id": "a"}, {"customer_id": "b"}),
            revenues(a=60.0, b=40.0),
            config=NO_CHURN.model_copy(update={"vip_revenue_share": share}),
        ))
        assert out.loc["a", "customer_segment"] == "vip"
        assert out.loc["b", "customer_segment"] == expected
