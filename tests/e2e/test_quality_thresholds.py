"""Quality thresholds (issue 4): `fail` stops the run before any destination is written;
`warn` lets it complete and the dashboard shows the warning."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.e2e.demo_configs import demo_config

pytestmark = [pytest.mark.e2e]

# The generated demo has ~2 % missing e-mails among customers, so customer completeness
# is about 0.99: a minimum of 0.999 is crossed on purpose.
STRICT = {"minimum": 0.999}


def test_fail_threshold_stops_before_delivery(tmp_path: Path, prefect_harness: None) -> None:
    from flows.main import customer_performance

    config = demo_config(
        tmp_path, "strict", 300, lambda raw: raw["quality"].update(completeness={**STRICT, "action": "fail"})
    )
    with pytest.raises(Exception) as failure:
        customer_performance(period="2025-07", config_path=str(config))
    message = str(failure.value)
    assert "completeness" in message and "0.999" in message  # names the rule and the figures
    out = tmp_path / "strict"
    assert not list(out.glob("*.csv")) and not (out / "dashboard_july2025.html").exists()
    assert not (out / "outbox").exists()
    analytics = tmp_path / "strict.db"
    if analytics.exists():
        with sqlite3.connect(analytics) as db:
            tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        assert not [t for t in tables if t.endswith("july2025")]


def test_warn_threshold_completes_and_dashboard_shows_it(tmp_path: Path, prefect_harness: None) -> None:
    from flows.main import customer_performance

    config = demo_config(
        tmp_path, "lenient", 300, lambda raw: raw["quality"].update(completeness={**STRICT, "action": "warn"})
    )
    summary = customer_performance(period="2025-07", config_path=str(config))
    assert summary["period"] == "2025-07"
    html = (tmp_path / "lenient" / "dashboard_july2025.html").read_text()
    assert "Completeness" in html or "completeness" in html
    assert "99.9" in html  # the threshold the figure fell below
