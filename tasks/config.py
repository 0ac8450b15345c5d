"""The pipeline configuration's schema: typed pydantic models, each field validated.

Reading a YAML file into these models, and the checks that need the whole config at once,
are in tasks/config_file.py (`load_and_check`).
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tasks.filtering import FilterSpec
from tasks.period import Period
from tasks.settings import DEFAULT_EVENT_TIME, SOURCES

# Identifiers from configuration end up in SQL (table and column names): only plain names,
# optionally schema-qualified, are accepted, so nothing in a config can smuggle SQL in.
IDENTIFIER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?$")
BLOCK_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = PROJECT_ROOT / "config" / "demo.yaml"


class ConfigError(ValueError):
    """A configuration that cannot run; the message names every field at fault."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid configuration:\n  - " + "\n  - ".join(problems))


def _identifier(value: str | None) -> str | None:
    if value is not None and not IDENTIFIER_RE.match(value):
        raise ValueError(f"{value!r} is not a plain SQL identifier (letters, digits, _)")
    return value


Identifier = Annotated[str, Field(min_length=1)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SqlConnection(Strict):
    """Where a SQL source or destination lives: a Prefect block (production) or a local URL."""

    block: str | None = Field(None, description="SqlAlchemyConnector block name")
    url: str | None = Field(None, description="credential-free SQLAlchemy URL, e.g. sqlite")

    @model_validator(mode="after")
    def _one_of(self) -> SqlConnection:
        if (self.block is None) == (self.url is None):
            raise ValueError("give exactly one of 'block' or 'url'")
        if self.url and re.search(r"://[^/@]*:[^/@]*@", self.url):
            raise ValueError("the url carries a password: credentials belong in a Prefect block")
        if self.block and not BLOCK_NAME_RE.match(self.block):
            raise ValueError(f"block name {self.block!r} must be lower-case letters, digits, '-'")
        return self


class SqlSource(Strict):
    kind: Literal["sql"] = "sql"
    connection: SqlConnection
    table: str | None = None
    query: str | None = Field(None, description="a SELECT whose result is read as a table")
    column_map: dict[str, str] = Field(
        default_factory=dict, description="canonical field -> source column"
    )
    event_time: str | None = Field(None, description="canonical field the period filters on")
    chunk_rows: int = Field(100_000, ge=1_000)

    _table = field_validator("table")(_identifier)

    @field_validator("column_map")
    @classmethod
    def _columns(cls, value: dict[str, str]) -> dict[str, str]:
        for target in value.values():
            _identifier(target)
        return value

    @model_validator(mode="after")
    def _table_or_query(self) -> SqlSource:
        if (self.table is None) == (self.query is None):
            raise ValueError("give exactly one of 'table' or 'query'")
        if self.query is not None and not re.match(r"^\s*(select|with)\b", self.query, re.I):
            raise ValueError("'query' must be a single SELECT (or WITH ... SELECT) statement")
        if self.query is not None and ";" in self.query.strip().rstrip(";"):
            raise ValueError("'query' must be a single statement")
        return self


class Pagination(Strict):
    style: Literal["page", "offset", "cursor", "link", "none"] = "page"
    page_param: str = "page"
    size_param: str = "page_size"
    offset_param: str = "offset"
    limit_param: str = "limit"
    cursor_param: str = "cursor"
    cursor_path: str = "next_cursor"
    page_size: int = Field(500, ge=1, le=10_000)
    first_page: int = 1
    max_pages: int = Field(10_000, ge=1)


class RestSource(Strict):
    kind: Literal["rest"] = "rest"
    block: str | None = Field(None, description="CrmApiCredentials block name")
    demo: bool = Field(False, description="serve the bundled CRM stand-in on loopback")
    demo_db: str = Field("output/demo/crm.db", description="what the stand-in serves")
    path: str = "/interactions"
    records_path: str = "data"
    pagination: Pagination = Field(default_factory=Pagination)
    date_params: dict[str, str] = Field(
        default_factory=lambda: {"start": "start_date", "end": "end_date"},
        description="query parameter names for the half-open [start, end) date range",
    )
    params: dict[str, str] = Field(default_factory=dict)
    column_map: dict[str, str] = Field(default_factory=dict)
    event_time: str | None = None
    timeout_seconds: float = Field(30.0, gt=0)
    allow_insecure_http: bool = False

    @model_validator(mode="after")
    def _block_or_demo(self) -> RestSource:
        if (self.block is None) == (not self.demo):
            raise ValueError("give either 'block' (a real CRM) or 'demo: true' (the stand-in)")
        return self


Source = Annotated[SqlSource | RestSource, Field(discriminator="kind")]


class EngagementWeights(Strict):
    login: float = 0.3
    interactions: float = 0.3
    satisfaction: float = 0.2
    purchases: float = 0.2

    @model_validator(mode="after")
    def _sum_to_one(self) -> EngagementWeights:
        total = self.login + self.interactions + self.satisfaction + self.purchases
        if abs(total - 1.0) > 1e-9:
            raise ValueError(f"engagement weights must sum to 1, not {total:g}")
        return self


class ChurnCoefficients(Strict):
    intercept: float = -2.0
    days_since_purchase: float = 0.04
    days_cap: int = 365
    disengagement: float = 2.5
    open_tickets: float = 0.5
    inactive_floor: float = 0.9


class MetricsConfig(Strict):
    revenue_statuses: list[str] = Field(default_factory=lambda: ["completed"])
    engagement_weights: EngagementWeights = Field(default_factory=EngagementWeights)
    churn: ChurnCoefficients = Field(default_factory=ChurnCoefficients)
    expected_lifetime_months: float = Field(24, gt=0)
    vip_revenue_share: float = Field(0.8, gt=0, le=1)
    at_risk_churn: float = Field(0.6, ge=0, le=1)
    new_customer_days: int = Field(30, ge=0)


class QualityThreshold(Strict):
    minimum: float | None = None
    maximum: float | None = None
    action: Literal["warn", "fail"] = "fail"


class QualityConfig(Strict):
    completeness: QualityThreshold = Field(
        default_factory=lambda: QualityThreshold(minimum=0.95, action="fail")
    )
    accuracy: QualityThreshold = Field(
        default_factory=lambda: QualityThreshold(minimum=0.90, action="warn")
    )
    freshness_hours: QualityThreshold = Field(
        default_factory=lambda: QualityThreshold(maximum=None, action="warn")
    )
    rule_max_failure_pct: dict[str, QualityThreshold] = Field(default_factory=dict)
    sample_values: int = Field(5, ge=0, le=50)


class AnalyticsDestination(Strict):
    connection: SqlConnection
    schema_name: str | None = Field(None, alias="schema")
    retention_months: int = Field(24, ge=1)

    _schema = field_validator("schema_name")(_identifier)


class DashboardDestination(Strict):
    html: bool = True
    bi_api_block: str | None = None
    revenue_drop_alert_pct: float = Field(20.0, ge=0)
    anomaly_z: float = Field(3.5, gt=0)


class EmailDestination(Strict):
    recipients: list[str] = Field(default_factory=list)
    sender: str = Field("reports@example.com", alias="from")
    smtp_block: str | None = Field(None, description="EmailServerCredentials block; none = outbox")
    outbox: str = "outbox"
    zip_above_bytes: int = Field(10_000_000, ge=0)
    timeout_seconds: float = Field(30.0, gt=0, description="SMTP connect/response time-out")

    @field_validator("recipients", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        # REPORT_RECIPIENTS arrives as one comma-separated string.
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("recipients")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        bad = [a for a in value if not re.match(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", a)]
        if bad:
            raise ValueError(f"not e-mail addresses: {bad}")
        return value


class Destinations(Strict):
    analytics: AnalyticsDestination
    dashboard: DashboardDestination = Field(default_factory=DashboardDestination)
    email: EmailDestination = Field(default_factory=EmailDestination)


class DemoData(Strict):
    """The embedded demo: generate the SQLite sources and the CRM data when missing."""

    folder: str = "output/demo"
    customers: int = Field(10_000, ge=10)
    seed: int = 7


class PipelineConfig(Strict):
    """Everything a run needs besides credentials (those live in Prefect blocks)."""

    pipeline: str = Field("customer-performance", pattern=r"^[a-z0-9][a-z0-9-]*$")
    period: str | None = Field(None, description="YYYY-MM; none = the month of yesterday")
    timezone: str = "UTC"
    reporting_currency: str = "USD"
    currency_rates: dict[str, str] = Field(default_factory=lambda: {"USD": "1"})
    sources: dict[str, Source]
    period_filter: FilterSpec
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    quality: QualityConfig = Field(default_factory=QualityConfig)
    destinations: Destinations
    run_time: str | None = Field(
        None, description="pin the clock (ISO time), for reproducible replays such as the demo"
    )
    demo_data: DemoData | None = None
    output_dir: str = "output"
    staging_url: str = "output/staging"
    staging_retention_days: int = Field(
        7, ge=1, description="staged runs last written longer ago are removed when a run starts; "
        "a failed sub-flow can be rerun within this many days",
    )
    base_dir: str = Field(".", description="relative paths are resolved against this folder")
    fault: dict[str, Any] = Field(
        default_factory=dict, description="test-only fault switches, e.g. {fail_stage_once: x}"
    )

    @field_validator("period")
    @classmethod
    def _period(cls, value: str | None) -> str | None:
        if value is not None:
            Period.parse(value)  # raises PeriodError (a ValueError) naming the bad text
        return value

    @field_validator("run_time")
    @classmethod
    def _run_time(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                pd.Timestamp(value)
            except ValueError:
                raise ValueError(f"{value!r} is not an ISO date-time") from None
        return value

    @field_validator("currency_rates")
    @classmethod
    def _rates(cls, value: dict[str, str]) -> dict[str, str]:
        for code, rate in value.items():
            if not re.match(r"^[A-Z]{3}$", code):
                raise ValueError(f"currency code {code!r} must be 3 upper-case letters")
            try:
                if Decimal(str(rate)) <= 0:
                    raise ValueError(f"rate for {code} must be positive, not {rate}")
            except InvalidOperation:
                raise ValueError(f"rate for {code} is not a number: {rate!r}") from None
        return {code: str(rate) for code, rate in value.items()}

    @field_validator("sources")
    @classmethod
    def _three_sources(cls, value: dict[str, Any]) -> dict[str, Any]:
        missing = [s for s in SOURCES if s not in value]
        extra = [s for s in value if s not in SOURCES]
        if missing or extra:
            raise ValueError(f"sources must be exactly {list(SOURCES)}; missing {missing}, unknown {extra}")
        return value

    def resolve_path(self, path: str) -> Path:
        candidate = Path(path)
        return candidate if candidate.is_absolute() else (Path(self.base_dir) / candidate).resolve()

    def event_time(self, source: str) -> str | None:
        configured = self.sources[source].event_time
        return configured if configured is not None else DEFAULT_EVENT_TIME[source]

    def clock(self) -> pd.Timestamp:
        """The run time: the pinned one, else now (UTC)."""
        if self.run_time is None:
            return pd.Timestamp.now(tz="UTC")
        stamp = pd.Timestamp(self.run_time)
        return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")

    def rates(self) -> dict[str, Decimal]:
        return {code: Decimal(rate) for code, rate in self.currency_rates.items()}
