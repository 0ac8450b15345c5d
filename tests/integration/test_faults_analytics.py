"""The analytics database fails at load: the previous load stays intact, a rerun completes.

The analytics DB is a fresh PostgreSQL database (`pg_url`). Each test first loads July
2025 with a clean run, then stamps one row of `customer_performance_july2025` with a
marker name: a load that fails must leave that previous version (marker included) in
place, never a half-loaded or missing table; a load that completes replaces it (the marker
is gone and the table equals the clean run's CSV).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.fixtures.pipeline import (
    LABEL,
    assert_nothing_lost,
    clean_baseline,
    config_dict,
    csv_hashes,
    csv_path,
    free_port,
    read_csv_rows,
    run_flow,
    shared_demo,
    write_config,
)
from tests.fixtures.sql_sources import BackendKiller

pytestmark = pytest.mark.integration

TABLE = f"customer_performance_{LABEL}"
MARKER = "PREVIOUS LOAD"
MARKED_ID = "C000001"


def _analytics_url(config: dict[str, Any], url: str) -> dict[str, Any]:
    config["destinations"]["analytics"]["connection"] = {"url": url}
    return config


def _previous_load(tmp_path: Path, pg_url: str) -> tuple[Path, dict[str, Any]]:
    """A clean run into PostgreSQL, then the marker: 'the previous version of the period'."""
    config = _analytics_url(config_dict(tmp_path, shared_demo()), pg_url)
    path = write_config(tmp_path, config)
    run_flow(path, run_id="first-load")
    engine = sa.create_engine(pg_url)
    with engine.begin() as connection:
        connection.execute(
            sa.text(f'UPDATE "{TABLE}" SET name = :marker WHERE customer_id = :id'),
            {"marker": MARKER, "id": MARKED_ID},
        )
    engine.dispose()
    return path, config


def _state(pg_url: str) -> dict[str, Any]:
    """What a reader sees: row count and marker row of the period table, the union view, and
    any leftover `__loading` table."""
    engine = sa.create_engine(pg_url)
    try:
        with engine.connect() as connection:
            return {
                "rows": connection.execute(sa.text(f'SELECT count(*) FROM "{TABLE}"')).scalar_one(),
                "marked_name": connection.execute(
                    sa.text(f'SELECT name FROM "{TABLE}" WHERE customer_id = :id'),
                    {"id": MARKED_ID},
                ).scalar_one(),
                "view_rows": connection.execute(
                    sa.text('SELECT count(*) FROM "customer_performance"')
                ).scalar_one(),
                "loading_tables": [
                    name
                    for name in sa.inspect(connection).get_table_names()
                    if name.endswith("__loading")
                ],
            }
    finally:
        engine.dispose()


def _assert_completed(tmp_path: Path, pg_url: str) -> None:
    """The rerun's outputs equal a clean run, and the table holds exactly the CSV's rows."""
    assert assert_nothing_lost(tmp_path / "out") == clean_baseline().accounting
    assert csv_hashes(tmp_path / "out") == clean_baseline().hashes
    expected = {
        row["customer_id"]: row["name"]
        for row in read_csv_rows(csv_path(tmp_path / "out", "customer_performance"))
    }
    engine = sa.create_engine(pg_url)
    with engine.connect() as connection:
        loaded = dict(connection.execute(sa.text(f'SELECT customer_id, name FROM "{TABLE}"')).all())
    engine.dispose()
    assert loaded == expected  # every customer once, the marker replaced by the real name


@pytest.fixture
def baseline(prefect_harness: None) -> None:
    clean_baseline()


def test_analytics_unreachable_fails_the_run_keeps_the_previous_load_and_the_rerun_completes(
    tmp_path: Path, pg_url: str, baseline: None
) -> None:
    path, config = _previous_load(tmp_path, pg_url)
    before = _state(pg_url)
    assert before["marked_name"] == MARKER and before["loading_tables"] == []

    # The analytics server is down: nothing listens on the port. Connection refused is
    # transient, so the load task retries (3 times, with backoff), then the run fails.
    down = f"postgresql+psycopg2://postgres@127.0.0.1:{free_port()}/analytics"
    write_config(tmp_path, _analytics_url(config, down))
    with pytest.raises(sa.exc.OperationalError, match="Connection refused|could not connect"):
        run_flow(path, run_id="second-load")
    assert _state(pg_url) == before  # the previous load, untouched

    # The server is back: the rerun of the same run completes the period.
    write_config(tmp_path, _analytics_url(config, pg_url))
    run_flow(path, run_id="second-load")
    _assert_completed(tmp_path, pg_url)


def test_analytics_backend_killed_mid_load_keeps_the_previous_load_then_the_retry_completes(
    tmp_path: Path, pg_url: str, baseline: None
) -> None:
    path, _ = _previous_load(tmp_path, pg_url)
    before = _state(pg_url)

    # A reader holds the period table open, so the load, having created and filled its
    # `__loading` table inside its transaction, waits to swap it in: that is mid-load. The
    # killer terminates the loading backend there, records what a reader sees at that
    # moment, and only then lets the reader go.
    engine = sa.create_engine(pg_url)
    reader = engine.connect()
    transaction = reader.begin()
    reader.execute(sa.text(f'SELECT count(*) FROM "{TABLE}"'))  # holds ACCESS SHARE
    seen: dict[str, Any] = {}
    released = threading.Event()

    def after_kill() -> None:
        seen.update(_state(pg_url))
        transaction.commit()
        released.set()

    killer = BackendKiller(pg_url, f'DROP TABLE IF EXISTS "{TABLE}"', on_kill=after_kill)
    killer.start()
    try:
        run_flow(path, run_id="second-load")  # the load task retries after the kill
    finally:
        killer.stop()
        if not released.is_set():
            transaction.rollback()
        reader.close()
        engine.dispose()

    assert killer.killed is not None, "the load was never caught waiting to swap"
    assert "__loading" not in str(seen["loading_tables"])  # rolled back with the transaction
    assert seen == before  # at the kill, readers saw the previous load, whole
    _assert_completed(tmp_path, pg_url)
