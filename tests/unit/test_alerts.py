"""Alerts: robust z-score anomalies, revenue drop edges, quality thresholds."""

from __future__ import annotations

import pandas as pd
import pytest

from tasks.alerts import (
    QUALITY,
    REVENUE_ANOMALY,
    REVENUE_DROP,
    detect_alerts,
    quality_alerts,
    revenue_anomalies,
    revenue_drop,
    robust_z_scores,
)
from tasks.config import DashboardDestination, QualityConfig, QualityThreshold
from tasks.settings import PERFORMANCE_TRENDS_COLUMNS, QUALITY_REPORT_COLUMNS

pytestmark = pytest.mark.unit

# Ten ordinary days around 100, then one day of 500.
# sorted: 97 98 99 100 100 100 101 102 103 500 → median 100
# |x − 100|: 0 2 2 1 1 0 3 3 0 400 → sorted 0 0 0 1 1 2 2 3 3 400 → MAD 1.5
# scale = 1.4826 × 1.5 = 2.2239; z(500) = 400 / 2.2239 = 179.87; z(103) = 1.35
SPIKY = [100, 102, 98, 101, 99, 100, 103, 97, 100, 500]


def day_rows(
    series: dict[str | None, list[float]], start: str = "2025-07-01", tz: str = "UTC"
) -> pd.DataFrame:
    """Day-grain trend rows: one per (region, day), the day starting at local midnight."""
    rows = []
    for region, values in series.items():
        for offset, revenue in enumerate(values):
            start_local = pd.Timestamp(start, tz=tz) + pd.Timedelta(days=offset)
            rows.append(
                {
                    "grain": "day",
                    "bucket_start": start_local.tz_convert("UTC"),
                    "region": region,
                    "revenue": revenue,
                }
            )
    return pd.DataFrame(rows).reindex(columns=list(PERFORMANCE_TRENDS_COLUMNS))


def report(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows).reindex(columns=list(QUALITY_REPORT_COLUMNS))


# --- anomalies ---------------------------------------------------------------------


def test_a_planted_spike_is_found_with_its_robust_z() -> None:
    alerts = revenue_anomalies(day_rows({"North": SPIKY}), z=3.5)
    assert [(a.kind, a.region, a.day) for a in alerts] == [(REVENUE_ANOMALY, "North", "2025-07-10")]
    assert alerts[0].value == pytest.approx(400 / (1.4826 * 1.5), abs=0.01)  # 179.87
    assert alerts[0].threshold == 3.5 and "spike" in alerts[0].message


def test_a_flat_region_has_mad_zero_and_no_alert_while_its_neighbour_spikes() -> None:
    trends = day_rows(
        {
            # every day the same: MAD 0 and mean deviation 0, nothing stands out
            "South": [250.0] * 10,
            # the one real spike, so the run did look at the data
            "North": SPIKY,
        }
    )
    assert robust_z_scores(pd.Series([250.0] * 10)) is None
    assert [(a.region, a.day) for a in revenue_anomalies(trends, z=3.5)] == [
        ("North", "2025-07-10")
    ]


def test_mad_zero_with_one_outlier_falls_back_to_mean_deviation() -> None:
    # nine days of 0 and one of 900: median 0, MAD 0 (more than half the days are 0);
    # mean |x − 0| = 90, scale 1.2533 × 90 = 112.8, z(900) = 7.98 > 3.5
    alerts = revenue_anomalies(day_rows({"West": [0.0] * 9 + [900.0]}), z=3.5)
    assert [(a.region, a.day) for a in alerts] == [("West", "2025-07-10")]
    assert alerts[0].value == pytest.approx(900 / (1.253314 * 90), abs=0.01)


