"""`--check`: every configuration and connectivity problem at once, before data moves."""

from __future__ import annotations

import sqlalchemy as sa

from tasks.config import ConfigError, PipelineConfig, RestSource, SqlSource
from tasks.config_file import check_config, load_config
from tasks.connections import describe, engine_for
from tasks.extract_sql import relation_for


def _sql_problems(config: PipelineConfig) -> list[str]:
    problems: list[str] = []
    for name, source in config.sources.items():
        if not isinstance(source, SqlSource):
            continue
        if config.demo_data is not None and source.connection.url and source.connection.url.startswith("sqlite"):
            continue  # the demo generates its SQLite sources on first run
        try:
            engine = engine_for(source.connection, config)
            with engine.connect() as connection:
                relation_for(connection, name, source)
            engine.dispose()
        except Exception as exc:
            problems.append(f"sources.{name}: cannot read from {describe(source.connection)}: {exc}")
    analytics = config.destinations.analytics.connection
    try:
        engine = engine_for(analytics, config)
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
        engine.dispose()
    except Exception as exc:
        problems.append(f"destinations.analytics: cannot connect to {describe(analytics)}: {exc}")
    return problems


def _block_problems(config: PipelineConfig) -> list[str]:
    problems: list[str] = []
    for name, source in config.sources.items():
        if isinstance(source, RestSource) and source.block is not None:
            try:
                from blocks.crm_api import CrmApiCredentials

                with CrmApiCredentials.load(source.block).get_client() as client:
                    client.get(source.path, params={source.pagination.page_param: source.pagination.first_page})
            except Exception as exc:
                problems.append(f"sources.{name}: CRM API block {source.block!r} not usable: {type(exc).__name__}: {exc}")
    email = config.destinations.email
    if email.smtp_block is not None:
        try:
            from prefect_email import EmailServerCredentials

            EmailServerCredentials.load(email.smtp_block)
        except Exception as exc:
            problems.append(f"destinations.email.smtp_block: {email.smtp_block!r} cannot be loaded: {exc}")
    bi_block = config.destinations.dashboard.bi_api_block
    if bi_block is not None:
        try:
            from blocks.bi_api import BiApiCredentials

            BiApiCredentials.load(bi_block)
        except Exception as exc:
            problems.append(f"destinations.dashboard.bi_api_block: {bi_block!r} cannot be loaded: {exc}")
    return problems


def preflight(config_path: str, period: str | None) -> list[str]:
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        return exc.problems
    problems = check_config(config, period)
    if problems:
        return problems  # no point reaching systems with a config that cannot run
    return _sql_problems(config) + _block_problems(config)
