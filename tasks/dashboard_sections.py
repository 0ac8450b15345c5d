"""The dashboard's regional, business-insights and data-quality cards.

Kept apart from `tasks.dashboard` because they follow other stages' shapes: the regional
summary of SPEC §7, the insights dict of `tasks.insights.business_insights` and the
quality report of SPEC §5. An insight key this module does not know is still shown, as
plain text, rather than dropped.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from tasks import dashboard_data as data
from tasks.dashboard_charts import Point, bar_chart
from tasks.dashboard_html import (
    compact,
    esc,
    is_missing,
    money,
    number,
    percent,
    section,
    signed_percent,
    table,
)
from tasks.settings import SUMMARY_RULES

REGION_TABLE_ROWS = 8
AT_RISK_ROWS = 10
QUALITY_FAILURE_ROWS = 15
SEVERITY_ORDER = {"critical": 0, "error": 1, "warning": 2}
SUMMARY_HEADERS = {"freshness_hours": "Freshness (h)"}
# Insight keys drawn by a dedicated part of the card (or elsewhere on the page).
KNOWN_INSIGHTS = (
    "period",
    "totals",
    "pareto",
    "segments",
    "engagement_revenue_correlation",
    "satisfaction_by_tickets",
    "at_risk",
    "top_regions",
)


def _plain(value: Any) -> str:
    """Any JSON value as short escaped text, for insights this module has no layout for."""
    if isinstance(value, dict):
        return ", ".join(f"{esc(k)}: {_plain(v)}" for k, v in value.items()) or "–"
    if isinstance(value, list):
        return f"{len(value)} item(s)"
    if is_missing(value):
        return "–"
    if isinstance(value, float):
        return number(value, 4 if abs(value) < 1 else 2)
    return esc(value)


def _facts(insights: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(key, label, value html) for the single-figure insights."""
    facts: list[tuple[str, str, str]] = []
    totals = insights.get("totals") or {}
    if "revenue_growth_pct" in totals:
        facts.append(
            (
                "revenue_growth_pct",
                "Revenue vs previous period",
                signed_percent(totals["revenue_growth_pct"]),
            )
        )
    pareto = insights.get("pareto") or {}
    if "revenue_share" in pareto:
        facts.append(
            (
                "pareto",
                "Revenue from the top 20% of buyers",
                f"{percent(pareto['revenue_share'])} ({number(pareto.get('top_customers'))} of "
                f"{number(pareto.get('buyers'))} buyers)",
            )
        )
    correlation = insights.get("engagement_revenue_correlation") or {}
    if "pearson_r" in correlation:
        r = correlation["pearson_r"]
        shown = "–" if is_missing(r) else f"r = {float(r):+.2f}"
        facts.append(
            (
                "engagement_revenue_correlation",
                "Engagement ↔ revenue correlation",
                f"{shown} over {number(correlation.get('customers'))} customers",
            )
        )
    satisfaction = insights.get("satisfaction_by_tickets") or {}
    for side, label in (("with_tickets", "with a ticket"), ("without_tickets", "without a ticket")):
        if isinstance(satisfaction.get(side), dict):
            figures = satisfaction[side]
            average = figures.get("avg_satisfaction")
            shown = "–" if is_missing(average) else f"{float(average):.2f} / 5"
            facts.append(
                (
                    f"satisfaction_{side}",
                    f"Satisfaction, customers {label}",
                    f"{shown} ({number(figures.get('customers'))} customers)",
                )
            )
    for key, value in insights.items():
        if key not in KNOWN_INSIGHTS:
            facts.append((key, key.replace("_", " ").capitalize(), _plain(value)))
    return facts


def _segments_table(segments: dict[str, Any], currency: str) -> str:
    rows = [
        [
            esc(name),
            number(figures.get("customers")),
            money(figures.get("revenue"), currency),
            money(figures.get("revenue_prev_period"), currency),
            signed_percent(figures.get("revenue_growth_pct")),
            money(figures.get("clv_mean"), currency),
            money(figures.get("clv_median"), currency),
        ]
        for name, figures in segments.items()
        if isinstance(figures, dict)
    ]
    return table(
        "segment-insights",
        ["Segment", "Customers", "Revenue", "Previous period", "Growth", "CLV mean", "CLV median"],
        rows,
        numeric=[False] + [True] * 6,
    )


