"""The offline HTML dashboard, `dashboard_{period}.html` (SPEC §8.2 b).

`render_dashboard` turns the stage outputs into one self-contained document: inline CSS,
inline SVG charts drawn in Python, no script, and no font, image or stylesheet fetched
from anywhere, so it opens the same on a plane as on the report server. `write_dashboard`
puts it on disk atomically, so nobody opens half a file.

Stable ids, for tests and for anyone scripting against the file: sections kpis,
revenue-trend, alerts, insights, top-customers-section, engagement, regional-performance,
quality-summary; charts svg#revenue-trend-day (data-points), svg#revenue-trend-week,
svg#regional-revenue-bars (data-bars), svg#engagement-heatmap,
svg#segment-activity-heatmap, svg#orders-heatmap (data-rows, data-cols); tables
table#top-customers, #regional-table, #segment-table, #category-table (data-rows).
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from tasks import dashboard_data as data
from tasks.alerts import REVENUE_ANOMALY, Alert, sort_alerts
from tasks.dashboard_charts import Point, column_chart, heatmap, line_chart
from tasks.dashboard_html import (
    attrs,
    compact,
    esc,
    money,
    number,
    page,
    percent,
    section,
    signed_percent,
    table,
)
from tasks.dashboard_sections import insights_section, quality_section, regional_section

TOP_CUSTOMERS = 10
_MONTH_LABEL = re.compile(r"^([a-z]+)(\d{4})$")


def display_period(period_label: str) -> str:
    """'july2025' (the output-name form) as 'July 2025'; any other label unchanged."""
    match = _MONTH_LABEL.match(period_label)
    return f"{match.group(1).capitalize()} {match.group(2)}" if match else period_label


def _short_day(iso_day: str) -> str:
    stamp = pd.Timestamp(iso_day)
    return f"{stamp:%b} {stamp.day}"


def _kpi(label: str, value: str, note: str = "", note_class: str = "") -> str:
    note_html = f'<div class="note {note_class}">{esc(note)}</div>' if note else ""
    return (
        f'<div class="kpi"{attrs(data_kpi=label)}><div class="label">{esc(label)}</div>'
        f'<div class="value">{esc(value)}</div>{note_html}</div>'
    )


def _kpis_section(
    totals: dict[str, float | int | None], insights: dict[str, Any], currency: str
) -> str:
    change = totals["change_pct"]
    change_note = f"{signed_percent(change)} vs previous period" if change is not None else ""
    trend_class = "" if change is None else ("up" if change >= 0 else "down")
    cards = [
        _kpi("Revenue", money(totals["revenue"], currency, 0), change_note, trend_class),
        _kpi(
            "Customers",
            number(totals["customers"]),
            f"{number(totals['active_customers'])} bought this period",
        ),
        _kpi("Transactions", number(totals["transactions"])),
        _kpi("Avg order value", money(totals["avg_order_value"], currency)),
        _kpi("Avg engagement", number(totals["avg_engagement"], 1), "score 0–100"),
        _kpi("At-risk customers", number(totals["at_risk"]), "churn probability ≥ threshold"),
    ]
    pareto = insights.get("pareto")
    if isinstance(pareto, dict) and pareto.get("revenue_share") is not None:
        cards.append(
            _kpi(
                "Top 20% share", percent(pareto["revenue_share"]), "of revenue, from the top buyers"
            )
        )
    return section(
        "kpis", "Headline figures", f'<div class="kpis">{"".join(cards)}</div>', wide=True
    )


def _revenue_section(
    trends: pd.DataFrame, currency: str, timezone: str, alerts: Sequence[Alert]
) -> str:
    daily = data.revenue_series(trends, "day", timezone)
    anomaly_days = {a.day for a in alerts if a.kind == REVENUE_ANOMALY and a.day}
    weekly = data.revenue_series(trends, "week", timezone)

    def axis(value: float) -> str:
        return compact(value, currency)

    day_points = [
        Point(
            _short_day(d),
            float(r),
            d,
            f"{d} · {int(t):,} orders" + (" · anomaly alert" if d in anomaly_days else ""),
            flagged=d in anomaly_days,
        )
        for d, r, t in zip(daily["day"], daily["revenue"], daily["transactions"], strict=True)
    ]
    week_points = [
        Point(f"from {_short_day(d)}", float(r), d, f"Week from {d} · {int(t):,} orders")
        for d, r, t in zip(weekly["day"], weekly["revenue"], weekly["transactions"], strict=True)
    ]
    revenue_title = f"Revenue ({currency})"
    body = (
        "<h3>By day</h3>"
        + line_chart(
            "revenue-trend-day", day_points, x_title="Day", y_title=revenue_title, fmt=axis
        )
        + "<h3>By week</h3>"
        + column_chart(
            "revenue-trend-week",
            week_points,
            x_title="ISO week (clipped to the period)",
            y_title=revenue_title,
            fmt=axis,
            width=1200,
            height=250,
        )
    )
    return section(
        "revenue-trend",
        "Revenue trend",
        body,
        wide=True,
        subtitle=f"Completed orders net of discounts, in {currency}; days in {timezone}; "
        "red dots: a region had a revenue anomaly that day",
    )


def segment_tag(segment: Any) -> str:
    """A coloured pill for a customer segment (vip, at_risk, new, regular)."""
    return f'<span class="tag {esc(segment)}">{esc(segment) or "–"}</span>'


def _top_customers_section(customer_performance: pd.DataFrame, currency: str) -> str:
    top = data.top_customers(customer_performance, TOP_CUSTOMERS)
    rows = [
        [
            str(rank),
            esc(row["name"]) or "–",
            esc(row["customer_id"]),
            esc(row["region"]) or "–",
            segment_tag(row["customer_segment"]),
            money(row["total_revenue"], currency),
            number(row["transaction_count"]),
            money(row["avg_order_value"], currency),
            number(row["engagement_score"], 1),
            number(row["churn_probability"], 3),
        ]
        for rank, (_, row) in enumerate(top.iterrows(), start=1)
    ]
    headers = ["#", "Customer", "ID", "Region", "Segment"]
    headers += ["Revenue", "Orders", "AOV", "Engagement", "Churn p"]
    numeric = [True, False, False, False, False, True, True, True, True, True]
    return section(
        "top-customers-section",
        "Top customers",
        table("top-customers", headers, rows, numeric=numeric),
        subtitle=f"The {TOP_CUSTOMERS} highest-revenue customers of the period",
        wide=True,
    )


def _engagement_section(
    trends: pd.DataFrame,
    customer_performance: pd.DataFrame,
    transactions: pd.DataFrame | None,
    timezone: str,
) -> str:
    weekday = data.weekday_region_matrix(trends, "interactions", timezone)
    by_weekday = heatmap(
        "engagement-heatmap",
        [str(r) for r in weekday.index],
        list(weekday.columns),
        weekday.to_numpy(dtype=float).tolist(),
        fmt=lambda v: f"{v:.1f}",
        legend_title="per day",
        row_title="region",
        col_title="weekday",
    )
    segments = data.segment_activity_matrix(customer_performance)
    by_segment = heatmap(
        "segment-activity-heatmap",
        [str(r) for r in segments.index],
        [str(c) for c in segments.columns],
        segments.to_numpy(dtype=float).tolist(),
        fmt=lambda v: f"{v:,.0f}",
        legend_title="customers",
        row_title="segment",
        col_title="activity level",
    )
    body = (
        '<div class="two-col"><div><h3>CRM interactions per day, by region and weekday</h3>'
        f"{by_weekday}</div><div><h3>Customers by segment and activity level</h3>{by_segment}</div></div>"
    )
    if transactions is not None:
        hours = data.weekday_hour_matrix(transactions, timezone)
        body += f"<h3>Orders by weekday and hour of day ({esc(timezone)})</h3>" + heatmap(
            "orders-heatmap",
            list(hours.index),
            [f"{h:02d}" for h in hours.columns],
            hours.to_numpy(dtype=float).tolist(),
            fmt=lambda v: f"{v:,.0f}",
            legend_title="orders",
            row_title="weekday",
            col_title="hour",
            width=1200,
        )
    return section(
        "engagement",
        "Engagement",
        body,
        wide=True,
        subtitle="Darker cells: more activity. Per-day averages, so weekdays compare fairly",
    )


def _alerts_section(alerts: Sequence[Alert]) -> str:
    ordered = sort_alerts(list(alerts))
    items = "".join(
        f'<li class="{esc(a.severity)}"'
        f"{attrs(data_kind=a.kind, data_severity=a.severity, data_region=a.region, data_day=a.day)}>"
        f'<span class="sev">{esc(a.severity)}</span>{esc(a.message)}</li>'
        for a in ordered
    )
    body = (
        f'<ul class="alerts">{items}</ul>'
        if ordered
        else '<p class="none">No alerts for this period.</p>'
    )
    return (
        f'<section id="alerts" class="card" data-count="{len(ordered)}"><h2>Alerts</h2>'
        '<p class="subtitle">Revenue anomalies (robust z-score per region), revenue drop, '
        f"quality thresholds</p>{body}</section>"
    )


def render_dashboard(
    *,
    period_label: str,
    customer_performance: pd.DataFrame,
    regional_summary: pd.DataFrame,
    performance_trends: pd.DataFrame,
    quality_report: pd.DataFrame,
    insights: dict[str, Any],
    alerts: list[Alert],
    transactions: pd.DataFrame | None = None,
    currency: str = "USD",
    timezone: str = "UTC",
    generated_at: str | None = None,
) -> str:
    """One self-contained HTML document for the period: no network needed to open it.

    `transactions` (the period's cleansed rows) adds the orders-by-hour heatmap;
    `timezone` is the pipeline's and names the days of the trend buckets.
    """
    shown_period = display_period(period_label)
    subtitle = (
        f"Period {shown_period} · {len(customer_performance):,} customers · amounts in {currency}"
    )
    if generated_at:
        subtitle += f" · generated {generated_at}"
    body = "".join(
        [
            _kpis_section(data.kpi_totals(customer_performance), insights, currency),
            _revenue_section(performance_trends, currency, timezone, alerts),
            _alerts_section(alerts),
            quality_section(quality_report),
            insights_section(insights, currency),
            _top_customers_section(customer_performance, currency),
            _engagement_section(performance_trends, customer_performance, transactions, timezone),
            regional_section(regional_summary, currency),
            "<footer>Customer performance pipeline · a self-contained report: it works offline</footer>",
        ]
    )
    return page(title=f"Customer performance · {shown_period}", subtitle=subtitle, body=body)


def write_dashboard(html: str, path: Path) -> Path:
    """Write the document atomically: a temp file in the same folder, then os.replace."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="\n") as out:
            out.write(html)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temp_name, 0o644)  # mkstemp makes it private; a report is meant to be read
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return path
