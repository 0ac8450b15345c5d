"""The analytics DB load: idempotent per period, atomic, typed, with retention (SPEC §8.1).

Runs against the real PostgreSQL (a fresh database per test) and against SQLite, through
the same code.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

import tasks.load as load
from tasks.period import Period

pytestmark = pytest.mark.integration

JULY, JUNE = Period.parse("2025-07"), Period.parse("2025-06")


def frames(period: Period, revenue: float) -> dict[str, pd.DataFrame]:
    performance = pd.DataFrame(
        {
            "period": [str(period)] * 2,
            "customer_id": ["C1", "C2"],
            "total_revenue": [revenue, 10.25],
            "transaction_count": pd.array([3, 0], dtype="Int64"),
            "registration_date": pd.to_datetime(["2024-01-01", None], utc=True),
            "engagement_score": [55.5, None],
        }
    )
    regional = pd.DataFrame({"period": [str(period)], "dimension": ["geography"], "revenue": [revenue + 10.25]})
    return {"customer_performance": performance, "regional_summary": regional}


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    if request.param == "sqlite":
        from tasks.config import SqlConnection
        from tasks.config_file import load_config
        from tasks.connections import engine_for

        config = load_config(Path(__file__).resolve().parents[2] / "config" / "demo.yaml")
        created = engine_for(SqlConnection(url=f"sqlite:///{tmp_path / 'analytics.db'}"), config)
    else:
        created = sa.create_engine(request.getfixturevalue("pg_url"))
    yield created
    created.dispose()


def _count(engine: sa.Engine, table: str) -> int:
    with engine.connect() as connection:
        return connection.execute(sa.text(f'SELECT count(*) FROM "{table}"')).scalar_one()


def test_rerun_replaces_the_period(engine: sa.Engine) -> None:
    load.load_period(engine, frames(JULY, 100.0), JULY)
    load.load_period(engine, frames(JULY, 200.0), JULY)
    assert _count(engine, "customer_performance_july2025") == 2  # replaced, not duplicated
    with engine.connect() as connection:
        revenue = connection.execute(
            sa.text("SELECT total_revenue FROM customer_performance_july2025 WHERE customer_id = 'C1'")
        ).scalar_one()
    assert float(revenue) == 200.0


def test_two_periods_are_queryable_together(engine: sa.Engine) -> None:
    load.load_period(engine, frames(JUNE, 50.0), JUNE)
    load.load_period(engine, frames(JULY, 100.0), JULY)
    with engine.connect() as connection:
        rows = connection.execute(
            sa.text("SELECT period, sum(total_revenue) FROM customer_performance GROUP BY period ORDER BY period")
        ).fetchall()
    assert [(p, float(r)) for p, r in rows] == [("2025-06", 60.25), ("2025-07", 110.25)]


def test_failed_load_leaves_the_previous_version(engine: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    load.load_period(engine, frames(JULY, 100.0), JULY)
    real_insert = load.bulk_insert
    calls = {"n": 0}

    def fail_on_second_table(connection, table, frame):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 2:  # the first table of the new version is already in
            raise RuntimeError("injected: connection lost mid-load")
        real_insert(connection, table, frame)

    monkeypatch.setattr(load, "bulk_insert", fail_on_second_table)
    with pytest.raises(RuntimeError, match="injected"):
        load.load_period(engine, frames(JULY, 999.0), JULY)
    with engine.connect() as connection:
        revenue = connection.execute(
            sa.text("SELECT total_revenue FROM customer_performance_july2025 WHERE customer_id = 'C1'")
        ).scalar_one()
    assert float(revenue) == 100.0
    assert not any(name.endswith("__loading") for name in sa.inspect(engine).get_table_names())


def test_retention_drops_old_periods(engine: sa.Engine) -> None:
    old = Period.parse("2023-05")
    load.load_period(engine, frames(old, 1.0), old, retention_months=24)
    result = load.load_period(engine, frames(JULY, 1.0), JULY, retention_months=24)
    # July 2025 keeps 24 months: 2023-08 .. 2025-07; May 2023 goes.
    assert "customer_performance_may2023" in result["dropped"]
    assert "customer_performance_may2023" not in sa.inspect(engine).get_table_names()


def test_postgres_columns_have_real_types(pg_url: str) -> None:
    engine = sa.create_engine(pg_url)
    load.load_period(engine, frames(JULY, 1.0), JULY)
    columns = {c["name"]: c["type"] for c in sa.inspect(engine).get_columns("customer_performance_july2025")}
    assert isinstance(columns["total_revenue"], sa.Numeric) and columns["total_revenue"].scale == 2
    assert isinstance(columns["registration_date"], sa.DateTime) and columns["registration_date"].timezone
    assert isinstance(columns["transaction_count"], sa.BigInteger)
    engine.dispose()