def _at_risk_table(at_risk: dict[str, Any], currency: str) -> str:
    customers = [c for c in at_risk.get("customers") or [] if isinstance(c, dict)]
    count = at_risk.get("count", len(customers))
    shown = customers[:AT_RISK_ROWS]
    rows = [
        [
            esc(c.get("name")) or "–",
            esc(c.get("customer_id")),
            esc(c.get("region")) or "–",
            number(c.get("churn_probability"), 3),
            money(c.get("revenue_prev_period"), currency),
            money(c.get("total_revenue"), currency),
            number(c.get("days_since_last_purchase")),
            number(c.get("open_tickets")),
        ]
        for c in shown
    ]
    caption = (
        f"The {len(shown)} most valuable of {number(count)}"
        if not is_missing(count) and count > len(shown)
        else None
    )
    return f"<h3>At-risk customers ({number(count)})</h3>" + table(
        "at-risk-customers",
        [
            "Customer",
            "ID",
            "Region",
            "Churn p",
            "Previous period",
            "This period",
            "Days since order",
            "Open tickets",
        ],
        rows,
        numeric=[False, False, False, True, True, True, True, True],
        caption=caption,
    )


def insights_section(insights: dict[str, Any], currency: str) -> str:
    """Pareto share, growth and CLV by segment, correlation, satisfaction, at-risk list."""
    facts = _facts(insights)
    left = (
        '<dl class="facts">'
        + "".join(
            f'<dt>{esc(label)}</dt><dd data-key="{esc(key)}">{value}</dd>'
            for key, label, value in facts
        )
        + "</dl>"
        if facts
        else '<p class="none">No insights for this period.</p>'
    )
    right = ""
    if isinstance(insights.get("segments"), dict) and insights["segments"]:
        right = "<h3>Growth and lifetime value by segment</h3>" + _segments_table(
            insights["segments"], currency
        )
    body = f'<div class="two-col"><div>{left}</div><div>{right}</div></div>'
    if isinstance(insights.get("at_risk"), dict):
        body += _at_risk_table(insights["at_risk"], currency)
    return section("insights", "Business insights", body, wide=True)


def dimension_table(table_id: str, rows: pd.DataFrame, label_column: str, currency: str) -> str:
    """Revenue, share, customers, AOV, engagement and satisfaction per label of a dimension."""
    cells = [
        [
            esc(row[label_column]) or "–",
            money(row["revenue"], currency),
            percent(row["revenue_share"]),
            number(row["customers"]),
            money(row["avg_order_value"], currency),
            number(row["avg_engagement"], 1),
            number(row["avg_satisfaction"], 2),
        ]
        for _, row in rows.iterrows()
    ]
    label = label_column.split("_")[-1].capitalize()
    headers = [label, "Revenue", "Share", "Customers", "AOV", "Engagement", "Satisfaction"]
    return table(table_id, headers, cells, numeric=[False] + [True] * 6)


