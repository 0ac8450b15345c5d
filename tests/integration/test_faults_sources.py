"""Source-database faults through the whole flow, on real PostgreSQL and MariaDB.

The small demo is loaded as production lays it out: customers in PostgreSQL (`pg_url`),
transactions in MariaDB (`mysql_url`), interactions from the CRM stand-in; the config
reaches them with credential-free `url:` connections (trust / passwordless loopback auth).

To kill an extraction *mid-read*, it reads a view that sleeps a few milliseconds per row
(PostgreSQL: ~3 s for 300 customers; MariaDB: ~3 s for 3,000 transactions), and another
connection terminates it as soon as it shows up in pg_stat_activity / the processlist.
A connection killed by the server is transient: the task retries and the run must end
with the outputs of a clean run against the same servers. A statement timeout that every
attempt hits, a missing table and a missing column must fail clearly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from flows.main import main
from tasks.extract_sql import SourceSchemaError
from tests.fixtures.pipeline import (
    LABEL,
    Baseline,
    assert_nothing_lost,
    clean_baseline,
    config_dict,
    csv_hashes,
    csv_path,
    latest_task_run,
    run_flow,
    shared_demo,
    write_config,
)
from tests.fixtures.sql_sources import BackendKiller, create_slow_view, load_sqlite_table

pytestmark = pytest.mark.integration

SLOW_CUSTOMERS = "customers_slow"  # PostgreSQL view: 10 ms per row
SLOW_TRANSACTIONS = "transactions_slow"  # MariaDB view: 1 ms per row
_sql_baseline: dict[str, Baseline] = {}


@pytest.fixture
def servers(pg_url: str, mysql_url: str, prefect_harness: None) -> dict[str, str]:
    """The small demo's customers in PostgreSQL and transactions in MariaDB, plus slow views."""
    data = shared_demo()
    load_sqlite_table(data / "customers.db", "customers", pg_url)
    load_sqlite_table(data / "sales.db", "transactions", mysql_url)
    create_slow_view(pg_url, "customers", SLOW_CUSTOMERS, 0.01)
    create_slow_view(mysql_url, "transactions", SLOW_TRANSACTIONS, 0.001)
    return {"pg": pg_url, "mysql": mysql_url}


def _config(
    workdir: Path,
    servers: dict[str, str],
    *,
    customers: str = "customers",
    transactions: str = "transactions",
) -> dict[str, Any]:
    config = config_dict(workdir, shared_demo())
    config["demo_data"] = None  # the sources are real servers; only crm.db is served locally
    config["sources"]["customers"].update(connection={"url": servers["pg"]}, table=customers)
    config["sources"]["transactions"].update(
        connection={"url": servers["mysql"]}, table=transactions
    )
    return config


def sql_baseline(workdir: Path, servers: dict[str, str]) -> Baseline:
    """A clean run against PostgreSQL + MariaDB (the plain tables), once per process."""
    if "clean" not in _sql_baseline:
        run_flow(write_config(workdir, _config(workdir, servers)))
        _sql_baseline["clean"] = Baseline(
            workdir, csv_hashes(workdir / "out"), assert_nothing_lost(workdir / "out")
        )
    return _sql_baseline["clean"]


def _assert_matches(workdir: Path, baseline: Baseline) -> None:
    assert assert_nothing_lost(workdir / "out") == baseline.accounting
    assert csv_hashes(workdir / "out") == baseline.hashes


# --- killed mid-read: survivable ------------------------------------------------------------


def test_postgres_terminating_the_customer_read_mid_way_is_retried_to_a_clean_result(
    tmp_path: Path, servers: dict[str, str]
) -> None:
    baseline = sql_baseline(tmp_path / "clean", servers)
    killer = BackendKiller(servers["pg"], SLOW_CUSTOMERS)
    killer.start()
    try:
        run_flow(write_config(tmp_path, _config(tmp_path, servers, customers=SLOW_CUSTOMERS)))
    finally:
        killer.stop()
    assert killer.killed is not None, "the extraction was never seen mid-read"
    _assert_matches(tmp_path, baseline)


def test_mariadb_killing_the_transaction_read_mid_way_is_retried_to_a_clean_result(
    tmp_path: Path, servers: dict[str, str]
) -> None:
    baseline = sql_baseline(tmp_path / "clean", servers)
    killer = BackendKiller(servers["mysql"], SLOW_TRANSACTIONS)
    killer.start()
    try:
        run_flow(write_config(tmp_path, _config(tmp_path, servers, transactions=SLOW_TRANSACTIONS)))
    finally:
        killer.stop()
    assert killer.killed is not None, "the extraction was never seen mid-read"
    _assert_matches(tmp_path, baseline)


# --- the same data on PostgreSQL + MariaDB as on SQLite ---------------------------------------


def test_postgres_and_mariadb_sources_give_the_same_outputs_as_the_sqlite_demo(
    tmp_path: Path, servers: dict[str, str]
) -> None:
    # Same rows, three dialects: the pushdown must not change which rows count. (It once
    # did: MariaDB's history aggregate counted orders whose order_date text does not parse,
    # '2024-08-1x ...', which SQLite skipped, so CLV differed for 3 of 300 customers.)
    sql = sql_baseline(tmp_path / "clean", servers)
    sqlite = clean_baseline()
    assert sql.accounting == sqlite.accounting
    differing = [kind for kind in sql.hashes if sql.hashes[kind] != sqlite.hashes[kind]]
    assert differing == []


# --- not survivable: fail clearly -------------------------------------------------------------


def test_a_statement_timeout_on_every_attempt_fails_the_run_after_bounded_retries(
    tmp_path: Path, servers: dict[str, str]
) -> None:
    # Every read of the slow view (~3 s) outlasts the server's 300 ms statement timeout.
    timed = dict(servers, pg=servers["pg"] + "?options=-c%20statement_timeout%3D300")
    config = _config(tmp_path, timed, customers=SLOW_CUSTOMERS)
    with pytest.raises(sa.exc.OperationalError, match="statement timeout"):
        run_flow(write_config(tmp_path, config))
    assert latest_task_run("extract-customers").run_count == 4  # 1 + 3 retries, then it stops
    assert not csv_path(tmp_path / "out", "customer_performance").exists()


def test_a_missing_table_is_a_configuration_error_on_the_last_line_not_a_crash(
    tmp_path: Path, servers: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path, _config(tmp_path, servers, customers="no_such_table"))
    assert main(["--config", str(path)]) == 1
    last_line = capsys.readouterr().err.strip().splitlines()[-1]
    assert last_line.startswith("customer-performance FAILED: SourceSchemaError:")
    assert "'no_such_table' does not exist" in last_line
    assert not csv_path(tmp_path / "out", "customer_performance", LABEL).exists()
    # --check finds the same problem before any data moves, and says it in one line.
    assert main(["--config", str(path), "--check"]) == 2
    checked = capsys.readouterr().out
    assert "sources.customers" in checked and "no_such_table" in checked
    assert "Traceback" not in checked


def test_a_missing_column_is_a_configuration_error_naming_column_and_source(
    tmp_path: Path, servers: dict[str, str]
) -> None:
    # The config maps transactions.amount onto a column MariaDB's table does not have.
    config = _config(tmp_path, servers)
    config["sources"]["transactions"]["column_map"] = {"amount": "amount_usd"}
    with pytest.raises(SourceSchemaError, match=r"column 'amount_usd' \(for field 'amount'\)"):
        run_flow(write_config(tmp_path, config))
    assert latest_task_run("extract-transactions").run_count == 1  # a config error: no retry
