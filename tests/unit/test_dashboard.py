"""The offline dashboard (HTML) and the pure parts of the BI push: sections, escaping,
no external references, atomic write, idempotency key, Retry-After, the BI API block."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
from pydantic import ValidationError

from blocks.bi_api import BiApiCredentials
from tasks.alerts import Alert
from tasks.bi_push import backoff_seconds, idempotency_key_for, json_ready, retry_after_seconds
from tasks.dashboard import display_period, render_dashboard, write_dashboard
from tasks.dashboard_data import revenue_series, weekday_region_matrix
from tasks.settings import (
    CUSTOMER_PERFORMANCE_COLUMNS,
    PERFORMANCE_TRENDS_COLUMNS,
    QUALITY_REPORT_COLUMNS,
    REGIONAL_SUMMARY_COLUMNS,
)

pytestmark = pytest.mark.unit

HOSTILE = "<script>alert('x')</script>"
HOSTILE_REGION = '"><img src=x onerror=alert(1)>'


def frame(rows: list[dict], columns: tuple[str, ...]) -> pd.DataFrame:
    return pd.DataFrame(rows).reindex(columns=list(columns))


def customers() -> pd.DataFrame:
    columns = (
        "customer_id",
        "name",
        "region",
        "total_revenue",
        "transaction_count",
        "customer_segment",
        "activity_level",
        "engagement_score",
        "revenue_prev_period",
    )
    rows = [
        # the top customer
        ("C1", "Ada", "North", 300.0, 3, "vip", "high", 80.0, 250.0),
        # a hostile name: must show as text, never as markup
        ("C2", HOSTILE, "South", 200.0, 1, "regular", "medium", 50.0, 250.0),
        # bought nothing: counted as a customer, absent from the top-customers table
        ("C3", "Idle", "South", 0.0, 0, "regular", "dormant", 5.0, None),
    ]  # fmt: skip
    return frame(
        [dict(zip(columns, row, strict=True)) for row in rows], CUSTOMER_PERFORMANCE_COLUMNS
    )


def regional() -> pd.DataFrame:
    geography = {"dimension": "geography", "country": "US"}
    rows = [
        # bar 1
        {**geography, "region": "North", "state": "NY", "revenue": 300.0},
        # bar 2, a hostile label
        {**geography, "region": HOSTILE_REGION, "state": "CA", "revenue": 200.0},
        # one row for the segment table, one for the category table
        {"dimension": "customer_segment", "customer_segment": "vip", "revenue": 300.0},
        {"dimension": "product_category", "product_category": "books", "revenue": 500.0},
    ]
    return frame(rows, REGIONAL_SUMMARY_COLUMNS)


def trends(tz: str = "UTC") -> pd.DataFrame:
    # Tue, Wed, Thu July 1–3, each starting at local midnight
    days = [pd.Timestamp(f"2025-07-0{d}", tz=tz).tz_convert("UTC") for d in (1, 2, 3)]
    rows = []
    for day, revenue in zip(days, (100.0, 150.0, 250.0), strict=True):
        day_row = {"grain": "day", "bucket_start": day}
        # the overall row (region null): the day chart's point
        rows.append({**day_row, "region": None, "revenue": revenue, "transactions": 2})
        # two regional rows: the heatmap's two rows (3 and 1 interactions a day)
        rows.append({**day_row, "region": "North", "revenue": revenue, "interactions": 3})
        rows.append({**day_row, "region": "South", "revenue": 0.0, "interactions": 1})
    # the week of July 1 (clipped to the period): the week chart's one bar
    rows.append({"grain": "week", "bucket_start": days[0], "region": None, "revenue": 500.0})
    return frame(rows, PERFORMANCE_TRENDS_COLUMNS)


def quality() -> pd.DataFrame:
    rows = [
        # a failing rule with a hostile sample value
        {"source": "customers", "rule": "email_format", "column": "email", "severity": "error",
         "evaluated": 3, "failed": 1, "failed_pct": 33.33, "sample_values": HOSTILE},
        # a passing rule: counted, not listed
        {"source": "transactions", "rule": "amount_positive", "column": "amount",
         "severity": "critical", "evaluated": 6, "failed": 0, "failed_pct": 0.0},
        # summary rows as tasks.quality_report writes them: 1 of 100 cells missing → 99 %
        {"source": "all", "rule": "completeness", "evaluated": 100, "failed": 1,
         "failed_pct": 1.0, "sample_values": "0.9900"},
        {"source": "all", "rule": "quarantined", "evaluated": 9, "failed": 2, "failed_pct": 22.22,
         "sample_values": "rows_in=9; rows_used=7; rows_quarantined=2"},
    ]  # fmt: skip
    return frame(rows, QUALITY_REPORT_COLUMNS)


INSIGHTS = {
    "pareto": {"buyers": 2, "top_customers": 1, "revenue_share": 0.6},
    "at_risk": {
        "count": 1,
        "customers": [{"customer_id": "C2", "name": HOSTILE, "churn_probability": 0.7}],
    },
    "custom_note": HOSTILE,  # an insight this version does not know: shown as text
}
ALERTS = [
    Alert(
        kind="revenue_anomaly",
        severity="warning",
        message=f"spike for {HOSTILE} & co",
        region=HOSTILE_REGION,
        day="2025-07-03",
    )
]


def render(**overrides: object) -> str:
    arguments = dict(
        period_label="july2025",
        customer_performance=customers(),
        regional_summary=regional(),
        performance_trends=trends(),
        quality_report=quality(),
        insights=INSIGHTS,
        alerts=ALERTS,
    )
    arguments.update(overrides)
    return render_dashboard(**arguments)  # type: ignore[arg-type]


class Elements(HTMLParser):
    """Every start tag with its attributes, and the text, as a browser's parser sees them."""

    def __init__(self, html: str):
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def by_id(self, element_id: str) -> dict[str, str | None]:
        found = [attrs for _, attrs in self.tags if attrs.get("id") == element_id]
        assert len(found) == 1, f"{element_id}: {len(found)} elements"
        return found[0]


def test_every_section_and_chart_is_there_with_its_counts() -> None:
    page = Elements(render())
    for section in (
        "kpis",
        "revenue-trend",
        "alerts",
        "insights",
        "top-customers-section",
        "engagement",
        "regional-performance",
        "quality-summary",
    ):
        page.by_id(section)
    assert page.by_id("revenue-trend-day")["data-points"] == "3"  # Jul 1, 2, 3
    assert page.by_id("revenue-trend-week")["data-bars"] == "1"  # the week of Jul 1
    assert page.by_id("top-customers")["data-rows"] == "2"  # C1, C2; C3 bought nothing
    assert page.by_id("regional-revenue-bars")["data-bars"] == "2"  # North and the hostile region
    heat = page.by_id("engagement-heatmap")
    assert (heat["data-rows"], heat["data-cols"]) == ("2", "3")  # North, South × Tue, Wed, Thu
    assert page.by_id("alerts")["data-count"] == "1"
    assert (
        page.by_id("quality-summary")["data-rules"],
        page.by_id("quality-summary")["data-failing"],
    ) == ("2", "1")
    # the day points, oldest first, with their revenue
    points = [
        a for tag, a in page.tags if tag == "circle" and a.get("class", "").startswith("point")
    ]
    assert [(p["data-key"], p["data-value"]) for p in points] == [
        ("2025-07-01", "100.00"),
        ("2025-07-02", "150.00"),
        ("2025-07-03", "250.00"),
    ]
    # the alert's day is flagged on the chart
    assert [p["data-key"] for p in points if p.get("data-flagged")] == ["2025-07-03"]


def test_hostile_text_is_inert_everywhere() -> None:
    html = render()
    page = Elements(html)
    assert "<script" not in html.lower() and "<img" not in html.lower()
    assert [tag for tag, _ in page.tags if tag in ("script", "img", "iframe", "object")] == []
    text = "".join(page.text)
    assert HOSTILE in text  # shown, as text, in the table, the alert and the insights
    # an attribute value stays one attribute: the region comes back whole from data-region
    alert_items = [a for tag, a in page.tags if tag == "li" and a.get("data-kind")]
    assert alert_items[0]["data-region"] == HOSTILE_REGION
    assert not any(name.startswith("on") for _, attrs in page.tags for name in attrs)


def test_nothing_is_fetched_from_anywhere() -> None:
    html = render()
    page = Elements(html)
    assert "http://" not in html and "https://" not in html and "//" not in html.replace("://", "")
    assert "@import" not in html
    assert [a for _, a in page.tags if "src" in a] == []
    assert [a["href"] for _, a in page.tags if "href" in a] == ["data:,"]  # the empty favicon only
    # url(...) only for in-page references (the heatmap gradients)
    assert all(part.startswith("#") for part in html.split("url(")[1:])
    csp = [
        a["content"]
        for tag, a in page.tags
        if tag == "meta" and a.get("http-equiv") == "Content-Security-Policy"
    ]
    assert (
        csp and "default-src 'none'" in csp[0] and "script-src" not in csp[0]
    )  # no script source allowed


def test_empty_period_still_renders_every_section() -> None:
    empty = dict(
        customer_performance=customers().iloc[0:0],
        regional_summary=regional().iloc[0:0],
        performance_trends=trends().iloc[0:0],
        quality_report=quality().iloc[0:0],
        insights={},
        alerts=[],
    )
    page = Elements(render(**empty))
    assert page.by_id("revenue-trend-day")["data-points"] == "0"
    assert page.by_id("top-customers")["data-rows"] == "0"
    assert page.by_id("alerts")["data-count"] == "0"
    assert "No alerts for this period." in "".join(page.text)


def test_trend_days_are_local_days() -> None:
    # Berlin: July 1 starts at 22:00 UTC on June 30; the chart must still say July 1
    page = Elements(render(performance_trends=trends("Europe/Berlin"), timezone="Europe/Berlin"))
    points = [a["data-key"] for tag, a in page.tags if tag == "circle"]
    assert points == ["2025-07-01", "2025-07-02", "2025-07-03"]


def test_orders_heatmap_appears_with_transactions() -> None:
    orders = pd.DataFrame(
        {"order_date": [pd.Timestamp("2025-07-01 09:30", tz="UTC")]}
    )  # one Tuesday 09:00 order
    page = Elements(render(transactions=orders))
    assert (
        page.by_id("orders-heatmap")["data-rows"],
        page.by_id("orders-heatmap")["data-cols"],
    ) == ("7", "24")
    hour_cells = [
        a for _, a in page.tags if a.get("class") == "cell" and str(a.get("data-col")).isdigit()
    ]
    assert len(hour_cells) == 7 * 24
    filled = [a for a in hour_cells if a["data-value"] != "0"]
    assert [(a["data-row"], a["data-col"]) for a in filled] == [("Tue", "09")]


def test_weekday_matrix_averages_per_calendar_day() -> None:
    # North: Tue Jul 1 = 4 and Tue Jul 8 = 8 interactions → Tuesday average 6, not the sum 12;
    # Wed Jul 2 has no row → 0
    rows = frame(
        [
            {
                "grain": "day",
                "bucket_start": pd.Timestamp("2025-07-01", tz="UTC"),
                "region": "North",
                "interactions": 4,
            },
            {
                "grain": "day",
                "bucket_start": pd.Timestamp("2025-07-08", tz="UTC"),
                "region": "North",
                "interactions": 8,
            },
            {
                "grain": "day",
                "bucket_start": pd.Timestamp("2025-07-02", tz="UTC"),
                "region": "South",
                "interactions": 2,
            },
        ],
        PERFORMANCE_TRENDS_COLUMNS,
    )
    matrix = weekday_region_matrix(rows)
    assert matrix.loc["North", "Tue"] == 6.0 and matrix.loc["North", "Wed"] == 0.0
    assert matrix.loc["South", "Wed"] == 2.0


def test_revenue_series_sums_regions_when_there_is_no_overall_row() -> None:
    regional_only = trends()[trends()["region"].notna()]
    assert revenue_series(regional_only, "day")["revenue"].tolist() == [
        100.0,
        150.0,
        250.0,
    ]  # North + South (0)


def test_display_period() -> None:
    assert display_period("july2025") == "July 2025"
    assert display_period("2025-07") == "2025-07"  # anything else: as given