def test_a_dip_is_reported_as_a_dip() -> None:
    # SPIKY with 0 instead of 500 on day 10: median 100, MAD 1.5, z = −100 / 2.2239 = −44.97
    alerts = revenue_anomalies(day_rows({"East": SPIKY[:9] + [0.0]}), z=3.5)
    assert [(a.day, a.value) for a in alerts] == [("2025-07-10", pytest.approx(-44.97, abs=0.01))]
    assert "dip" in alerts[0].message


def test_a_day_without_a_row_counts_as_zero_revenue() -> None:
    trends = day_rows(
        {
            "North": SPIKY[:9] + [101.0],  # ten ordinary days: defines the calendar, no alert
            "East": SPIKY[:9],  # nothing on day 10: that day is 0, a dip like the test above
        }
    )
    assert [(a.region, a.day) for a in revenue_anomalies(trends, z=3.5)] == [("East", "2025-07-10")]


def test_too_few_days_say_nothing() -> None:
    # six days with a huge jump: below the 7-day minimum, no verdict
    assert revenue_anomalies(day_rows({"North": [100, 100, 101, 99, 100, 5000]}), z=3.5) == []


def test_week_rows_and_overall_rows_do_not_double_report() -> None:
    trends = pd.concat(
        [
            day_rows({"North": SPIKY}),
            # the overall series: the same spike, which must not be reported again
            day_rows({None: SPIKY}),
            # a week row with a huge figure: not a day, ignored
            day_rows({"North": [1e9]}).assign(grain="week"),
        ],
        ignore_index=True,
    )
    assert [(a.region, a.day) for a in revenue_anomalies(trends, z=3.5)] == [
        ("North", "2025-07-10")
    ]


def test_overall_series_is_used_when_trends_have_no_regions() -> None:
    alerts = revenue_anomalies(day_rows({None: SPIKY}), z=3.5)
    assert [(a.region, a.day) for a in alerts] == [(None, "2025-07-10")]
    assert "all regions" in alerts[0].message


def test_days_are_named_in_the_pipeline_time_zone() -> None:
    # Berlin midnight of July 10 is 22:00 UTC on July 9; the alert names the local day
    trends = day_rows({"North": SPIKY}, tz="Europe/Berlin")
    assert trends["bucket_start"].iloc[9] == pd.Timestamp("2025-07-09 22:00", tz="UTC")
    assert [a.day for a in revenue_anomalies(trends, z=3.5, timezone="Europe/Berlin")] == [
        "2025-07-10"
    ]


def test_a_higher_threshold_silences_a_moderate_outlier() -> None:
    # day 10 = 110: z = 10 / 2.2239 = 4.50 (MAD still 1.5): flagged at 3.5, not at 5
    values = SPIKY[:9] + [110]
    assert len(revenue_anomalies(day_rows({"North": values}), z=3.5)) == 1
    assert revenue_anomalies(day_rows({"North": values}), z=5.0) == []


# --- revenue drop ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "previous", "drop_pct", "alerts"),
    [
        (80.0, 100.0, 20.0, 1),  # exactly the threshold: alert (inclusive)
        (80.01, 100.0, 20.0, 0),  # 19.99 % down: just short
        (1.36, 1.70, 20.0, 1),  # exactly 20 % down, computed as 19.999999999999993: still alert
        (120.0, 100.0, 20.0, 0),  # growth
        (100.0, 100.0, 0.0, 0),  # flat with threshold 0: no drop, no alert
        (99.99, 100.0, 0.0, 1),  # threshold 0: any drop alerts
        (50.0, None, 20.0, 0),  # no previous period: nothing to compare
        (50.0, 0.0, 20.0, 0),  # previous 0: a percentage is meaningless
    ],
)
def test_revenue_drop_threshold_edges(
    current: float, previous: float | None, drop_pct: float, alerts: int
) -> None:
    assert len(revenue_drop(current, previous, drop_pct)) == alerts


