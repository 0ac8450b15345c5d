"""Constants shared by every stage: canonical fields, dtypes, rule names, output names.

This module is the data contract between the stages. Each stage reads and writes frames
whose columns are named here; a user's own source is mapped onto these names by
configuration (`column_map`), never by code.

Frame shapes, stage by stage (all timestamps are tz-aware UTC, ids are strings):

raw_<source>        as extracted, canonical names, values as the source gave them
stg_<source>        typed by `tasks.normalize`: the dtypes in CANONICAL_DTYPES; a value
                    that was present but could not be parsed becomes null and its
                    original text is kept in `<column>__invalid` (string, else null)
<source>            validated and cleansed (`tasks.quality`): only rows fit to be counted,
                    documented defaults filled, error-severity values nulled
quarantine          rows removed by a critical rule: the row's original values as text in
                    `record` (JSON), plus source, row_id, rule, column, severity
"""

from __future__ import annotations

from typing import Final

SOURCES: Final = ("customers", "transactions", "interactions")

# Canonical fields per source (SPEC §3): seed fields first, then the extras we accept.
CUSTOMER_FIELDS: Final = (
    "customer_id", "name", "email", "phone", "registration_date", "last_login", "status",
    "region", "segment", "created_at", "updated_at", "country", "state",
)
TRANSACTION_FIELDS: Final = (
    "transaction_id", "customer_id", "order_date", "amount", "currency", "product_category",
    "quantity", "payment_method", "status", "discount_applied", "tax_amount", "created_at",
)
INTERACTION_FIELDS: Final = (
    "customer_id", "interaction_type", "interaction_date", "duration", "satisfaction_score",
    "resolution_status", "agent_id", "department", "interaction_id",
)
FIELDS: Final = {
    "customers": CUSTOMER_FIELDS,
    "transactions": TRANSACTION_FIELDS,
    "interactions": INTERACTION_FIELDS,
}

# Pandas dtypes of the typed (stg_) frames. "datetime" means datetime64[ns, UTC].
CANONICAL_DTYPES: Final = {
    "customers": {
        "customer_id": "string", "name": "string", "email": "string", "phone": "string",
        "registration_date": "datetime", "last_login": "datetime", "status": "string",
        "region": "string", "segment": "string", "created_at": "datetime",
        "updated_at": "datetime", "country": "string", "state": "string",
    },
    "transactions": {
        "transaction_id": "string", "customer_id": "string", "order_date": "datetime",
        "amount": "float64", "currency": "string", "product_category": "string",
        "quantity": "Int64", "payment_method": "string", "status": "string",
        "discount_applied": "float64", "tax_amount": "float64", "created_at": "datetime",
    },
    "interactions": {
        "customer_id": "string", "interaction_type": "string", "interaction_date": "datetime",
        "duration": "float64", "satisfaction_score": "float64", "resolution_status": "string",
        "agent_id": "string", "department": "string", "interaction_id": "string",
    },
}

# The column each source is filtered on for the period (SPEC §4); None = a dimension.
DEFAULT_EVENT_TIME: Final = {
    "customers": None,
    "transactions": "order_date",
    "interactions": "interaction_date",
}
# The field that identifies a row in the quarantine and the report.
ROW_ID_FIELD: Final = {
    "customers": "customer_id",
    "transactions": "transaction_id",
    "interactions": "interaction_id",
}

# Lower-cased value sets.
CUSTOMER_STATUSES: Final = ("active", "inactive", "suspended")
INTERACTION_TYPES: Final = ("call", "email", "chat", "ticket")
CLOSED_TICKET_STATUSES: Final = ("resolved", "closed")
UNKNOWN: Final = "unknown"

# Severity of a quality rule (SPEC §5).
CRITICAL: Final = "critical"  # row quarantined, never counted
ERROR: Final = "error"  # reported, bad value nulled, row stays
WARNING: Final = "warning"  # reported only

# Rule raised by the period filter for rows without a usable event time.
RULE_EVENT_TIME_MISSING: Final = "event_time_missing"

# Output columns, in their stable order (SPEC §6, §7, §5).
CUSTOMER_PERFORMANCE_COLUMNS: Final = (
    "period", "customer_id", "name", "email", "region", "country", "state", "status",
    "registration_date", "transaction_count", "total_revenue", "avg_order_value",
    "total_quantity", "interaction_count", "ticket_count", "avg_satisfaction", "open_tickets",
    "days_since_last_login", "days_since_last_purchase", "engagement_score", "activity_level",
    "churn_probability", "revenue_prev_period", "revenue_growth_pct", "clv", "customer_segment",
)
REGIONAL_SUMMARY_COLUMNS: Final = (
    "period", "dimension", "region", "country", "state", "customer_segment", "product_category",
    "revenue", "revenue_share", "customers", "active_customers", "new_customers",
    "transactions", "avg_order_value", "avg_engagement", "avg_satisfaction", "retention_rate",
    "penetration",
)
PERFORMANCE_TRENDS_COLUMNS: Final = (
    "period", "grain", "bucket_start", "region", "revenue", "transactions", "active_customers",
    "new_customers", "interactions", "avg_satisfaction",
)
QUALITY_REPORT_COLUMNS: Final = (
    "source", "rule", "column", "severity", "success", "evaluated", "failed", "failed_pct",
    "sample_values",
)
SUMMARY_RULES: Final = ("completeness", "accuracy", "freshness_hours", "duplicates", "quarantined")
# A quarantined row: where it came from, the rule(s) it broke, and its values as the
# source gave them (JSON); staged as `quarantine`, loaded as data_quality_issues_{period}.
QUARANTINE_COLUMNS: Final = (
    "source", "row_id", "_row", "rule", "rules", "column", "severity", "record",
)

# Fields a source must provide (after column mapping): without them no row can be used.
REQUIRED_SOURCE_FIELDS: Final = {
    "customers": ("customer_id",),
    "transactions": ("transaction_id", "customer_id", "order_date", "amount"),
    "interactions": ("customer_id", "interaction_date"),
}
