"""README "Point it at your systems", followed as written: blocks from the environment,
then `--check` on config/production.yaml against real PostgreSQL, MariaDB and a CRM API."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from demo.crm_server import CrmStandIn
from demo.generate import generate_frames

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = str(ROOT / "config" / "production.yaml")
DB_PASSWORD = "pw-SECRET-db-789"  # trust auth on loopback ignores it; the block must hide it
CRM_TOKEN = "tok-SECRET-crm-123"


def test_blocks_from_environment_then_check_passes(
    pg_url: str, mysql_url: str, prefect_harness: None, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from prefect_sqlalchemy import SqlAlchemyConnector

    from blocks.crm_api import CrmApiCredentials
    from blocks.setup import main as setup_blocks
    from tasks.preflight import preflight

    data = generate_frames(customers=50, seed=1)
    pg = sa.create_engine(pg_url)
    data.customers.to_sql("customers", pg, index=False)
    pg.dispose()
    my = sa.create_engine(mysql_url)
    data.transactions.to_sql("transactions", my, index=False)
    my.dispose()

    pg_with_password = pg_url.replace("postgres@", f"postgres:{DB_PASSWORD}@")
    with CrmStandIn(data.interactions, token=CRM_TOKEN, auth="bearer", pagination="page") as crm:
        for name, value in {
            "CUSTOMER_DB_URL": pg_with_password,
            "SALES_DB_URL": mysql_url,
            "ANALYTICS_DB_URL": pg_with_password,
            "CRM_API_URL": crm.base_url,
            "CRM_API_TOKEN": CRM_TOKEN,
            "BI_API_URL": "http://127.0.0.1:9/api",
            "BI_API_TOKEN": "tok-SECRET-bi-456",
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": "2525",
            "SMTP_SECURITY": "none",
            "REPORT_FROM": "reports@example.com",
            "REPORT_RECIPIENTS": "a@example.com,b@example.com",
        }.items():
            monkeypatch.setenv(name, value)

        assert setup_blocks(["--config", PRODUCTION]) == 0
        assert setup_blocks(["--config", PRODUCTION]) == 0  # idempotent: updates in place
        printed = capsys.readouterr()
        for secret in (DB_PASSWORD, CRM_TOKEN, "tok-SECRET-bi-456"):
            assert secret not in printed.out + printed.err

        connector = SqlAlchemyConnector.load("customer-db")
        components = connector.connection_info
        assert components.password.get_secret_value() == DB_PASSWORD  # type: ignore[union-attr]
        assert DB_PASSWORD not in repr(connector) and DB_PASSWORD not in str(components)
        assert CrmApiCredentials.load("crm-api").token.get_secret_value() == CRM_TOKEN  # type: ignore[union-attr]

        assert preflight(PRODUCTION, "2025-07") == []  # every system reached, no data moved


def test_setup_names_the_missing_variable(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from blocks.setup import main as setup_blocks

    for name in ("CUSTOMER_DB_URL", "SALES_DB_URL", "ANALYTICS_DB_URL", "CRM_API_URL", "CRM_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    assert setup_blocks(["--config", PRODUCTION, "--dry-run"]) == 2
    assert "CUSTOMER_DB_URL" in capsys.readouterr().err
