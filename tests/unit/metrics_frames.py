"""Builders of tiny, correctly typed frames for the metrics / aggregate / insights tests.

Each builder takes only the fields a test cares about; every other canonical field gets a
neutral default (stated below), and every column gets the dtype of settings.CANONICAL_DTYPES,
so the functions under test see what the validation stage hands them.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd

from tasks.config import MetricsConfig
from tasks.metrics import customer_metrics
from tasks.period import Period
from tasks.settings import CANONICAL_DTYPES, CUSTOMER_PERFORMANCE_COLUMNS

JULY = Period(2025, 7)
AS_OF = pd.Timestamp("2025-08-01T00:00:00Z")  # July's exclusive end
RATES = {"USD": Decimal("1"), "EUR": Decimal("1.08")}

CUSTOMER_DEFAULTS: dict[str, Any] = {
    "status": "active", "region": "EU", "country": "DE", "state": "BE", "segment": "unknown",
    "registration_date": "2020-01-01T00:00:00Z",  # long-standing: never "new"
    "last_login": None,  # never logged in: L = 0
    "created_at": "2020-01-01T00:00:00Z", "updated_at": "2020-01-01T00:00:00Z",
}
TRANSACTION_DEFAULTS: dict[str, Any] = {
    "order_date": "2025-07-10T12:00:00Z", "currency": "USD", "product_category": "books",
    "quantity": 1, "payment_method": "card", "status": "completed", "discount_applied": 0.0,
    "tax_amount": 0.0, "created_at": "2025-07-10T12:00:00Z",
}
INTERACTION_DEFAULTS: dict[str, Any] = {
    "interaction_type": "email", "interaction_date": "2025-07-10T12:00:00Z", "duration": 60.0,
    "satisfaction_score": None, "resolution_status": None, "agent_id": "agent-1",
    "department": "support",
}


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def _typed(source: str, rows: list[dict[str, Any]], defaults: dict[str, Any]) -> pd.DataFrame:
    dtypes = CANONICAL_DTYPES[source]
    records = [{**defaults, **row} for row in rows]
    frame = pd.DataFrame({column: [r.get(column) for r in records] for column in dtypes})
    for column, dtype in dtypes.items():
        if dtype == "datetime":
            frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601")
        else:
            frame[column] = frame[column].astype(dtype)
    return frame


def customers(*rows: dict[str, Any]) -> pd.DataFrame:
    """Customers; name and email derive from the id unless given."""
    filled = [{"name": f"Name {r['customer_id']}", "email": f"{r['customer_id']}@example.com", **r} for r in rows]
    return _typed("customers", filled, CUSTOMER_DEFAULTS)


def transactions(*rows: dict[str, Any]) -> pd.DataFrame:
    """Transactions; ids t1, t2, ... unless given."""
    filled = [{"transaction_id": f"t{i}", **r} for i, r in enumerate(rows, start=1)]
    return _typed("transactions", filled, TRANSACTION_DEFAULTS)


def interactions(*rows: dict[str, Any]) -> pd.DataFrame:
    filled = [{"interaction_id": f"i{i}", **r} for i, r in enumerate(rows, start=1)]
    return _typed("interactions", filled, INTERACTION_DEFAULTS)


def history(*rows: dict[str, Any]) -> pd.DataFrame:
    """One row per (customer_id, currency): first/last completed order before as_of, net amount."""
    frame = pd.DataFrame(
        {
            "customer_id": pd.array([r["customer_id"] for r in rows], dtype="string"),
            "currency": pd.array([r.get("currency", "USD") for r in rows], dtype="string"),
            "first_order_at": pd.to_datetime([r["first_order_at"] for r in rows], utc=True, format="ISO8601"),
            "last_order_at": pd.to_datetime(
                [r.get("last_order_at", r["first_order_at"]) for r in rows], utc=True, format="ISO8601"
            ),
            "net_amount": pd.array([r.get("net_amount", 0.0) for r in rows], dtype="float64"),
            "order_count": pd.array([r.get("order_count", 1) for r in rows], dtype="Int64"),
        }
    )
    return frame


def run_metrics(
    customer_rows: pd.DataFrame,
    transaction_rows: pd.DataFrame | None = None,
    *,
    prev: pd.DataFrame | None = None,
    interaction_rows: pd.DataFrame | None = None,
    history_rows: pd.DataFrame | None = None,
    as_of: pd.Timestamp = AS_OF,
    config: MetricsConfig | None = None,
    period: Period = JULY,
) -> pd.DataFrame:
    """customer_metrics with empty frames for whatever the test does not need."""
    return customer_metrics(
        customer_rows,
        transaction_rows if transaction_rows is not None else transactions(),
        prev if prev is not None else transactions(),
        interaction_rows if interaction_rows is not None else interactions(),
        history_rows if history_rows is not None else history(),
        period=period,
        as_of=as_of,
        rates=RATES,
        config=config or MetricsConfig(),
    )


PERFORMANCE_DEFAULTS: dict[str, Any] = {
    "period": "2025-07", "name": "n", "email": "x@example.com", "region": "EU", "country": "DE",
    "state": "BE", "status": "active", "registration_date": "2020-01-01T00:00:00Z",
    "transaction_count": 0, "total_revenue": 0.0, "avg_order_value": np.nan, "total_quantity": 0,
    "interaction_count": 0, "ticket_count": 0, "avg_satisfaction": np.nan, "open_tickets": 0,
    "days_since_last_login": None, "days_since_last_purchase": None, "engagement_score": 50.0,
    "activity_level": "low", "churn_probability": 0.5, "revenue_prev_period": 0.0,
    "revenue_growth_pct": np.nan, "clv": np.nan, "customer_segment": "regular",
}
_PERFORMANCE_DTYPES = {
    "registration_date": "datetime", "transaction_count": "int64", "total_quantity": "int64",
    "interaction_count": "int64", "ticket_count": "int64", "open_tickets": "int64",
    "days_since_last_login": "Int64", "days_since_last_purchase": "Int64",
    "total_revenue": "float64", "avg_order_value": "float64", "avg_satisfaction": "float64",
    "engagement_score": "float64", "churn_probability": "float64", "revenue_prev_period": "float64",
    "revenue_growth_pct": "float64", "clv": "float64",
}


def performance(*rows: dict[str, Any]) -> pd.DataFrame:
    """A hand-written customer_performance table (the output shape of customer_metrics)."""
    records = [{**PERFORMANCE_DEFAULTS, **row} for row in rows]
    frame = pd.DataFrame({c: [r.get(c) for r in records] for c in CUSTOMER_PERFORMANCE_COLUMNS})
    for column in CUSTOMER_PERFORMANCE_COLUMNS:
        dtype = _PERFORMANCE_DTYPES.get(column, "string")
        if dtype == "datetime":
            frame[column] = pd.to_datetime(frame[column], utc=True, format="ISO8601")
        else:
            frame[column] = frame[column].astype(dtype)
    return frame
