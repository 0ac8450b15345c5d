"""Alerts for the BI dashboard (SPEC §8.2): revenue anomalies, revenue drop, quality.

Three detectors, each a pure function over the stage outputs, and `detect_alerts` that
runs them all. The dashboard lists the alerts, the BI payload carries them, and the
delivery task emits each one as a Prefect event so an automation can act on it.

Anomalies use a robust z-score (median and MAD) rather than mean and standard deviation:
one huge day inflates the standard deviation enough to hide itself, while the median and
MAD barely move. The threshold default (3.5) is Iglewicz and Hoaglin's recommendation.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd

from tasks.config import DashboardDestination, QualityConfig
from tasks.quality_report import Breach, check_thresholds
from tasks.settings import SUMMARY_RULES

logger = logging.getLogger(__name__)

# Alert kinds.
REVENUE_ANOMALY = "revenue_anomaly"
REVENUE_DROP = "revenue_drop"
QUALITY = "quality"

# Severities, most severe first (the order alerts are listed in).
SEVERITIES = ("critical", "warning", "info")

# MAD × 1.4826 estimates the standard deviation of normally distributed data.
MAD_SCALE = 1.4826
# When more than half the days share one value the MAD is 0; the mean absolute deviation
# × 1.2533 (also a normal-consistent estimate) still measures how far the rest stray.
MEAN_AD_SCALE = 1.253314
# Fewer days than this say nothing reliable about what a normal day looks like.
MIN_DAYS_FOR_ANOMALIES = 7
# The report's name for "all sources together".
ALL_SOURCES = "all"
# Quality figures that are ratios (0.95 = 95 %), shown as percentages.
RATIO_RULES = ("completeness", "accuracy")


@dataclass
class Alert:
    """One thing a reader of the dashboard should look at, with the numbers behind it."""

    kind: str
    severity: str
    message: str
    region: str | None = None
    day: str | None = None
    value: float | None = None
    threshold: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --- revenue anomalies ----------------------------------------------------------------


def local_days(bucket_start: pd.Series, timezone: str) -> pd.Series:
    """ISO dates of bucket starts; a bucket starts at local midnight, so read it locally."""
    return pd.to_datetime(bucket_start, utc=True).dt.tz_convert(timezone).dt.strftime("%Y-%m-%d")


def _daily_revenue_by_region(trends: pd.DataFrame, timezone: str) -> dict[str | None, pd.Series]:
    """Daily revenue series per region, every day of the trends present (missing = 0).

    Regional rows are used when there are any; the overall series (region null) only when
    the trends carry no regional breakdown, so one spike is not reported twice.
    """
    daily = trends[(trends["grain"] == "day").fillna(False).to_numpy(dtype=bool)]
    if daily.empty:
        return {}
    days = local_days(daily["bucket_start"], timezone)
    frame = pd.DataFrame(
        {
            "day": days.to_numpy(),
            "region": daily["region"].astype("string").to_numpy(),
            "revenue": pd.to_numeric(daily["revenue"], errors="coerce").fillna(0.0).to_numpy(),
        }
    )
    all_days = sorted(frame["day"].unique())
    regional = frame[frame["region"].notna()]
    if regional.empty:
        overall = frame.groupby("day")["revenue"].sum().reindex(all_days, fill_value=0.0)
        return {None: overall.astype(float)}
    pivot = regional.pivot_table(
        index="day", columns="region", values="revenue", aggfunc="sum", fill_value=0.0
    ).reindex(all_days, fill_value=0.0)
    return {str(region): pivot[region].astype(float) for region in pivot.columns}


def robust_z_scores(values: pd.Series) -> pd.Series | None:
    """(x − median) / scale per value; None when every value is the same (nothing stands out).

    scale is 1.4826 × MAD, or 1.2533 × the mean absolute deviation when the MAD is 0,
    so a mostly constant series with one outlier still flags it without dividing by 0.
    """
    deviations = (values - values.median()).abs()
    scale = MAD_SCALE * float(deviations.median())
    if scale == 0.0:
        scale = MEAN_AD_SCALE * float(deviations.mean())
    if scale == 0.0 or math.isnan(scale):
        return None
    return (values - values.median()) / scale


def revenue_anomalies(
    trends: pd.DataFrame,
    z: float,
    *,
    timezone: str = "UTC",
    min_days: int = MIN_DAYS_FOR_ANOMALIES,
) -> list[Alert]:
    """Days whose revenue in a region lies more than `z` robust standard deviations off its median.

    `timezone` is the pipeline's: it names the day a bucket belongs to.
    """
    alerts: list[Alert] = []
    for region, series in _daily_revenue_by_region(trends, timezone).items():
        if len(series) < min_days:
            logger.info("region %s: %d days, too few for anomaly detection", region, len(series))
            continue
        scores = robust_z_scores(series)
        if scores is None:
            continue
        median = float(series.median())
        where = region if region is not None else "all regions"
        for day, score in scores[scores.abs() > z].items():
            revenue = float(series[day])
            direction = "spike" if score > 0 else "dip"
            alerts.append(
                Alert(
                    kind=REVENUE_ANOMALY,
                    severity="warning",
                    message=(
                        f"Revenue {direction} in {where} on {day}: {revenue:,.2f} against a "
                        f"median day of {median:,.2f} (robust z {score:+.1f}, limit ±{z:g})"
                    ),
                    region=region,
                    day=str(day),
                    value=round(float(score), 2),
                    threshold=z,
                )
            )
    return alerts


# --- revenue drop -------------------------------------------------------------------


def revenue_drop(current: float, previous: float | None, drop_pct: float) -> list[Alert]:
    """An alert when revenue fell by `drop_pct` percent or more against the previous period.

    No previous revenue (first period, or a previous period of 0) means no comparison.
    """
    if previous is None or not math.isfinite(previous) or previous <= 0:
        return []
    change_pct = (current - previous) / previous * 100.0
    fell_by = -change_pct
    # The tolerance keeps a drop of exactly the threshold from slipping by on float noise.
    if current >= previous or fell_by < drop_pct - 1e-9:
        return []
    return [
        Alert(
            kind=REVENUE_DROP,
            severity="critical" if fell_by >= 2 * drop_pct and drop_pct > 0 else "warning",
            message=(
                f"Revenue fell {fell_by:.1f}% against the previous period "
                f"({current:,.2f} vs {previous:,.2f}; alert at {drop_pct:g}%)"
            ),
            value=round(change_pct, 2),
            threshold=-drop_pct,
        )
    ]


# --- quality ------------------------------------------------------------------------


def _shown(rule: str, value: float) -> str:
    if rule in RATIO_RULES:
        return f"{value:.1%}"
    return f"{value:g} h" if rule == "freshness_hours" else f"{value:g}%"


def breach_alert(breach: Breach) -> Alert:
    """A quality threshold crossing as an alert: action fail is critical, warn a warning."""
    where = "all sources" if breach.source == ALL_SOURCES else breach.source
    name = (
        breach.rule.replace("_", " ")
        if breach.rule in SUMMARY_RULES
        else f"rule {breach.rule} (failed share)"
    )
    relation = "below the minimum" if breach.value < breach.threshold else "above the maximum"
    return Alert(
        kind=QUALITY,
        severity="critical" if breach.action == "fail" else "warning",
        message=(
            f"{name.capitalize()} of {where} is {_shown(breach.rule, breach.value)}, {relation} "
            f"of {_shown(breach.rule, breach.threshold)}"
        ),
        value=round(breach.value, 6),
        threshold=breach.threshold,
    )


def quality_alerts(quality_report: pd.DataFrame, quality_config: QualityConfig) -> list[Alert]:
    """Summary figures and per-rule failure shares beyond a configured threshold.

    The crossing itself is decided by `tasks.quality_report.check_thresholds`, the same
    check that fails the run, so the dashboard never disagrees with the run's verdict.
    """
    if quality_report is None or quality_report.empty:
        return []
    return [breach_alert(breach) for breach in check_thresholds(quality_report, quality_config)]


# --- all together -------------------------------------------------------------------


def sort_alerts(alerts: list[Alert]) -> list[Alert]:
    """Most severe first, then by kind, region and day, so the list reads the same every run."""
    rank = {severity: index for index, severity in enumerate(SEVERITIES)}
    return sorted(
        alerts,
        key=lambda a: (rank.get(a.severity, len(SEVERITIES)), a.kind, a.region or "", a.day or ""),
    )


def detect_alerts(
    *,
    trends: pd.DataFrame,
    quality_report: pd.DataFrame,
    current_revenue: float,
    previous_revenue: float | None,
    dashboard: DashboardDestination,
    quality: QualityConfig,
    timezone: str = "UTC",
) -> list[Alert]:
    """Every alert of a run: anomalies, revenue drop and quality thresholds, sorted.

    `trends` is performance_trends; `timezone` the pipeline's (it dates the anomalies).
    """
    alerts = (
        revenue_anomalies(trends, dashboard.anomaly_z, timezone=timezone)
        + revenue_drop(current_revenue, previous_revenue, dashboard.revenue_drop_alert_pct)
        + quality_alerts(quality_report, quality)
    )
    return sort_alerts(alerts)