def test_revenue_drop_reports_change_and_severity() -> None:
    (warning,) = revenue_drop(70.0, 100.0, 20.0)  # −30 %: past 20, short of 2 × 20
    (critical,) = revenue_drop(55.0, 100.0, 20.0)  # −45 %: more than twice the threshold
    assert (warning.kind, warning.severity, warning.value, warning.threshold) == (
        REVENUE_DROP,
        "warning",
        -30.0,
        -20.0,
    )
    assert critical.severity == "critical"


# --- quality -----------------------------------------------------------------------


def summary(
    source: str, rule: str, evaluated: int | None, failed: int | None, figure: str = ""
) -> dict:
    """A summary row as tasks.quality_report writes it: counts, and the figure as text."""
    return {
        "source": source,
        "rule": rule,
        "evaluated": evaluated,
        "failed": failed,
        "sample_values": figure,
    }


def test_quality_summary_thresholds() -> None:
    rows = report(
        [
            # 6 of 100 required cells missing: completeness 0.94 < 0.95, action fail → critical
            summary("all", "completeness", 100, 6),
            # exactly the minimum, 0.95: fine
            summary("customers", "completeness", 100, 5),
            # 85 of 100 rows pass every rule: accuracy 0.85 < 0.90, action warn → warning
            summary("all", "accuracy", 100, 15),
            # 30 h old, above the 24 h maximum configured below → warning
            summary("all", "freshness_hours", None, None, "30.0"),
            # freshness unknown (no timestamps): no figure, no alert
            summary("customers", "freshness_hours", None, None, ""),
            # no threshold exists for quarantined rows: never an alert
            summary(
                "all", "quarantined", 100, 12, "rows_in=100; rows_used=88; rows_quarantined=12"
            ),
        ]
    )
    config = QualityConfig(freshness_hours=QualityThreshold(maximum=24, action="warn"))
    alerts = quality_alerts(rows, config)
    assert [(a.kind, a.severity, a.value, a.threshold) for a in alerts] == [
        (QUALITY, "critical", pytest.approx(0.94), 0.95),
        (QUALITY, "warning", pytest.approx(0.85), 0.90),
        (QUALITY, "warning", 30.0, 24),
    ]
    assert alerts[0].message == "Completeness of all sources is 94.0%, below the minimum of 95.0%"
    assert alerts[2].message == "Freshness hours of all sources is 30 h, above the maximum of 24 h"


def test_per_rule_failure_share_limits() -> None:
    rule = {"rule": "email_format", "column": "email", "evaluated": 200}
    rows = report(
        [
            # 15 of 200 = 7.5 %: over the 5 % limit
            {**rule, "source": "customers", "failed": 15, "failed_pct": 7.5},
            # 10 of 200 = 5 %: at the limit, fine
            {**rule, "source": "transactions", "failed": 10, "failed_pct": 5.0},
            # no limit configured for this rule
            {
                "source": "customers",
                "rule": "phone_format",
                "evaluated": 10,
                "failed": 9,
                "failed_pct": 90.0,
            },
        ]
    )
    config = QualityConfig(
        rule_max_failure_pct={"email_format": QualityThreshold(maximum=5.0, action="warn")}
    )
    alerts = quality_alerts(rows, config)
    assert [(a.severity, a.value) for a in alerts] == [("warning", 7.5)]
    assert "email_format" in alerts[0].message and "customers" in alerts[0].message


def test_detect_alerts_combines_and_orders_by_severity() -> None:
    alerts = detect_alerts(
        trends=day_rows({"North": SPIKY}),  # one anomaly (warning)
        # completeness 0.5: critical
        quality_report=report([summary("all", "completeness", 10, 5)]),
        current_revenue=70.0,
        previous_revenue=100.0,  # −30 %: a warning at the default 20 %
        dashboard=DashboardDestination(),
        quality=QualityConfig(),
    )
    assert [(a.severity, a.kind) for a in alerts] == [
        ("critical", QUALITY),
        ("warning", REVENUE_ANOMALY),
        ("warning", REVENUE_DROP),
    ]
