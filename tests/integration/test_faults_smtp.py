"""SMTP faults through the whole flow: the e-mail task fails visibly, the loads stay.

The config names an `EmailServerCredentials` block (saved under the prefect_harness) that
points at a server on 127.0.0.1 which refuses the connection, never answers, or refuses a
recipient. In each case the parent run fails with the e-mail's reason, the analytics DB
holds the period's tables exactly as the CSVs say, and nobody got a partial e-mail.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from flows.main import main
from tasks.smtp_delivery import EmailDeliveryError
from tests.fixtures.pipeline import (
    LABEL,
    assert_nothing_lost,
    clean_baseline,
    config_dict,
    csv_hashes,
    free_port,
    latest_task_run,
    run_flow,
    shared_demo,
    sqlite_table_rows,
    unique_block_name,
    write_config,
)
from tests.fixtures.smtp import save_smtp_block, silent_smtp_server, smtp_server

pytestmark = pytest.mark.integration

REFUSED = "gone@example.com"


def _config(
    tmp_path: Path, port: int, recipients: list[str] | None = None, timeout: float | None = None
) -> Path:
    block = unique_block_name("smtp-fault")
    save_smtp_block(block, port)
    config: dict[str, Any] = config_dict(tmp_path, shared_demo())
    config["destinations"]["email"]["smtp_block"] = block
    if timeout is not None:
        config["destinations"]["email"]["timeout_seconds"] = timeout
    if recipients is not None:
        config["destinations"]["email"]["recipients"] = recipients
    return write_config(tmp_path, config)


def _assert_loads_stayed(tmp_path: Path) -> None:
    """The e-mail failed alone: the load task completed, the e-mail task failed, and the
    analytics tables and CSVs are those of a clean run."""
    assert latest_task_run("load-analytics-db").state_type.value == "COMPLETED"
    assert latest_task_run("email-report").state_type.value == "FAILED"
    baseline = clean_baseline()
    assert assert_nothing_lost(tmp_path / "out") == baseline.accounting
    assert csv_hashes(tmp_path / "out") == baseline.hashes
    for kind in ("customer_performance", "regional_summary", "performance_trends"):
        table = f"{kind}_{LABEL}"
        assert sqlite_table_rows(tmp_path / "analytics.db", table) == sqlite_table_rows(
            baseline.analytics_db, table
        )
    # The demo's outbox is not a fallback for a failed send: no .eml pretends it went out.
    assert not list((tmp_path / "out").rglob("*.eml"))


@pytest.fixture(autouse=True)
def _baseline(prefect_harness: None) -> None:
    clean_baseline()


def test_a_working_smtp_server_gets_the_report_once(tmp_path: Path) -> None:
    # The control case: the same wiring with a healthy server delivers one message.
    with smtp_server() as (port, handler):
        run_flow(_config(tmp_path, port))
    assert [r.rcpt_tos for r in handler.received] == [["stakeholders@example.com"]]
    assert f"customer_performance_{LABEL}.csv".encode() in handler.received[0].content


def test_smtp_refusing_the_connection_fails_the_email_task_and_keeps_the_loads(
    tmp_path: Path,
) -> None:
    path = _config(tmp_path, free_port())  # nothing listens there
    with pytest.raises(EmailDeliveryError, match="refused the connection"):
        run_flow(path)
    _assert_loads_stayed(tmp_path)


def test_smtp_never_answering_times_out_and_keeps_the_loads(tmp_path: Path) -> None:
    # The server accepts the TCP connection and never greets; the send gives up after its
    # time-out (destinations.email.timeout_seconds, shortened here) instead of hanging.
    with silent_smtp_server() as port:
        with pytest.raises(EmailDeliveryError, match="did not answer within"):
            run_flow(_config(tmp_path, port, timeout=3))
    _assert_loads_stayed(tmp_path)


def test_a_refused_recipient_fails_visibly_with_the_reason_last_and_nobody_gets_a_copy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with smtp_server(refuse=frozenset({REFUSED})) as (port, handler):
        path = _config(tmp_path, port, recipients=["stakeholders@example.com", REFUSED])
        assert main(["--config", str(path)]) == 1
    last_line = capsys.readouterr().err.strip().splitlines()[-1]
    assert last_line.startswith("customer-performance FAILED: EmailDeliveryError:")
    assert REFUSED in last_line and "550" in last_line
    assert handler.received == []  # all or nothing: the accepted recipient got no copy either
    _assert_loads_stayed(tmp_path)
