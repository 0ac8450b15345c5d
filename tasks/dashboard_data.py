"""The figures the dashboard and the BI payload show, computed from the stage outputs.

Pure functions over frames: no HTML here, so the HTML page and the JSON payload show the
same numbers. Days are named in the pipeline's time zone: a trend bucket starts at local
midnight, stored as UTC, so reading it in UTC would shift it a day east of Greenwich.
"""

from __future__ import annotations

import math

import pandas as pd

from tasks.alerts import local_days
from tasks.quality_report import summary_value

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
ACTIVITY_LEVELS = ("high", "medium", "low", "dormant")
SEGMENTS = ("vip", "regular", "new", "at_risk")
ALL_REGIONS = "All regions"


def _numeric(values: pd.Series) -> pd.Series:
    return pd.to_numeric(values, errors="coerce").fillna(0.0).astype(float)


def _grain_rows(trends: pd.DataFrame, grain: str, timezone: str) -> pd.DataFrame:
    """Rows of one grain with `day` (local ISO date) and numeric measures."""
    rows = trends[(trends["grain"] == grain).fillna(False).to_numpy(dtype=bool)]
    return pd.DataFrame(
        {
            "day": local_days(rows["bucket_start"], timezone).to_numpy(),
            "region": rows["region"].astype("string").to_numpy(),
            "revenue": _numeric(rows["revenue"]).to_numpy(),
            "transactions": _numeric(rows["transactions"]).to_numpy(),
            "interactions": _numeric(rows["interactions"]).to_numpy(),
        }
    )


def revenue_series(trends: pd.DataFrame, grain: str, timezone: str = "UTC") -> pd.DataFrame:
    """Overall `day`, `revenue`, `transactions` per bucket (grain day or week), oldest first.

    The overall rows (region null) are used when present; otherwise the regional rows are
    summed, which gives the same totals.
    """
    rows = _grain_rows(trends, grain, timezone)
    overall = rows[rows["region"].isna().to_numpy(dtype=bool)]
    chosen = overall if not overall.empty else rows
    series = chosen.groupby("day", as_index=False)[["revenue", "transactions"]].sum()
    series["revenue"] = series["revenue"].round(2)  # summing cents as floats leaves dust
    series["transactions"] = series["transactions"].astype("int64")
    return series.sort_values("day").reset_index(drop=True)


def weekday_region_matrix(
    trends: pd.DataFrame, measure: str = "interactions", timezone: str = "UTC"
) -> pd.DataFrame:
    """Average `measure` per calendar day by region (rows) and weekday (columns Mon..Sun).

    An average, not a sum: a month has four of some weekdays and five of others. A day a
    region has no row for counts as 0.
    """
    rows = _grain_rows(trends, "day", timezone)
    regional = rows[rows["region"].notna().to_numpy(dtype=bool)]
    if regional.empty:
        regional = rows.assign(region=ALL_REGIONS)
    if regional.empty:
        return pd.DataFrame(columns=list(WEEKDAYS), dtype=float)
    per_day = regional.pivot_table(
        index="day", columns="region", values=measure, aggfunc="sum", fill_value=0.0
    ).reindex(sorted(rows["day"].unique()), fill_value=0.0)
    weekday = [WEEKDAYS[d] for d in pd.to_datetime(per_day.index).dayofweek]
    matrix = per_day.groupby(weekday).mean().T
    return matrix.reindex(columns=[d for d in WEEKDAYS if d in matrix.columns]).sort_index()


def weekday_hour_matrix(transactions: pd.DataFrame, timezone: str = "UTC") -> pd.DataFrame:
    """Orders per weekday (rows Mon..Sun) and local hour of day (columns 0..23)."""
    moments = pd.to_datetime(transactions["order_date"], utc=True, errors="coerce").dropna()
    local = moments.dt.tz_convert(timezone)
    counts = pd.crosstab(local.dt.dayofweek, local.dt.hour)
    return counts.reindex(index=range(7), columns=range(24), fill_value=0).rename(
        index=dict(enumerate(WEEKDAYS))
    )


