"""The push to the BI tool's HTTP API (SPEC §8.2 a): the JSON payload and a careful POST.

`build_payload` is pure: the period's revenue, engagement, regional figures, alerts and
quality summary as plain JSON (no NaN, no numpy types, no timestamps). `push_dashboard`
POSTs it with an `Idempotency-Key` that is the same for every attempt of one run, so a
retry after a lost response cannot create a second dashboard version. It retries what
may pass on its own (5xx, 408, 429 with its Retry-After, time-outs, dropped connections)
with exponential backoff and jitter, and never a request the server refused (other 4xx).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import numpy as np
import pandas as pd

from tasks import dashboard_data as data
from tasks.alerts import Alert
from tasks.settings import SUMMARY_RULES

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
DEFAULT_PATH = "/dashboards/customer-performance"
TOP_CUSTOMERS = 20
TOP_CUSTOMER_FIELDS = [
    "customer_id", "name", "region", "customer_segment", "total_revenue", "transaction_count",
    "avg_order_value", "engagement_score", "churn_probability",
]  # fmt: skip
SUMMARY_FIGURES = [
    "revenue", "revenue_share", "customers", "active_customers", "new_customers", "transactions",
    "avg_order_value", "avg_engagement", "avg_satisfaction", "retention_rate", "penetration",
]  # fmt: skip
# Failures that say "try again later"; any other status is an answer, not an accident.
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
RETRYABLE_ERRORS = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)
BODY_EXCERPT = 300


class BiPushError(RuntimeError):
    """The BI API did not accept the dashboard; the message names status, URL and reason.

    `transient` says whether a later retry may succeed (the Prefect task's retry condition
    reads it): True after retries ran out on 5xx/429/time-outs, False for a refused request.
    """

    def __init__(
        self, message: str, *, url: str, status_code: int | None, attempts: int, transient: bool
    ):
        super().__init__(message)
        self.url = url
        self.status_code = status_code
        self.attempts = attempts
        self.transient = transient


@dataclass(frozen=True)
class PushResult:
    status_code: int
    attempts: int
    url: str
    body: Any  # the response's JSON, or its text when it is not JSON


# --- payload -------------------------------------------------------------------------


def json_ready(value: Any) -> Any:
    """A value as plain JSON: numpy scalars unwrapped, NaN/NA/inf → None, times → ISO text."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, (pd.Timestamp, datetime)):
        return value.isoformat()
    return str(value)


def _records(frame: pd.DataFrame, columns: list[str]) -> list[dict[str, Any]]:
    present = [c for c in columns if c in frame.columns]
    return [json_ready(row) for row in frame[present].to_dict("records")]


def _quality(quality_report: pd.DataFrame) -> dict[str, Any]:
    is_summary = quality_report["rule"].isin(SUMMARY_RULES).fillna(False).to_numpy(dtype=bool)
    summary = [
        {
            "source": str(row["source"]),
            "rule": str(row["rule"]),
            "value": json_ready(data.quality_figure(row)),
        }
        for _, row in quality_report[is_summary].iterrows()
    ]
    rules = quality_report[~is_summary]
    failing = rules[pd.to_numeric(rules["failed"], errors="coerce").fillna(0).to_numpy() > 0]
    columns = ["source", "rule", "column", "severity", "evaluated", "failed", "failed_pct"]
    return {
        "summary": summary,
        "rules_checked": len(rules),
        "failed_rules": _records(failing, columns),
    }


def _regional(regional_summary: pd.DataFrame) -> dict[str, Any]:
    """Revenue per region, then every row of each dimension with its figures."""
    regional: dict[str, Any] = {
        "regions": _records(data.revenue_by_region(regional_summary), ["region", "revenue"])
    }
    for name, dimension, labels in (
        ("areas", "geography", ["region", "country", "state"]),
        ("segments", "customer_segment", ["customer_segment"]),
        ("categories", "product_category", ["product_category"]),
    ):
        rows = data.dimension_rows(regional_summary, dimension)
        regional[name] = _records(rows, [*labels, *SUMMARY_FIGURES])
    return regional


