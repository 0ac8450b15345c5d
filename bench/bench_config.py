"""The pipeline configuration the benchmark runs: the demo's, wired to the bench's real servers.

customers from PostgreSQL, transactions from MariaDB, interactions from the CRM stand-in
(through a `CrmApiCredentials` block, like production), the analytics DB in PostgreSQL
(schema `analytics`), outputs and staging under the bench's own folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from bench.datasets import BenchDatabases

CRM_BLOCK = "bench-crm"
PERIOD = "2025-07"
CRM_PAGE_SIZE = 5_000


def pipeline_config(databases: BenchDatabases, folder: Path, schema: str = "analytics") -> dict[str, Any]:
    return {
        "pipeline": "customer-performance",
        "period": PERIOD,
        "timezone": "UTC",
        "run_time": "2025-08-01T02:00:00Z",
        "reporting_currency": "USD",
        "currency_rates": {"USD": "1", "EUR": "1.08", "GBP": "1.27", "CAD": "0.73", "AUD": "0.66"},
        "sources": {
            "customers": {"kind": "sql", "connection": {"url": databases.pg_url}, "table": "customers"},
            "transactions": {
                "kind": "sql", "connection": {"url": databases.mysql_url}, "table": "transactions",
                "event_time": "order_date",
            },
            "interactions": {
                "kind": "rest", "block": CRM_BLOCK, "path": "/interactions", "records_path": "data",
                "pagination": {"style": "page", "page_param": "page", "size_param": "page_size",
                               "page_size": CRM_PAGE_SIZE},
                "date_params": {"start": "start_date", "end": "end_date"},
                "event_time": "interaction_date",
            },
        },
        "period_filter": {
            "conditions": [
                {"field": "created_at", "operator": "greater_equal", "value": "{period_start}", "logic": "AND"},
                {"field": "created_at", "operator": "less_than", "value": "{period_end}", "logic": "AND"},
            ],
            "caseSensitive": False,
            "nullHandling": "exclude",
        },
        "quality": {"completeness": {"minimum": 0.95, "action": "fail"},
                    "accuracy": {"minimum": 0.90, "action": "warn"}},
        "destinations": {
            "analytics": {"connection": {"url": databases.pg_url}, "schema": schema, "retention_months": 24},
            "dashboard": {"html": True, "revenue_drop_alert_pct": 20},
            "email": {"from": "reports@example.com", "recipients": ["stakeholders@example.com"],
                      "outbox": "outbox"},
        },
        "output_dir": str(folder / "output"),
        "staging_url": str(folder / "staging"),
    }


def write_config(databases: BenchDatabases, folder: Path, name: str = "pipeline.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(pipeline_config(databases, folder), sort_keys=False))
    return path
