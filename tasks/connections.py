"""Engines for the SQL sources and the analytics database, from config + Prefect blocks.

Credentials never appear in configuration: a connection is either a Prefect
`SqlAlchemyConnector` block (production; password stored as a secret) or a credential-free
URL (the embedded SQLite demo). Blocks are loaded late, inside the task that uses them.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from tasks.config import PipelineConfig, SqlConnection


def engine_for(connection: SqlConnection, config: PipelineConfig) -> sa.Engine:
    if connection.block is not None:
        from prefect_sqlalchemy import SqlAlchemyConnector

        connector = SqlAlchemyConnector.load(connection.block)
        return connector.get_engine()
    url = sa.make_url(connection.url or "")
    if url.drivername.startswith("sqlite") and url.database and url.database != ":memory:":
        # Relative SQLite paths are relative to the config's base folder, not the cwd.
        database = config.resolve_path(url.database)
        Path(database).parent.mkdir(parents=True, exist_ok=True)
        url = url.set(database=str(database))
    engine = sa.create_engine(url)
    if engine.dialect.name == "sqlite":
        _transactional_ddl(engine)
    return engine


def _transactional_ddl(engine: sa.Engine) -> None:
    """Make SQLite DDL part of the transaction (pysqlite only BEGINs before DML).

    Without this, the DROP + RENAME that swaps a period's table would autocommit, and a
    failed load could leave a period missing. Recipe from the SQLAlchemy SQLite docs.
    """

    @sa.event.listens_for(engine, "connect")
    def _no_implicit_begin(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        dbapi_connection.isolation_level = None

    @sa.event.listens_for(engine, "begin")
    def _explicit_begin(connection):  # type: ignore[no-untyped-def]
        connection.exec_driver_sql("BEGIN")


def describe(connection: SqlConnection) -> str:
    """A log-safe name for a connection (never the URL's credentials)."""
    if connection.block is not None:
        return f"block {connection.block}"
    url = sa.make_url(connection.url or "")
    return url.render_as_string(hide_password=True)