def build_payload(
    *,
    period: str,
    customer_performance: pd.DataFrame,
    regional_summary: pd.DataFrame,
    performance_trends: pd.DataFrame,
    quality_report: pd.DataFrame,
    insights: dict[str, Any],
    alerts: list[Alert],
    pipeline: str = "customer-performance",
    run_id: str | None = None,
    currency: str = "USD",
    timezone: str = "UTC",
) -> dict[str, Any]:
    """The dashboard as JSON: period, revenue, engagement, regional, alerts, quality, insights."""
    totals = data.kpi_totals(customer_performance)
    daily = data.revenue_series(performance_trends, "day", timezone).rename(columns={"day": "date"})
    weekly = data.revenue_series(performance_trends, "week", timezone).rename(
        columns={"day": "week_start"}
    )
    top = data.top_customers(customer_performance, TOP_CUSTOMERS)
    segments = data.segment_activity_matrix(customer_performance)
    payload = {
        "schema_version": SCHEMA_VERSION,
        "pipeline": pipeline,
        "period": period,
        "run_id": run_id,
        "currency": currency,
        "revenue": {
            "total": totals["revenue"],
            "previous_period": totals["previous_revenue"],
            "change_pct": totals["change_pct"],
            "transactions": totals["transactions"],
            "avg_order_value": totals["avg_order_value"],
            "daily": _records(daily, ["date", "revenue", "transactions"]),
            "weekly": _records(weekly, ["week_start", "revenue", "transactions"]),
            "top_customers": _records(top, TOP_CUSTOMER_FIELDS),
        },
        "engagement": {
            "customers": totals["customers"],
            "active_customers": totals["active_customers"],
            "avg_engagement_score": totals["avg_engagement"],
            "segment_activity": [
                {"customer_segment": segment, "activity_level": level, "customers": int(count)}
                for (segment, level), count in segments.stack().items()
            ],
            "engagement_revenue_correlation": insights.get("engagement_revenue_correlation"),
            "satisfaction_by_tickets": insights.get("satisfaction_by_tickets"),
        },
        "regional": _regional(regional_summary),
        "alerts": [alert.to_dict() for alert in alerts],
        "quality": _quality(quality_report),
        "insights": insights,
    }
    return json_ready(payload)


def idempotency_key_for(pipeline: str, period: str, run_id: str) -> str:
    """One key per (pipeline, period, run): a SHA-256 of the three, unambiguous and stable
    across processes (no Python hash()); a rerun of the same run reuses it."""
    material = json.dumps([pipeline, period, run_id], separators=(",", ":"))
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


# --- the POST ------------------------------------------------------------------------


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After as seconds: either delta-seconds or an HTTP date; None when absent or bad."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - (now or datetime.now(UTC))).total_seconds())


def backoff_seconds(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Exponential backoff with "equal jitter": half the step fixed, half random, so
    concurrent pushers spread out but none retries at once."""
    step = min(cap, base * 2 ** (attempt - 1))
    return step / 2 + rng.uniform(0, step / 2)


def _excerpt(response: httpx.Response) -> str:
    text = response.text.strip().replace("\n", " ")
    return text[:BODY_EXCERPT] + ("…" if len(text) > BODY_EXCERPT else "")


def _body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text


def push_dashboard(
    client: httpx.Client,
    payload: dict[str, Any],
    *,
    idempotency_key: str,
    path: str = DEFAULT_PATH,
    max_attempts: int = 5,
    sleep: Callable[[float], None] = time.sleep,
    backoff_base_seconds: float = 1.0,
    backoff_cap_seconds: float = 30.0,
    max_retry_after_seconds: float = 300.0,
    rng: random.Random | None = None,
) -> PushResult:
    """POST the payload; retry transient failures with the same Idempotency-Key.

    Raises BiPushError at once for a refused request (4xx other than 408/429, or a
    redirect), and after `max_attempts` for failures that never cleared.
    """
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be at least 1, not {max_attempts}")
    rng = rng or random.Random()
    # Serialised here, not by httpx: NaN in the payload is a bug to report, not to send.
    body = json.dumps(payload, allow_nan=False, separators=(",", ":")).encode("utf-8")
    headers = {"Content-Type": "application/json", "Idempotency-Key": idempotency_key}
    url = str(client.build_request("POST", path).url)  # as httpx sends it: base path + path
    for attempt in range(1, max_attempts + 1):
        delay: float | None = None
        try:
            response = client.post(path, content=body, headers=headers)
        except RETRYABLE_ERRORS as exc:
            reason = f"{type(exc).__name__}: {exc}"
            status = None
        else:
            if response.is_success:
                logger.info(
                    "BI push accepted: HTTP %d from %s after %d attempt(s)",
                    response.status_code,
                    url,
                    attempt,
                )
                return PushResult(response.status_code, attempt, url, _body(response))
            status = response.status_code
            reason = f"HTTP {status}: {_excerpt(response)}"
            if status not in RETRYABLE_STATUS:
                raise BiPushError(
                    f"BI API refused the dashboard: HTTP {status} from POST {url}: {_excerpt(response)}",
                    url=url,
                    status_code=status,
                    attempts=attempt,
                    transient=False,
                )
            delay = retry_after_seconds(response.headers.get("Retry-After"))
            if delay is not None and delay > max_retry_after_seconds:
                raise BiPushError(
                    f"BI API asked to retry POST {url} after {delay:.0f} s (HTTP {status}), longer than "
                    f"the {max_retry_after_seconds:.0f} s this push waits; try again later",
                    url=url,
                    status_code=status,
                    attempts=attempt,
                    transient=True,
                )
        if attempt == max_attempts:
            raise BiPushError(
                f"BI API push to {url} failed after {attempt} attempt(s); last: {reason}",
                url=url,
                status_code=status,
                attempts=attempt,
                transient=True,
            )
        wait = (
            delay
            if delay is not None
            else backoff_seconds(attempt, backoff_base_seconds, backoff_cap_seconds, rng)
        )
        logger.warning(
            "BI push attempt %d/%d to %s failed (%s); retrying in %.1f s",
            attempt,
            max_attempts,
            url,
            reason,
            wait,
        )
        sleep(wait)
    raise AssertionError("unreachable: the loop returns or raises")
