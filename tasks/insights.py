"""Business insights for the run summary, dashboard and e-mail (SPEC §7, seed "Expected
Business Outcomes"): a small JSON-serialisable dict computed from the period's tables."""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import pandas as pd

from tasks.keys import isin_text
from tasks.money import cents_to_dollars, dollars_to_cents, round_half_up

logger = logging.getLogger(__name__)

PARETO_TOP_SHARE = 0.2  # "the top 20 % of customers"
AT_RISK_LIST_SIZE = 20
SEGMENT_ORDER = ("vip", "at_risk", "new", "regular")
_AT_RISK_FIELDS = (
    "customer_id", "name", "region", "customer_segment", "churn_probability", "revenue_prev_period",
    "total_revenue", "days_since_last_purchase", "engagement_score", "open_tickets",
)


def _round(value: float, decimals: int) -> float:
    """Half-up, like every other rounded figure of the report."""
    return float(round_half_up(np.array([value]), decimals).iloc[0])


def _plain(value: Any, decimals: int | None = None) -> Any:
    """A numpy / pandas scalar as a JSON value: NaN/NA -> None, floats rounded."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (np.integer, int)) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, (np.floating, float)):
        if math.isnan(value):
            return None
        return _round(float(value), decimals) if decimals is not None else float(value)
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    return str(value)


def _dollars(cents: int) -> float:
    return float(cents_to_dollars(pd.Series([cents])).iloc[0])


def _growth_pct(current_cents: int, previous_cents: int) -> float | None:
    if previous_cents == 0:
        return None
    return _round((current_cents - previous_cents) / previous_cents * 100, 2)


def pareto(customer_performance: pd.DataFrame) -> dict[str, Any]:
    """Revenue share of the top 20 % of buyers (customers with revenue > 0), ties by id.

    Buyers, not the whole customer base: dormant customers would make any share look like
    100 %.
    """
    cents = dollars_to_cents(customer_performance["total_revenue"]).to_numpy(dtype=np.int64)
    # The share only needs the top buyers' total, which ties cannot change: the cents
    # sorted alone (no text comparisons; 0.39 s -> 0.05 s at 10^6 customers).
    buyers = np.sort(cents[cents > 0])[::-1]
    top = math.ceil(len(buyers) * PARETO_TOP_SHARE)
    total = int(buyers.sum())
    head = int(buyers[:top].sum())
    return {
        "top_customer_share": PARETO_TOP_SHARE,
        "buyers": len(buyers),
        "top_customers": top,
        "top_revenue": _dollars(head),
        "revenue_share": _round(head / total, 4) if total else None,
    }


def by_segment(customer_performance: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Per segment: customers, revenue now and last period, growth %, mean and median CLV."""
    cp = customer_performance.assign(
        cents=dollars_to_cents(customer_performance["total_revenue"]),
        prev_cents=dollars_to_cents(customer_performance["revenue_prev_period"]),
    )
    result: dict[str, dict[str, Any]] = {}
    present = list(cp["customer_segment"].dropna().unique())
    for segment in [s for s in SEGMENT_ORDER if s in present] + sorted(set(present) - set(SEGMENT_ORDER)):
        rows = cp[cp["customer_segment"].eq(segment).fillna(False).to_numpy(dtype=bool)]
        cur, prev = int(rows["cents"].sum()), int(rows["prev_cents"].sum())
        clv = rows["clv"].astype("float64").dropna()
        result[str(segment)] = {
            "customers": len(rows),
            "revenue": _dollars(cur),
            "revenue_prev_period": _dollars(prev),
            "revenue_growth_pct": _growth_pct(cur, prev),
            "clv_customers": len(clv),
            "clv_mean": _plain(clv.mean(), 2) if len(clv) else None,
            "clv_median": _plain(clv.median(), 2) if len(clv) else None,
        }
    return result


def engagement_revenue_correlation(customer_performance: pd.DataFrame) -> dict[str, Any]:
    """Pearson r between engagement_score and total_revenue over all customers; null when
    either is constant or there are fewer than 2 customers."""
    x = customer_performance["engagement_score"].astype("float64")
    y = customer_performance["total_revenue"].astype("float64")
    usable = len(x) >= 2 and x.std() > 0 and y.std() > 0
    return {"pearson_r": _plain(x.corr(y), 4) if usable else None, "customers": len(x)}


