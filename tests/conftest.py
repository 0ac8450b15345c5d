"""Shared fixtures. Unit tests need nothing; integration tests need real services.

A test that needs PostgreSQL or MariaDB asks for the `pg_url` / `mysql_url` fixture: it
gets a fresh, uniquely named database that is dropped afterwards. Where the service is not
running, the test is skipped with one loud line saying how to start it, except under
CI=true, where an unreachable database fails the run: CI never skips silently.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

import pytest
import sqlalchemy as sa

PG_ADMIN_URL = os.environ.get("TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")
MYSQL_ADMIN_URL = os.environ.get("TEST_MYSQL_URL", "mysql+mysqldb://root@127.0.0.1:3306/test")
IN_CI = os.environ.get("CI", "").lower() == "true"

HOW_TO_START = {
    "PostgreSQL": "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
    "MariaDB": "start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd",
}


def _unavailable(service: str, url: str, error: Exception) -> None:
    message = (
        f"{service} is not reachable at {url.split('@')[-1]} ({type(error).__name__}); "
        f"start it with: {HOW_TO_START[service]}"
    )
    if IN_CI:
        pytest.fail(f"CI=true and {message}", pytrace=False)
    pytest.skip(f"SKIPPED LOUDLY: {message}")


def _probe(url: str) -> Exception | None:
    try:
        engine = sa.create_engine(url, connect_args={"connect_timeout": 3})
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
        engine.dispose()
        return None
    except Exception as exc:  # any failure to connect means "not available"
        return exc


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    error = _probe(PG_ADMIN_URL)
    if error:
        _unavailable("PostgreSQL", PG_ADMIN_URL, error)
    return PG_ADMIN_URL


@pytest.fixture(scope="session")
def mysql_admin_url() -> str:
    error = _probe(MYSQL_ADMIN_URL)
    if error:
        _unavailable("MariaDB", MYSQL_ADMIN_URL, error)
    return MYSQL_ADMIN_URL


@pytest.fixture
def pg_url(pg_admin_url: str) -> Iterator[str]:
    """A fresh PostgreSQL database for one test, dropped afterwards."""
    name = f"cpp_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(pg_admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = pg_admin_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def mysql_url(mysql_admin_url: str) -> Iterator[str]:
    """A fresh MariaDB database for one test, dropped afterwards."""
    name = f"cpp_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(mysql_admin_url)
    with admin.connect() as connection:
        connection.execute(sa.text(f"CREATE DATABASE `{name}`"))
    url = mysql_admin_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f"DROP DATABASE IF EXISTS `{name}`"))
        admin.dispose()


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """A throwaway Prefect API for tests that run flows through the engine."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield
