"""The dashboard in a real headless Chromium, with the network off.

Chromium is driven over the DevTools protocol (a websocket on loopback): it records every
console message, uncaught exception and network request while the page loads from
file://, then answers DOM questions and takes a full-page screenshot, written to
output/dashboard_test_screenshot.png for a human to look at.

Network off: the browser's proxy is a closed port (127.0.0.1:9) with no bypass, so any
fetch that is not file:// or data: fails and is recorded. A control page that does fetch
proves the recording works, so the offline assertion can fail.

The month is generated, not hand-written: this test is about rendering a realistic page
(31 days, 5 regions, 60 customers), not about values, which the unit tests check.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tasks.alerts import Alert, detect_alerts
from tasks.config import DashboardDestination, QualityConfig
from tasks.dashboard import render_dashboard, write_dashboard
from tasks.insights import business_insights
from tasks.settings import (
    CUSTOMER_PERFORMANCE_COLUMNS,
    PERFORMANCE_TRENDS_COLUMNS,
    QUALITY_REPORT_COLUMNS,
    REGIONAL_SUMMARY_COLUMNS,
)

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = REPO_ROOT / "output" / "dashboard_test_screenshot.png"
CHROMIUM = Path("/usr/bin/chromium")
IN_CI = os.environ.get("CI", "").lower() == "true"
NOISY_CONSOLE = ("error", "warning", "assert")
NOISY_LOG = ("error", "warning")
HOSTILE_NAME = "<script>document.title='pwned'</script>"
REGIONS = ("North", "South", "East", "West", "Central")


# --- the generated month --------------------------------------------------------------


def _trends(rng: np.random.Generator) -> pd.DataFrame:
    """31 days × 5 regions with a weekend dip, the overall days, and the clipped weeks."""
    days = pd.date_range("2025-07-01", "2025-07-31", freq="D", tz="UTC")
    grid = pd.MultiIndex.from_product([REGIONS, days], names=["region", "bucket_start"])
    daily = grid.to_frame(index=False)
    level = daily["region"].map(dict(zip(REGIONS, (5200, 3900, 4600, 3100, 1800), strict=True)))
    weekend = np.where(daily["bucket_start"].dt.dayofweek >= 5, 0.7, 1.0)
    daily["revenue"] = (level * weekend * rng.uniform(0.85, 1.15, len(daily))).round(2)
    spike = (daily["region"] == "East") & (daily["bucket_start"].dt.day == 17)
    daily.loc[spike, "revenue"] = 4600 * 4.2  # the planted spike the anomaly alert must find
    daily["transactions"] = daily["revenue"] // 80
    daily["interactions"] = rng.integers(6, 30, len(daily))
    measures = ["revenue", "transactions", "interactions"]
    overall = daily.groupby("bucket_start", as_index=False)[measures].sum()
    monday = overall["bucket_start"] - pd.to_timedelta(
        overall["bucket_start"].dt.dayofweek, unit="D"
    )
    weekly = overall.assign(bucket_start=monday.clip(lower=days[0]))
    weekly = weekly.groupby("bucket_start", as_index=False)[measures].sum()
    parts = [daily.assign(grain="day"), overall.assign(grain="day"), weekly.assign(grain="week")]
    return pd.concat(parts, ignore_index=True).reindex(columns=list(PERFORMANCE_TRENDS_COLUMNS))


def _customers(rng: np.random.Generator, n: int = 60) -> pd.DataFrame:
    """Pareto-shaped revenue; every 9th customer bought nothing; customer 0 has a hostile name."""
    ids = np.arange(n)
    revenue = np.where(ids % 9 == 0, 0.0, (rng.pareto(1.6, n) * 900 + 40).round(2))
    orders = np.where(revenue > 0, rng.integers(1, 9, n), 0)
    engagement = rng.uniform(8, 96, n).round(1)
    level = np.select(
        [revenue == 0, (orders >= 4) | (engagement >= 70), (orders >= 2) | (engagement >= 40)],
        ["dormant", "high", "medium"], "low",
    )  # fmt: skip
    segment = np.where(revenue > 2000, "vip", np.where(ids % 7 == 0, "at_risk", "regular"))
    frame = pd.DataFrame(
        {
            "period": "2025-07", "customer_id": [f"C{i:04d}" for i in ids],
            "name": [HOSTILE_NAME if i == 0 else f"Customer {i:02d} & Sons" for i in ids],
            "region": [REGIONS[i % 5] for i in ids], "country": "US", "state": "CA",
            "transaction_count": orders, "total_revenue": revenue,
            "avg_order_value": np.where(orders > 0, revenue / np.maximum(orders, 1), np.nan).round(2),
            "days_since_last_purchase": np.where(orders > 0, 3, np.nan), "open_tickets": 0,
            "engagement_score": engagement, "activity_level": level,
            "churn_probability": rng.uniform(0.05, 0.9, n).round(3),
            "revenue_prev_period": (revenue * rng.uniform(0.8, 1.3, n)).round(2),
            "clv": revenue * 10, "customer_segment": segment,
        }
    )  # fmt: skip
    return frame.reindex(columns=list(CUSTOMER_PERFORMANCE_COLUMNS))


def _regional(rng: np.random.Generator) -> pd.DataFrame:
    """15 areas (5 regions × 3 states), 4 segments, 4 categories."""
    rows = [
        {"dimension": "geography", "region": r, "country": "US", "state": s}
        for r in REGIONS
        for s in ("CA", "NY", "TX")
    ]
    rows += [
        {"dimension": "customer_segment", "customer_segment": s}
        for s in ("vip", "regular", "new", "at_risk")
    ]
    rows += [
        {"dimension": "product_category", "product_category": c}
        for c in ("electronics", "home", "books")
    ]
    frame = pd.DataFrame(rows).assign(revenue=rng.uniform(5_000, 60_000, len(rows)).round(2))
    per_dimension = frame.groupby("dimension")["revenue"].transform("sum")
    frame = frame.assign(
        period="2025-07", revenue_share=frame["revenue"] / per_dimension, customers=40,
        active_customers=30, new_customers=2, transactions=300, avg_order_value=95.5,
        avg_engagement=55.2, avg_satisfaction=4.1, retention_rate=0.82, penetration=0.75,
    )  # fmt: skip
    return frame.reindex(columns=list(REGIONAL_SUMMARY_COLUMNS))


def _quality() -> pd.DataFrame:
    return pd.DataFrame(
        [
            ("transactions", "amount_positive", "amount", "critical", False, 4000, 12, 0.3, "-5.0, 0.0"),
            ("customers", "email_format", "email", "error", False, 60, 2, 3.33, "not-an-email"),
            ("interactions", "satisfaction_range", "satisfaction_score", "error", True, 700, 0, 0.0, ""),
            # summary rows as tasks.quality_report writes them (the figure as text)
            ("all", "completeness", None, None, False, 9000, 90, 1.0, "0.9900"),
            ("all", "accuracy", None, None, False, 4700, 600, 12.77, "0.8723"),
            ("all", "freshness_hours", None, None, True, None, None, None, "6.5"),
            ("all", "duplicates", None, None, False, 4000, 3, 0.08, "transaction_id_unique=3"),
            ("all", "quarantined", None, None, False, 4760, 14, 0.29,
             "rows_in=4760; rows_used=4746; rows_quarantined=14"),
        ],
        columns=list(QUALITY_REPORT_COLUMNS),
    )  # fmt: skip


def july_2025() -> dict[str, Any]:
    """A plausible July 2025: weekday rhythm, five regions, one planted revenue spike."""
    rng = np.random.default_rng(7)
    performance, regional = _customers(rng), _regional(rng)
    seconds = rng.uniform(0, 31 * 86400, 900)
    transactions = pd.DataFrame(
        {"order_date": pd.Timestamp("2025-07-01", tz="UTC") + pd.to_timedelta(seconds, unit="s")}
    )
    interactions = pd.DataFrame(
        {
            "customer_id": [f"C{i % 60:04d}" for i in range(240)],
            "interaction_type": ["ticket" if i % 5 == 0 else "email" for i in range(240)],
            "satisfaction_score": rng.integers(1, 6, 240).astype(float),
        }
    )
    return {
        "customer_performance": performance,
        "regional_summary": regional,
        "performance_trends": _trends(rng),
        "quality_report": _quality(),
        # the real insights of the generated month, so the page is drawn from the real shape
        "insights": business_insights(performance, regional, interactions),
        "transactions": transactions,
    }


def month_alerts(month: dict[str, Any]) -> list[Alert]:
    performance = month["customer_performance"]
    return detect_alerts(
        trends=month["performance_trends"],
        quality_report=month["quality_report"],
        current_revenue=float(performance["total_revenue"].sum()),
        previous_revenue=float(performance["revenue_prev_period"].sum()) * 1.4,
        dashboard=DashboardDestination(),
        quality=QualityConfig(),
    )


# --- Chromium over the DevTools protocol ---------------------------------------------


def chromium_path() -> Path:
    """Chromium, installed from Debian when missing and we are root; else skip (fail in CI)."""
    if (
        not CHROMIUM.exists()
        and hasattr(os, "geteuid")
        and os.geteuid() == 0
        and shutil.which("apt-get")
    ):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-q", "chromium"]
        if subprocess.run(install, env=env, capture_output=True).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)
            subprocess.run(install, env=env, capture_output=True)
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing; install it with: apt-get install -y chromium"
        if IN_CI:
            pytest.fail(f"CI=true and {message}", pytrace=False)
        pytest.skip(f"SKIPPED LOUDLY: {message}")
    return CHROMIUM


class Browser:
    """One headless Chromium with a page session; events are kept for later assertions."""

    def __init__(self, process: subprocess.Popen[str], socket: Any, session: str):
        self.process, self.socket, self.session = process, socket, session
        self.events: list[dict[str, Any]] = []
        self._next_id = 0

    def send(
        self, method: str, params: dict[str, Any] | None = None, timeout: float = 20
    ) -> dict[str, Any]:
        self._next_id += 1
        message_id = self._next_id
        command = {
            "id": message_id,
            "method": method,
            "params": params or {},
            "sessionId": self.session,
        }
        self.socket.send(json.dumps(command))
        deadline = time.monotonic() + timeout
        while True:
            message = json.loads(self.socket.recv(timeout=max(0.1, deadline - time.monotonic())))
            if message.get("id") == message_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def wait_for(self, method: str, timeout: float = 20) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events:
                if event.get("method") == method:
                    return event
            self.events.append(
                json.loads(self.socket.recv(timeout=max(0.1, deadline - time.monotonic())))
            )

    def open(self, url: str) -> None:
        """Navigate and wait until the load event (every sub-resource tried)."""
        self.events.clear()
        self.send("Page.navigate", {"url": url})
        self.wait_for("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            raise RuntimeError(f"evaluate failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def problems(self) -> list[str]:
        """Console errors and warnings, uncaught exceptions, log entries of level error."""
        found = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in NOISY_CONSOLE:
                found.append(f"console.{params['type']}: {params.get('args')}")
            elif method == "Runtime.exceptionThrown":
                found.append(f"Uncaught: {params.get('exceptionDetails', {}).get('text')}")
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") in NOISY_LOG:
                found.append(f"log {params['entry']['level']}: {params['entry'].get('text')}")
        return found

    def requested_urls(self) -> list[str]:
        return [
            e["params"]["request"]["url"]
            for e in self.events
            if e.get("method") == "Network.requestWillBeSent"
        ]


def _devtools_url(process: subprocess.Popen[str], timeout: float = 30) -> str:
    lines: queue.Queue[str] = queue.Queue()
    assert process.stderr is not None
    stderr = process.stderr
    threading.Thread(target=lambda: [lines.put(line) for line in stderr], daemon=True).start()
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            if process.poll() is not None:
                break
            continue
        seen.append(line)
        if line.startswith("DevTools listening on "):
            return line.split(" on ", 1)[1].strip()
    raise RuntimeError("Chromium did not open DevTools:\n" + "".join(seen[-20:]))


# Headless, no sandbox (root), nothing that phones home. Network off: every proxied
# request goes to a closed port, and "<-loopback>" removes the implicit loopback bypass.
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync",
    "--disable-extensions", "--hide-scrollbars",
    "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>",
    "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
)  # fmt: skip


def _browser_call(
    socket: Any, message_id: int, method: str, params: dict[str, Any]
) -> dict[str, Any]:
    """A browser-level DevTools command (no session), waiting for its answer."""
    socket.send(json.dumps({"id": message_id, "method": method, "params": params}))
    while True:
        message = json.loads(socket.recv(timeout=20))
        if message.get("id") == message_id:
            return message["result"]


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    from websockets.sync.client import connect

    profile = tmp_path_factory.mktemp("chromium-profile")
    command = [str(chromium_path()), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"]
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        with connect(_devtools_url(process), proxy=None, max_size=None, open_timeout=20) as socket:
            targets = _browser_call(socket, 1, "Target.getTargets", {})["targetInfos"]
            page_id = next(t["targetId"] for t in targets if t["type"] == "page")
            attached = _browser_call(
                socket, 2, "Target.attachToTarget", {"targetId": page_id, "flatten": True}
            )
            page = Browser(process, socket, attached["sessionId"])
            for domain in ("Page", "Runtime", "Log", "Network"):
                page.send(f"{domain}.enable")
            metrics = {"width": 1400, "height": 2400, "deviceScaleFactor": 1, "mobile": False}
            page.send("Emulation.setDeviceMetricsOverride", metrics)
            yield page
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.fixture(scope="module")
def dashboard_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    month = july_2025()
    html = render_dashboard(period_label="july2025", alerts=month_alerts(month), **month)
    return write_dashboard(html, tmp_path_factory.mktemp("dashboard") / "dashboard_july2025.html")


# --- tests ---------------------------------------------------------------------------


def test_the_recorder_sees_a_fetch_and_its_failure(browser: Browser, tmp_path: Path) -> None:
    # A control page that fetches from the web: with the network off this must show up both
    # as a request and as an error, or the offline test below proves nothing.
    control = tmp_path / "control.html"
    control.write_text(
        '<!DOCTYPE html><html><body><img src="https://example.com/logo.png"></body></html>'
    )
    browser.open(control.as_uri())
    assert "https://example.com/logo.png" in browser.requested_urls()
    assert any("ERR_" in problem for problem in browser.problems()), browser.problems()


def test_dashboard_renders_offline_without_errors(browser: Browser, dashboard_file: Path) -> None:
    browser.open(dashboard_file.as_uri())
    assert browser.problems() == []
    external = [u for u in browser.requested_urls() if not u.startswith(("file://", "data:"))]
    assert external == []


def test_charts_and_sections_are_in_the_rendered_dom(
    browser: Browser, dashboard_file: Path
) -> None:
    browser.open(dashboard_file.as_uri())
    found = browser.evaluate("""(() => {
        const size = (sel) => { const e = document.querySelector(sel);
            if (!e) return null; const r = e.getBoundingClientRect(); return [Math.round(r.width), Math.round(r.height)]; };
        const count = (sel) => document.querySelectorAll(sel).length;
        const data = (sel, name) => { const e = document.querySelector(sel); return e ? e.getAttribute(name) : null; };
        return {
          sections: ['kpis', 'revenue-trend', 'alerts', 'insights', 'top-customers-section', 'engagement',
                     'regional-performance', 'quality-summary'].map(id => [id, size('#' + id)]),
          dayPoints: count('#revenue-trend-day circle.point'), dayPointsAttr: data('#revenue-trend-day', 'data-points'),
          dayChart: size('#revenue-trend-day'),
          weekBars: count('#revenue-trend-week rect.bar'),
          regionBars: count('#regional-revenue-bars rect.bar'),
          heatCells: count('#engagement-heatmap rect.cell'),
          heatShape: [data('#engagement-heatmap', 'data-rows'), data('#engagement-heatmap', 'data-cols')],
          orderCells: count('#orders-heatmap rect.cell'),
          topRows: count('#top-customers tbody tr'),
          spikeAlerts: Array.from(document.querySelectorAll('#alerts li[data-kind="revenue_anomaly"]'))
                            .map(li => [li.dataset.region, li.dataset.day]),
          scripts: count('script'),
          title: document.title,
          hostileShown: document.body.textContent.includes("<script>document.title='pwned'</script>"),
        };
    })()""")
    # every section laid out with a real size
    assert all(box is not None and box[0] > 300 and box[1] > 40 for _, box in found["sections"]), (
        found["sections"]
    )
    # 31 July days → 31 dots, drawn across the page width
    assert (found["dayPoints"], found["dayPointsAttr"]) == (31, "31")
    assert found["dayChart"][0] > 1000
    # weeks of July 2025 clipped to the month: Jul 1 (Tue), 7, 14, 21, 28 → 5 bars
    assert found["weekBars"] == 5
    assert found["regionBars"] == 5
    # 5 regions × 7 weekdays; orders heatmap 7 weekdays × 24 hours
    assert found["heatShape"] == ["5", "7"] and found["heatCells"] == 35
    assert found["orderCells"] == 7 * 24
    assert found["topRows"] == 10
    # the planted East spike on July 17 is listed
    assert ["East", "2025-07-17"] in found["spikeAlerts"]
    # the hostile customer name is text, not a script: nothing ran, nothing was added
    assert (
        found["scripts"] == 0
        and found["hostileShown"]
        and found["title"] == "Customer performance · July 2025"
    )


def test_full_page_screenshot_is_written(browser: Browser, dashboard_file: Path) -> None:
    browser.open(dashboard_file.as_uri())
    height = browser.evaluate("Math.ceil(document.documentElement.scrollHeight)")
    shot = browser.send(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": 1400, "height": height, "scale": 1},
        },
        timeout=60,
    )
    png = base64.b64decode(shot["data"])
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    SCREENSHOT.write_bytes(png)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    width, shot_height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, shot_height) == (1400, height)