def satisfaction_by_tickets(interactions: pd.DataFrame) -> dict[str, Any]:
    """Mean satisfaction of the period's rated interactions, for customers who raised a ticket
    this period versus those who did not (interaction-weighted, nulls ignored)."""
    kind = interactions["interaction_type"].astype("string").str.lower()
    ticket_holders = set(interactions.loc[kind.eq("ticket").fillna(False).to_numpy(dtype=bool), "customer_id"])
    has_ticket = isin_text(interactions["customer_id"], ticket_holders)
    scores = interactions["satisfaction_score"].astype("float64")

    def side(mask: np.ndarray) -> dict[str, Any]:
        rated = scores[mask].dropna()
        customers = interactions.loc[mask, "customer_id"].nunique()
        return {"customers": int(customers), "ratings": len(rated),
                "avg_satisfaction": _plain(rated.mean(), 2) if len(rated) else None}

    return {"with_tickets": side(has_ticket), "without_tickets": side(~has_ticket)}


def at_risk_customers(customer_performance: pd.DataFrame, limit: int = AT_RISK_LIST_SIZE) -> dict[str, Any]:
    """The at_risk segment, most valuable first: revenue_prev_period desc, churn desc, id asc."""
    at_risk = np.flatnonzero(
        customer_performance["customer_segment"].eq("at_risk").fillna(False).to_numpy(dtype=bool)
    )
    listed = [
        {field: _plain(row[field]) for field in _AT_RISK_FIELDS if field in row}
        for _, row in customer_performance.iloc[_most_valuable(customer_performance, at_risk, limit)].iterrows()
    ]
    return {"count": len(at_risk), "customers": listed}


def _most_valuable(customer_performance: pd.DataFrame, rows: np.ndarray, limit: int) -> np.ndarray:
    """The first `limit` of `rows` by revenue_prev_period desc, churn desc, id asc (NaN last).

    The metrics table comes sorted by id, so a stable sort on the two numbers keeps ids
    ascending within ties, without copying the rows or comparing text: at 10^6 customers
    (650 k at risk) 1.3 s -> 0.1 s. Any other table is sorted the general way.
    """
    revenue, churn, ids = (
        customer_performance[c] for c in ("revenue_prev_period", "churn_probability", "customer_id")
    )
    if (
        pd.api.types.is_float_dtype(revenue.dtype)
        and pd.api.types.is_float_dtype(churn.dtype)
        and ids.is_monotonic_increasing
    ):
        # np.lexsort is stable, its last key primary; NaN sorts last, negated or not.
        order = np.lexsort((-churn.to_numpy()[rows], -revenue.to_numpy()[rows]))
        return rows[order[:limit]]
    ranked = customer_performance.iloc[rows].reset_index(drop=True).sort_values(
        ["revenue_prev_period", "churn_probability", "customer_id"],
        ascending=[False, False, True], kind="mergesort",
    )
    return rows[ranked.index.to_numpy()[:limit]]


def totals(customer_performance: pd.DataFrame) -> dict[str, Any]:
    """Period totals: revenue (exact cents), customers, active customers, transactions."""
    cur = int(dollars_to_cents(customer_performance["total_revenue"]).sum())
    prev = int(dollars_to_cents(customer_performance["revenue_prev_period"]).sum())
    return {
        "revenue": _dollars(cur),
        "revenue_prev_period": _dollars(prev),
        "revenue_growth_pct": _growth_pct(cur, prev),
        "customers": len(customer_performance),
        "active_customers": int((customer_performance["transaction_count"] >= 1).sum()),
        "transactions": int(customer_performance["transaction_count"].sum()),
    }


def top_regions(regional_summary: pd.DataFrame, limit: int = 5) -> list[dict[str, Any]]:
    """The regions with the most revenue (geography rows rolled up to the region)."""
    geography = regional_summary[regional_summary["dimension"].eq("geography").fillna(False).to_numpy(dtype=bool)]
    cents = geography.assign(cents=dollars_to_cents(geography["revenue"])).groupby("region")["cents"].sum()
    total = int(cents.sum())
    ranked = cents.sort_index().sort_values(ascending=False, kind="mergesort").head(limit)
    return [
        {"region": str(region), "revenue": _dollars(int(value)),
         "revenue_share": _round(int(value) / total, 4) if total else None}
        for region, value in ranked.items()
    ]


def business_insights(
    customer_performance: pd.DataFrame, regional_summary: pd.DataFrame, interactions: pd.DataFrame
) -> dict[str, Any]:
    """Every insight of SPEC §7 in one JSON-serialisable dict (floats rounded, NaN -> null)."""
    insights: dict[str, Any] = {
        "period": _plain(customer_performance["period"].iloc[0]) if len(customer_performance) else None,
        "totals": totals(customer_performance),
        "pareto": pareto(customer_performance),
        "segments": by_segment(customer_performance),
        "engagement_revenue_correlation": engagement_revenue_correlation(customer_performance),
        "satisfaction_by_tickets": satisfaction_by_tickets(interactions),
        "at_risk": at_risk_customers(customer_performance),
        "top_regions": top_regions(regional_summary),
    }
    logger.info("insights: %d at-risk customers", insights["at_risk"]["count"])
    return insights