def segment_activity_matrix(customer_performance: pd.DataFrame) -> pd.DataFrame:
    """Customers per segment (rows) and activity level (columns), known labels first."""
    counts = pd.crosstab(
        customer_performance["customer_segment"].astype("string").fillna("unknown"),
        customer_performance["activity_level"].astype("string").fillna("unknown"),
    )
    rows = [s for s in SEGMENTS if s in counts.index] + sorted(set(counts.index) - set(SEGMENTS))
    cols = [a for a in ACTIVITY_LEVELS if a in counts.columns]
    cols += sorted(set(counts.columns) - set(ACTIVITY_LEVELS))
    return counts.reindex(index=rows, columns=cols, fill_value=0)


def top_customers(customer_performance: pd.DataFrame, n: int) -> pd.DataFrame:
    """The n buyers with the highest revenue; ties broken by customer_id for a stable list."""
    frame = customer_performance.assign(_revenue=_numeric(customer_performance["total_revenue"]))
    frame = frame[frame["_revenue"].to_numpy() > 0]
    ranked = frame.sort_values(
        ["_revenue", "customer_id"], ascending=[False, True], kind="mergesort"
    )
    return ranked.head(n).drop(columns="_revenue")


def dimension_rows(regional_summary: pd.DataFrame, dimension: str) -> pd.DataFrame:
    """The summary rows of one dimension, largest revenue first (then by their labels)."""
    rows = regional_summary[
        (regional_summary["dimension"] == dimension).fillna(False).to_numpy(dtype=bool)
    ]
    labels = {
        "geography": ["region", "country", "state"],
        "customer_segment": ["customer_segment"],
        "product_category": ["product_category"],
    }[dimension]
    ranked = rows.assign(_revenue=_numeric(rows["revenue"])).sort_values(
        ["_revenue", *labels], ascending=[False] + [True] * len(labels), kind="mergesort"
    )
    return ranked.drop(columns="_revenue").reset_index(drop=True)


def revenue_by_region(regional_summary: pd.DataFrame) -> pd.DataFrame:
    """`region`, `revenue`: geography rows summed over country and state, largest first."""
    geography = dimension_rows(regional_summary, "geography")
    frame = pd.DataFrame(
        {
            "region": geography["region"].astype("string").fillna("unknown"),
            "revenue": _numeric(geography["revenue"]),
        }
    )
    grouped = frame.groupby("region", as_index=False)["revenue"].sum()
    return grouped.sort_values(["revenue", "region"], ascending=[False, True]).reset_index(
        drop=True
    )


def kpi_totals(customer_performance: pd.DataFrame) -> dict[str, float | int | None]:
    """Headline numbers from the per-customer table (the source of every other figure).

    previous_revenue is the sum of revenue_prev_period, i.e. last month's revenue of this
    month's customers; None when no customer has one.
    """
    revenue = _numeric(customer_performance["total_revenue"])
    transactions = _numeric(customer_performance["transaction_count"])
    previous = pd.to_numeric(customer_performance["revenue_prev_period"], errors="coerce")
    engagement = pd.to_numeric(customer_performance["engagement_score"], errors="coerce")
    total = round(float(revenue.sum()), 2)
    previous_total = round(float(previous.sum()), 2) if previous.notna().any() else None
    orders = float(transactions.sum())
    return {
        "revenue": total,
        "previous_revenue": previous_total,
        "change_pct": (total - previous_total) / previous_total * 100 if previous_total else None,
        "customers": len(customer_performance),
        "active_customers": int((transactions > 0).sum()),
        "transactions": int(orders),
        "avg_order_value": round(total / orders, 2) if orders else None,
        "avg_engagement": float(engagement.mean()) if engagement.notna().any() else None,
        "at_risk": int((customer_performance["customer_segment"] == "at_risk").fillna(False).sum()),
    }


def quality_figure(row: pd.Series) -> float | None:
    """The figure of a quality-report summary row, None when it has none.

    completeness and accuracy as ratios and freshness in hours, read as
    `tasks.quality_report` writes them; duplicates and quarantined as row counts (`failed`).
    """
    if row["rule"] in ("duplicates", "quarantined"):
        failed = pd.to_numeric(row["failed"], errors="coerce")
        return None if pd.isna(failed) else float(failed)
    try:
        value = summary_value(row)
    except (TypeError, ValueError):  # a malformed figure is shown as missing, not a crash
        return None
    return None if value is None or not math.isfinite(value) else float(value)
