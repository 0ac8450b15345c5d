"""Create or update every Prefect block a pipeline config names, from the environment.

    python blocks/setup.py --config config/production.yaml [--dry-run]

Idempotent (blocks are saved with overwrite=True). Never prints a secret: passwords and
tokens go straight into SecretStr fields; SQLAlchemy URLs are split into
ConnectionComponents so the password is stored as a secret, not inside a URL string.

Environment variables (SPEC §10): CUSTOMER_DB_URL, SALES_DB_URL, ANALYTICS_DB_URL,
CRM_API_URL, CRM_API_TOKEN, BI_API_URL, BI_API_TOKEN, SMTP_HOST, SMTP_PORT, SMTP_USERNAME,
SMTP_PASSWORD, SMTP_SECURITY (none/starttls/ssl).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sqlalchemy as sa
import yaml

# Which environment variable feeds the block behind each place a config can name one.
SQL_URL_ENV = {
    ("sources", "customers"): "CUSTOMER_DB_URL",
    ("sources", "transactions"): "SALES_DB_URL",
    ("destinations", "analytics"): "ANALYTICS_DB_URL",
}
SMTP_TYPES = {"none": "INSECURE", "starttls": "STARTTLS", "ssl": "SSL"}


class SetupError(ValueError):
    """A variable a block needs is missing or malformed; names which."""


def _require(env: Mapping[str, str], name: str) -> str:
    value = env.get(name, "").strip()
    if not value:
        raise SetupError(f"environment variable {name} is required for this config")
    return value


def sql_connector(url_text: str) -> Any:
    """A SqlAlchemyConnector with the password held as a secret component."""
    from prefect_sqlalchemy import ConnectionComponents, SqlAlchemyConnector

    url = sa.make_url(url_text)
    if url.drivername.startswith("sqlite"):
        return SqlAlchemyConnector(connection_info=url.render_as_string(hide_password=False))
    return SqlAlchemyConnector(
        connection_info=ConnectionComponents(
            driver=url.drivername,
            username=url.username,
            password=url.password,
            host=url.host,
            port=url.port,
            database=url.database,
            query=dict(url.query) or None,
        )
    )


def planned_blocks(raw_config: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """Block name -> block instance, for every block the config names."""
    blocks: dict[str, Any] = {}
    problems: list[str] = []

    def attempt(name: str, build: Any) -> None:
        try:
            blocks[name] = build()
        except SetupError as exc:
            problems.append(f"block {name!r}: {exc}")

    for (section, key), variable in SQL_URL_ENV.items():
        entry = (raw_config.get(section) or {}).get(key) or {}
        block = (entry.get("connection") or {}).get("block")
        if block:
            attempt(block, lambda v=variable: sql_connector(_require(env, v)))

    crm = ((raw_config.get("sources") or {}).get("interactions") or {})
    if crm.get("block"):
        from blocks.crm_api import CrmApiCredentials

        attempt(
            crm["block"],
            lambda: CrmApiCredentials(
                base_url=_require(env, "CRM_API_URL"), auth_kind="bearer", token=_require(env, "CRM_API_TOKEN")
            ),
        )
    destinations = raw_config.get("destinations") or {}
    bi_block = (destinations.get("dashboard") or {}).get("bi_api_block")
    if bi_block:
        from blocks.bi_api import BiApiCredentials

        attempt(bi_block, lambda: BiApiCredentials(base_url=_require(env, "BI_API_URL"), token=_require(env, "BI_API_TOKEN")))
    smtp_block = (destinations.get("email") or {}).get("smtp_block")
    if smtp_block:
        attempt(smtp_block, lambda: smtp_credentials(env))
    if problems:
        raise SetupError("; ".join(problems))
    return blocks


def smtp_credentials(env: Mapping[str, str]) -> Any:
    from prefect_email import EmailServerCredentials

    security = env.get("SMTP_SECURITY", "starttls").strip().lower()
    if security not in SMTP_TYPES:
        raise SetupError(f"SMTP_SECURITY must be one of none/starttls/ssl, not {security!r}")
    port_text = env.get("SMTP_PORT", "").strip()
    if port_text and not port_text.isdigit():
        raise SetupError(f"SMTP_PORT must be a number, not {port_text!r}")
    fields: dict[str, Any] = {
        "smtp_server": _require(env, "SMTP_HOST"),
        "smtp_type": SMTP_TYPES[security],
        "smtp_port": int(port_text) if port_text else None,
        "username": env.get("SMTP_USERNAME") or None,  # none: no login (e.g. a relay)
    }
    if env.get("SMTP_PASSWORD"):  # the block's password field takes no None
        fields["password"] = env["SMTP_PASSWORD"]
    return EmailServerCredentials(**fields)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="create/update the blocks a config names")
    parser.add_argument("--config", default="config/production.yaml")
    parser.add_argument("--dry-run", action="store_true", help="build the blocks, save nothing")
    args = parser.parse_args(argv)
    raw = yaml.safe_load(Path(args.config).read_text(encoding="utf-8")) or {}
    try:
        blocks = planned_blocks(raw, os.environ)
    except SetupError as exc:
        print(f"block setup failed: {exc}", file=sys.stderr)
        return 2
    for name, block in blocks.items():
        if not args.dry_run:
            block.save(name, overwrite=True)
        # The type name only: a block's repr could include non-secret but private details.
        print(f"{'would save' if args.dry_run else 'saved'} block {name!r} ({type(block).__name__})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