def regional_section(regional_summary: pd.DataFrame, currency: str) -> str:
    """Revenue bars per region, the top areas, and the segment and category tables."""
    regions = data.revenue_by_region(regional_summary)
    bars = bar_chart(
        "regional-revenue-bars",
        [
            Point(str(r), float(v), str(r))
            for r, v in zip(regions["region"], regions["revenue"], strict=True)
        ],
        value_title=f"Revenue ({currency})",
        fmt=lambda v: compact(v, currency),
        width=620,
    )
    geography = data.dimension_rows(regional_summary, "geography")
    shown = geography.head(REGION_TABLE_ROWS)
    rows = [
        [
            esc(row["region"]) or "–",
            esc(" · ".join(str(p) for p in (row["country"], row["state"]) if not is_missing(p)))
            or "–",
            money(row["revenue"], currency),
            percent(row["revenue_share"]),
            number(row["customers"]),
            percent(row["penetration"]),
            percent(row["retention_rate"]),
        ]
        for _, row in shown.iterrows()
    ]
    caption = (
        f"Top {len(shown)} of {len(geography)} areas by revenue"
        if len(geography) > len(shown)
        else None
    )
    area_table = table(
        "regional-table",
        ["Region", "Country · state", "Revenue", "Share", "Customers", "Penetration", "Retention"],
        rows,
        numeric=[False, False, True, True, True, True, True],
        caption=caption,
    )
    segments = dimension_table(
        "segment-table",
        data.dimension_rows(regional_summary, "customer_segment"),
        "customer_segment",
        currency,
    )
    categories = dimension_table(
        "category-table",
        data.dimension_rows(regional_summary, "product_category"),
        "product_category",
        currency,
    )
    body = (
        f'<div class="two-col"><div><h3>Revenue by region</h3>{bars}</div>'
        f"<div><h3>By area</h3>{area_table}</div></div>"
        f'<div class="two-col"><div><h3>By customer segment</h3>{segments}</div>'
        f"<div><h3>By product category</h3>{categories}</div></div>"
    )
    return section(
        "regional-performance",
        "Regional performance",
        body,
        wide=True,
        subtitle="Penetration: share of customers who bought. Retention: last period's buyers who bought again",
    )


def _quality_value(rule: str, value: float | None) -> str:
    if value is None:
        return "–"
    if rule in ("completeness", "accuracy"):
        return percent(value, 2)
    return number(value, 1) if rule == "freshness_hours" else number(value)


def quality_section(quality_report: pd.DataFrame) -> str:
    """Summary metrics per source, then the rules that failed, most severe first."""
    is_summary = quality_report["rule"].isin(SUMMARY_RULES).fillna(False).to_numpy(dtype=bool)
    summary = quality_report[is_summary]
    sources = sorted(dict.fromkeys(summary["source"].astype(str)), key=lambda s: (s == "all", s))
    values = {
        (str(r["source"]), str(r["rule"])): data.quality_figure(r) for _, r in summary.iterrows()
    }
    summary_table = table(
        "quality-summary-table",
        ["Source", *[SUMMARY_HEADERS.get(r, r) for r in SUMMARY_RULES]],
        [
            [esc(s)] + [_quality_value(rule, values.get((s, rule))) for rule in SUMMARY_RULES]
            for s in sources
        ],
        numeric=[False] + [True] * len(SUMMARY_RULES),
    )
    rules = quality_report[~is_summary].copy()
    rules["_failed"] = pd.to_numeric(rules["failed"], errors="coerce").fillna(0)
    rules["_rank"] = rules["severity"].map(SEVERITY_ORDER).fillna(len(SEVERITY_ORDER))
    failing = rules[rules["_failed"].to_numpy() > 0].sort_values(
        ["_rank", "_failed", "source", "rule"],
        ascending=[True, False, True, True],
        kind="mergesort",
    )
    failure_rows = [
        [
            esc(r["source"]),
            esc(r["rule"]),
            esc(r["column"]) or "–",
            esc(r["severity"]),
            f"{number(r['failed'])} of {number(r['evaluated'])} ({number(r['failed_pct'], 2)}%)",
            esc(r["sample_values"]),
        ]
        for _, r in failing.head(QUALITY_FAILURE_ROWS).iterrows()
    ]
    failures_table = table(
        "quality-failures",
        ["Source", "Rule", "Column", "Severity", "Failed", "Sample"],
        failure_rows,
        numeric=[False, False, False, False, True, False],
    )
    return (
        f'<section id="quality-summary" class="card" data-rules="{len(rules)}" data-failing="{len(failing)}">'
        '<h2>Data quality</h2><p class="subtitle">Summary per source (completeness and accuracy as '
        "shares, freshness in hours, duplicates and quarantined in rows); failing rules, most severe first</p>"
        f"{summary_table}<h3>Rules with failures ({len(failing)} of {len(rules)})</h3>{failures_table}</section>"
    )
