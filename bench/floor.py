"""The floor: the same data moved by the databases' own bulk paths, nothing done in Python.

- extract: the rows the pipeline reads, sent to the client and thrown away: PostgreSQL
  `COPY (SELECT <customer columns>) TO STDOUT` (psycopg2, 1 MiB reads), MariaDB through its
  own CLI (`mariadb --batch --quick --raw`: the period's and the previous month's
  transactions, and the counted orders the lifetime history is folded from), and the CRM's pages fetched
  without parsing the JSON. The three run concurrently, like the pipeline's extracts.
- revenue_sql: the per-customer revenue of the period computed by MariaDB
  (`SUM((amount - discount) * rate) GROUP BY customer_id`) and fetched by the CLI.
- load: PostgreSQL `COPY … FROM STDIN` of the pipeline's four analytics tables, from CSV
  prepared beforehand (untimed), into fresh tables of schema `floor`.

    python -m bench.floor --config pipeline.yaml --staging DIR --crm-url URL --token T --out floor.json
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import sqlalchemy as sa

from bench.datasets import csv_bytes
from bench.measure import MB, RssSampler, StageClock
from tasks.staging import SUFFIX, read_frame

COPY_READ_BYTES = 1 << 20
RATES = {"USD": "1", "EUR": "1.08", "GBP": "1.27", "CAD": "0.73", "AUD": "0.66"}


class CountingSink:
    """A file-like object that keeps only the number of lines written to it."""

    def __init__(self) -> None:
        self.lines = 0

    def write(self, data: bytes | str) -> int:
        self.lines += data.count(b"\n" if isinstance(data, bytes) else "\n")
        return len(data)


def _mysql_cli(url: sa.URL, sql: str) -> int:
    """Run a query through the `mariadb` CLI, streaming rows to nowhere; return the rows."""
    command = ["mariadb", "--batch", "--quick", "--raw", "--skip-column-names",
               f"--host={url.host}", f"--port={url.port or 3306}", f"--user={url.username}",
               url.database or "", "-e", sql]
    with subprocess.Popen(command, stdout=subprocess.PIPE) as process:
        assert process.stdout is not None
        lines = sum(chunk.count(b"\n") for chunk in iter(lambda: process.stdout.read(COPY_READ_BYTES), b""))
    if process.returncode:
        raise RuntimeError(f"mariadb CLI failed ({process.returncode}) on: {sql[:80]}")
    return lines


def copy_out(pg_url: str, sql: str) -> int:
    """COPY (query) TO STDOUT into a counting sink; return the rows received."""
    engine = sa.create_engine(pg_url)
    raw = engine.raw_connection()
    try:
        sink = CountingSink()
        raw.cursor().copy_expert(f"COPY ({sql}) TO STDOUT", sink, size=COPY_READ_BYTES)
        return sink.lines
    finally:
        raw.close()
        engine.dispose()


def fetch_pages(crm_url: str, token: str, path: str, page_size: int, start: str, end: str) -> int:
    """Every page of the period, bytes only (the first page's total_pages says how many)."""
    params = {"start_date": start, "end_date": end, "page_size": page_size}
    with httpx.Client(base_url=crm_url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as client:
        first = client.get(path, params={**params, "page": 1})
        first.raise_for_status()
        pages = int(first.json().get("total_pages") or 1)
        received = len(first.content)
        for page in range(2, pages + 1):
            response = client.get(path, params={**params, "page": page})
            response.raise_for_status()
            received += len(response.content)
    return received


def extract_queries(period_start: str, previous_start: str, period_end: str) -> dict[str, str]:
    window = (f"(order_date >= '{previous_start}' AND order_date < '{period_end}') OR order_date IS NULL")
    columns = ("transaction_id, customer_id, order_date, amount, currency, product_category, quantity, "
               "payment_method, status, discount_applied, tax_amount, created_at")
    return {
        "customers": ("SELECT customer_id, name, email, phone, registration_date, last_login, status, "
                      "region, segment, created_at, updated_at, country, state FROM customers"),
        "transactions": f"SELECT {columns} FROM transactions WHERE {window}",
        # The rows the history is folded from (what the pipeline moves). Aggregating in
        # SQL instead is slower here: the GROUP BY's temporary table spills (S = 100 k:
        # 3.8 s against 0.5 s for these rows).
        "history": ("SELECT transaction_id, customer_id, currency, order_date, amount, "
                    "ROUND(amount * 100) - ROUND(COALESCE(discount_applied, 0) * 100) FROM transactions "
                    f"WHERE status = 'completed' AND amount > 0 AND order_date < '{period_end}' "
                    "AND order_date >= '1677-09-22'"),
        "revenue": ("SELECT customer_id, SUM((amount - COALESCE(discount_applied, 0)) * CASE currency "
                    + " ".join(f"WHEN '{code}' THEN {rate}" for code, rate in RATES.items())
                    + " END), COUNT(*) FROM transactions WHERE status = 'completed' AND amount > 0 "
                    f"AND order_date >= '{period_start}' AND order_date < '{period_end}' "
                    "GROUP BY customer_id"),
    }


def load_tables(pg_url: str, tables: dict[str, tuple[pd.DataFrame, bytes]], schema: str) -> int:
    """CREATE the tables (text columns, like a staging schema) and COPY each CSV in; rows loaded."""
    engine = sa.create_engine(pg_url)
    raw = engine.raw_connection()
    rows = 0
    try:
        cursor = raw.cursor()
        cursor.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE; CREATE SCHEMA "{schema}"')
        for name, (frame, data) in tables.items():
            columns = ", ".join(f'"{c}" text' for c in frame.columns)
            cursor.execute(f'CREATE TABLE "{schema}"."{name}" ({columns})')
            cursor.copy_expert(f'COPY "{schema}"."{name}" FROM STDIN WITH (FORMAT csv, HEADER true)',
                               io.BytesIO(data), size=COPY_READ_BYTES)
            rows += len(frame)
        raw.commit()
    finally:
        raw.close()
        engine.dispose()
    return rows


def run(config_path: str, staging: Path, crm_url: str, token: str) -> dict[str, Any]:
    from tasks.config_file import load_and_check, resolve_period

    config = load_and_check(config_path)
    period = resolve_period(config, None)
    pg_url = config.sources["customers"].connection.url  # type: ignore[union-attr]
    mysql_url = sa.make_url(config.sources["transactions"].connection.url)  # type: ignore[union-attr]
    rest = config.sources["interactions"]
    queries = extract_queries(str(period.first_day), str(period.previous().first_day),
                              str(period.next().first_day))
    outputs = {name: read_frame(staging / f"{name}{SUFFIX}")
               for name in ("customer_performance", "regional_summary", "performance_trends", "quarantine")}
    prepared = {name: (frame, csv_bytes(frame)) for name, frame in outputs.items()}  # untimed
    sampler = RssSampler().start()
    clock = StageClock(sampler)
    with clock.stage("extract") as counter, ThreadPoolExecutor(max_workers=3) as pool:
        customers = pool.submit(copy_out, pg_url or "", queries["customers"])
        transactions = pool.submit(
            lambda: _mysql_cli(mysql_url, queries["transactions"]) + _mysql_cli(mysql_url, queries["history"]))
        pages = pool.submit(fetch_pages, crm_url, token, rest.path, rest.pagination.page_size,  # type: ignore[union-attr]
                            f"{period.first_day}T00:00:00Z", f"{period.next().first_day}T00:00:00Z")
        counter["rows"] = customers.result() + transactions.result()
        pages.result()
    with clock.stage("revenue_sql") as counter:
        counter["rows"] = _mysql_cli(mysql_url, queries["revenue"])
    with clock.stage("load", sum(len(frame) for frame, _ in prepared.values())):
        load_tables(pg_url or "", prepared, "floor")
    sampler.stop()
    return {"mode": "floor", "stages": [s.as_dict() for s in clock.stages],
            "peak_rss_mb": round(sampler.peak() / MB, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="One measured run of the floor.")
    parser.add_argument("--config", required=True)
    parser.add_argument("--staging", type=Path, required=True, help="a pipeline run's staging folder")
    parser.add_argument("--crm-url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    result = run(args.config, args.staging, args.crm_url, args.token)
    args.out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