def test_write_dashboard_replaces_atomically(tmp_path: Path) -> None:
    target = tmp_path / "out" / "dashboard_july2025.html"
    write_dashboard("<p>first</p>", target)
    write_dashboard("<p>second</p>", target)
    assert target.read_text(encoding="utf-8") == "<p>second</p>"
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]  # no temp file left
    with pytest.raises(TypeError):
        write_dashboard(b"not text", target)  # type: ignore[arg-type]  # fails mid-write
    assert target.read_text(encoding="utf-8") == "<p>second</p>"  # the old file is untouched
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]


# --- BI push: the pure parts -----------------------------------------------------------


def test_idempotency_key_is_stable_and_distinct() -> None:
    key = idempotency_key_for("customer-performance", "2025-07", "run-1")
    assert key == idempotency_key_for("customer-performance", "2025-07", "run-1")
    assert key != idempotency_key_for("customer-performance", "2025-07", "run-2")  # another run
    assert key != idempotency_key_for("customer-performance", "2025-08", "run-1")  # another period
    # no separator ambiguity: ("a-b", "c") and ("a", "b-c") differ
    assert idempotency_key_for("a-b", "c", "r") != idempotency_key_for("a", "b-c", "r")


def test_idempotency_key_is_the_same_in_another_process() -> None:
    # a different hash seed would change hash(); the key must not depend on it
    code = "from tasks.bi_push import idempotency_key_for as k; print(k('customer-performance', '2025-07', 'run-1'))"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    other = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert other.stdout.strip() == idempotency_key_for("customer-performance", "2025-07", "run-1")


def test_retry_after_forms() -> None:
    now = datetime(2025, 8, 1, 2, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("7") == 7.0
    assert (
        retry_after_seconds("Fri, 01 Aug 2025 02:00:30 GMT", now=now) == 30.0
    )  # an HTTP date 30 s ahead
    assert retry_after_seconds("Fri, 01 Aug 2025 01:00:00 GMT", now=now) == 0.0  # in the past: now
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None


def test_backoff_grows_within_its_jitter_band() -> None:
    import random

    rng = random.Random(1)
    # attempt n: step = min(cap, 1 × 2^(n−1)); the wait lies in [step/2, step]
    for attempt, step in ((1, 1.0), (2, 2.0), (3, 4.0), (7, 30.0)):
        waits = [backoff_seconds(attempt, 1.0, 30.0, rng) for _ in range(50)]
        assert all(step / 2 <= w <= step for w in waits) and len(set(waits)) > 1


def test_json_ready_makes_plain_json() -> None:
    import numpy as np

    value = {
        "a": np.int64(3),
        "b": np.float64("nan"),
        "c": pd.NA,
        "d": pd.Timestamp("2025-07-01", tz="UTC"),
        "e": [np.bool_(True), float("inf")],
    }
    assert json_ready(value) == {
        "a": 3,
        "b": None,
        "c": None,
        "d": "2025-07-01T00:00:00+00:00",
        "e": [True, None],
    }


# --- the BI API block ------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://bi.example.com/api",
        "http://127.0.0.1:8080",
        "http://localhost:9",
        "http://[::1]:8000/api",
    ],
)
def test_block_accepts_https_and_loopback_http(url: str) -> None:
    assert BiApiCredentials(base_url=url, token="t").base_url == url


def test_block_refuses_plain_http_to_another_host_unless_allowed() -> None:
    with pytest.raises(ValidationError, match="plain http"):
        BiApiCredentials(base_url="http://bi.example.com", token="t")
    assert BiApiCredentials(base_url="http://bi.example.com", token="t", allow_insecure_http=True)


def test_block_never_shows_its_token() -> None:
    block = BiApiCredentials(base_url="https://bi.example.com", token="tok-SECRET-123")
    assert "tok-SECRET-123" not in repr(block) + str(block) + block.model_dump_json()
    with pytest.raises(ValidationError) as error:
        BiApiCredentials(base_url="http://bi.example.com", token="tok-SECRET-123")
    assert "tok-SECRET-123" not in str(error.value)  # a failed validation does not echo it either
    with pytest.raises(ValidationError, match="credentials") as error:
        BiApiCredentials(base_url="https://user:pw-SECRET@bi.example.com", token="t")
    assert "pw-SECRET" not in str(error.value)
    with block.get_client() as client:
        assert client.headers["Authorization"] == "Bearer tok-SECRET-123"
        assert client.follow_redirects is False
