"""The benchmark's data set-up: real, typed source tables at a scale S (not timed as pipeline work).

customers (S rows) go into PostgreSQL with COPY, transactions (10·S over 13 months) into
MariaDB with LOAD DATA LOCAL INFILE, interactions (3·S) into a Parquet file that the CRM
stand-in serves. Each benchmark makes uniquely named databases `cpp_bench_<tag>` and drops
them afterwards.

The columns are typed as a real source system would type them (timestamptz, DATETIME,
DECIMAL(12,2)); the generator's deliberately garbled order dates cannot be stored in a
DATETIME and become NULL, which the pipeline quarantines as `event_time_missing`.

    python -m bench.datasets --scale 100000 --tag abc123 --folder /tmp/cpp_bench_abc123
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import sqlalchemy as sa

logger = logging.getLogger(__name__)

PG_ADMIN_URL = os.environ.get("BENCH_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")
MYSQL_ADMIN_URL = os.environ.get("BENCH_MYSQL_URL", "mysql+mysqldb://root@127.0.0.1:3306/test")
PREFIX = "cpp_bench_"
SEED = 7

CUSTOMERS_DDL = """
CREATE TABLE customers (
    customer_id varchar(16) PRIMARY KEY, name text, email text, phone text,
    registration_date timestamptz, last_login timestamptz, status text, region text,
    segment text, created_at timestamptz, updated_at timestamptz, country text, state text
)"""
# A surrogate key keeps the extraction order (re-ingested duplicates come last) and gives
# InnoDB a clustered index; order_date is indexed for the period pushdown, after the load
# (a sorted index build instead of 10 M random inserts into a 128 MB buffer pool).
TRANSACTIONS_DDL = """
CREATE TABLE transactions (
    id bigint NOT NULL AUTO_INCREMENT PRIMARY KEY,
    transaction_id varchar(16) NOT NULL, customer_id varchar(16) NOT NULL,
    order_date datetime NULL, amount decimal(12,2), currency char(3),
    product_category varchar(32), quantity int, payment_method varchar(32),
    status varchar(16), discount_applied decimal(12,2), tax_amount decimal(12,2),
    created_at datetime
) ENGINE=InnoDB"""
TRANSACTIONS_INDEXES = "ALTER TABLE transactions ADD KEY transactions_order_date (order_date)"


@dataclass(frozen=True)
class BenchDatabases:
    """The uniquely named databases of one benchmark invocation (same name on both servers)."""

    name: str
    pg_admin_url: str = PG_ADMIN_URL
    mysql_admin_url: str = MYSQL_ADMIN_URL

    @classmethod
    def fresh(cls) -> BenchDatabases:
        return cls(PREFIX + uuid.uuid4().hex[:10])

    @property
    def pg_url(self) -> str:
        return self.pg_admin_url.rsplit("/", 1)[0] + f"/{self.name}"

    @property
    def mysql_url(self) -> str:
        return self.mysql_admin_url.rsplit("/", 1)[0] + f"/{self.name}"

    def create(self) -> None:
        admin = sa.create_engine(self.pg_admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{self.name}"'))
        admin.dispose()
        admin = sa.create_engine(self.mysql_admin_url)
        with admin.connect() as connection:
            connection.execute(sa.text(f"CREATE DATABASE `{self.name}`"))
        admin.dispose()

    def drop(self) -> None:
        admin = sa.create_engine(self.pg_admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        admin.dispose()
        admin = sa.create_engine(self.mysql_admin_url)
        with admin.connect() as connection:
            connection.execute(sa.text(f"DROP DATABASE IF EXISTS `{self.name}`"))
        admin.dispose()


def csv_bytes(frame: pd.DataFrame) -> bytes:
    """The frame as CSV with a header; nulls are empty unquoted fields (PostgreSQL's CSV NULL)."""
    sink = io.BytesIO()
    pacsv.write_csv(pa.Table.from_pandas(frame, preserve_index=False), sink)
    return sink.getvalue()


def load_customers(pg_url: str, customers: pd.DataFrame) -> None:
    """COPY the customers into PostgreSQL (timestamps are UTC wall-clock text)."""
    engine = sa.create_engine(pg_url)
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("SET timezone = 'UTC'")
        cursor.execute(CUSTOMERS_DDL)
        columns = ", ".join(customers.columns)
        cursor.copy_expert(
            f"COPY customers ({columns}) FROM STDIN WITH (FORMAT csv, HEADER true)",
            io.BytesIO(csv_bytes(customers)),
        )
        cursor.execute("ANALYZE customers")
        raw.commit()
    finally:
        raw.close()
        engine.dispose()


def _valid_order_dates(order_date: pd.Series) -> pd.Series:
    """Garbled dates ('2025-07-3x ...') cannot live in a DATETIME column: they become null."""
    parsed = pd.to_datetime(order_date, errors="coerce", format="%Y-%m-%d %H:%M:%S")
    return order_date.where(parsed.notna(), None)


def load_transactions(mysql_url: str, transactions: pd.DataFrame, folder: Path) -> None:
    """LOAD DATA LOCAL INFILE the transactions into MariaDB, in their generated order."""
    frame = transactions.assign(order_date=_valid_order_dates(transactions["order_date"]))
    path = folder / "transactions.csv"
    path.write_bytes(csv_bytes(frame))
    columns = list(frame.columns)
    targets = ", ".join("@order_date" if c == "order_date" else c for c in columns)
    engine = sa.create_engine(mysql_url, connect_args={"local_infile": 1})
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql(TRANSACTIONS_DDL)
            connection.exec_driver_sql(
                f"LOAD DATA LOCAL INFILE '{path}' INTO TABLE transactions "
                "FIELDS TERMINATED BY ',' OPTIONALLY ENCLOSED BY '\"' "
                "LINES TERMINATED BY '\\n' IGNORE 1 LINES "
                f"({targets}) SET order_date = NULLIF(@order_date, '')"
            )
            connection.exec_driver_sql(TRANSACTIONS_INDEXES)
            connection.exec_driver_sql("ANALYZE TABLE transactions")
    finally:
        engine.dispose()
        path.unlink(missing_ok=True)


def write_interactions(path: Path, interactions: pd.DataFrame) -> None:
    """The CRM's records, served by bench.crm_serve (a Parquet file keeps types and is fast)."""
    interactions.to_parquet(path, index=False)


def set_up(scale: int, databases: BenchDatabases, folder: Path, seed: int = SEED) -> dict[str, object]:
    """Generate the sources at `scale` and load them; return row counts and set-up seconds."""
    from demo.generate import generate_frames

    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    data = generate_frames(customers=scale, seed=seed)
    generated = time.perf_counter()
    databases.create()
    load_customers(databases.pg_url, data.customers)
    load_transactions(databases.mysql_url, data.transactions, folder)
    write_interactions(folder / "interactions.parquet", data.interactions)
    loaded = time.perf_counter()
    rows = {
        "customers": len(data.customers),
        "transactions": len(data.transactions),
        "interactions": len(data.interactions),
        "order_dates_nulled": int(
            (pd.to_datetime(data.transactions["order_date"], errors="coerce", format="%Y-%m-%d %H:%M:%S")
             .isna()).sum()
        ),
    }
    return {"rows": rows, "generate_s": generated - started, "load_s": loaded - generated}


def transaction_months(mysql_url: str) -> dict[str, int]:
    """Rows per month in the sales table (for the report's context)."""
    engine = sa.create_engine(mysql_url)
    with engine.connect() as connection:
        rows = connection.execute(
            sa.text("SELECT DATE_FORMAT(order_date, '%Y-%m'), count(*) FROM transactions GROUP BY 1")
        ).fetchall()
    engine.dispose()
    return {str(month): int(count) for month, count in rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate and load the benchmark's sources.")
    parser.add_argument("--scale", type=int, required=True)
    parser.add_argument("--name", required=True, help="database name (cpp_bench_...)")
    parser.add_argument("--folder", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--out", type=Path, required=True, help="JSON file for the set-up figures")
    args = parser.parse_args(argv)
    if not args.name.startswith(PREFIX):
        parser.error(f"--name must start with {PREFIX}")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    result = set_up(args.scale, BenchDatabases(args.name), args.folder, args.seed)
    args.out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    raise SystemExit(main())
