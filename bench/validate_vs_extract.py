"""Does validating N transaction rows take less time than extracting them? (acceptance point)

SPEC's acceptance list asks that validation of 1,000,000 transaction rows take less than the
extraction of the same rows. This script answers it in one invocation:

1. set-up (not timed): the demo's transactions (`demo.generate.generate_frames`, with its
   defects) are COPY-loaded into a fresh PostgreSQL database `cpp_bench_<random>`, dropped
   again in a `finally`;
2. each repeat runs in a fresh subprocess, so no import, cache or warm frame carries over,
   and times: (a) `tasks.extract_sql.extract_table` of the whole table (the PostgreSQL COPY
   fast path), (b) `tasks.normalize.normalize` and (c) `tasks.quality.validate_source`.
   Importing Great Expectations and loading the suite happen before (c)'s timer and are
   reported on their own, because a pipeline run pays them once, not per row.

Run: `.venv/bin/python -m bench.validate_vs_extract --rows 1000000 --repeat 3`.
It prints each repeat and the medians, and appends the medians to bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import resource
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, fields
from decimal import Decimal
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

ADMIN_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
README = Path(__file__).with_name("README.md")
MACHINE = "2-core VM, PostgreSQL 15 on loopback"
ROWS_PER_CUSTOMER = 10  # generate_frames makes 10 transactions per customer
TABLE_DDL = """
CREATE TABLE transactions (
    transaction_id text, customer_id text, order_date timestamptz, amount numeric(12,2),
    currency text, product_category text, quantity int, payment_method text, status text,
    discount_applied numeric(12,2), tax_amount numeric(12,2), created_at timestamptz
)"""
RATES = {code: Decimal(rate) for code, rate in
         {"USD": "1", "EUR": "1.08", "GBP": "1.27", "CAD": "0.73", "AUD": "0.66"}.items()}


@dataclass
class RepeatResult:
    """One subprocess's figures (seconds; resident memory in MiB)."""

    extraction_s: float
    gx_import_s: float
    normalize_s: float
    validation_s: float
    extraction_warm_s: float
    validation_warm_s: float
    peak_rss_after_extraction_mib: float
    peak_rss_mib: float
    rows_extracted: int
    rows_used: int
    rows_quarantined: int

    @property
    def ratio(self) -> float:
        """Validation (normalize excluded) over extraction: below 1 meets the point."""
        return self.validation_s / self.extraction_s

    @property
    def warm_ratio(self) -> float:
        """The same, each step's second run in the process (memory already faulted in)."""
        return self.validation_warm_s / self.extraction_warm_s


# ---------------------------------------------------------------- set-up (parent process)

def demo_frames(rows: int, whole_history: bool = False) -> tuple[pd.DataFrame, pd.Series]:
    """`rows` demo transactions (defects included) and every demo customer id.

    By default every row falls in the validated month (July 2025), as a period's rows do
    after the extract's pushdown; `whole_history` spreads them over 13 months instead,
    so most rows fail the in-period rule and the quarantine path dominates.
    """
    from demo.generate import generate_frames

    customers = max(10, -(-rows // ROWS_PER_CUSTOMER))
    if whole_history:
        data = generate_frames(customers=customers, seed=5)
    else:
        data = generate_frames(customers=customers, seed=5, start="2025-07-01", months=1)
    return data.transactions.head(rows), data.customers["customer_id"]


def loadable(transactions: pd.DataFrame) -> pd.DataFrame:
    """The frame as a timestamptz column accepts it: garbled order dates become NULL."""
    out = transactions.copy()
    parsed = pd.to_datetime(out["order_date"], format="%Y-%m-%d %H:%M:%S", errors="coerce")
    out["order_date"] = parsed.dt.strftime("%Y-%m-%d %H:%M:%S+00")
    return out


def database_url(name: str) -> str:
    """The admin server's URL pointing at database `name`."""
    return sa.make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)


def create_database(name: str) -> None:
    """CREATE DATABASE outside a transaction (PostgreSQL refuses it inside one)."""
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    finally:
        admin.dispose()


def drop_database(name: str) -> None:
    """DROP DATABASE, closing any connection a crashed child may have left."""
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()


def load_table(url: str, frame: pd.DataFrame) -> None:
    """Create `transactions` and fill it with COPY (unquoted empty CSV fields are NULL)."""
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, header=False)
    buffer.seek(0)
    engine = sa.create_engine(url)
    try:
        raw = engine.raw_connection()
        try:
            with raw.cursor() as cursor:
                cursor.execute("SET TIME ZONE 'UTC'")
                cursor.execute(TABLE_DDL)
                cursor.copy_expert(
                    f"COPY transactions ({', '.join(frame.columns)}) FROM STDIN WITH (FORMAT csv)",
                    buffer,
                )
                cursor.execute("ANALYZE transactions")
            raw.commit()
        finally:
            raw.close()
    finally:
        engine.dispose()


# ---------------------------------------------------------------- one repeat (child process)

def peak_rss_mib() -> float:
    """This process's peak resident memory so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_once(url: str, ids_path: Path) -> RepeatResult:
    """Extract, normalize and validate the whole table once, timing each stage."""
    from tasks.config import SqlConnection, SqlSource
    from tasks.extract_sql import extract_table
    from tasks.normalize import normalize
    from tasks.period import Period
    from tasks.quality import ValidationOutcome, validate_source

    known_ids = pd.Series(ids_path.read_text().split(), dtype="string")
    source = SqlSource(connection=SqlConnection(url=url), table="transactions")

    def extract() -> tuple[pd.DataFrame, float]:
        engine = sa.create_engine(url)
        try:
            started = time.perf_counter()
            raw = extract_table(engine, "transactions", source, timezone="UTC", period_spec=None)
            return raw, time.perf_counter() - started
        finally:
            engine.dispose()

    raw, extraction_s = extract()
    rss_after_extraction = peak_rss_mib()

    started = time.perf_counter()
    import great_expectations  # noqa: F401  (timed apart: paid once per run, not per row)

    from tasks.gx_suites import load_suite

    load_suite("transactions")
    gx_import_s = time.perf_counter() - started

    started = time.perf_counter()
    stg = normalize("transactions", raw)
    normalize_s = time.perf_counter() - started

    def validate() -> tuple[ValidationOutcome, float]:
        started = time.perf_counter()
        outcome = validate_source(
            "transactions",
            stg,
            known_customer_ids=known_ids,
            period=Period.parse("2025-07"),
            rates=RATES,
            reporting_currency="USD",
            revenue_statuses=["completed"],
        )
        return outcome, time.perf_counter() - started

    outcome, validation_s = validate()
    # Second runs: the first run of each step in a fresh process also pays for faulting in
    # the memory it allocates (~2 s per GiB on this VM); a pipeline process pays it once.
    del raw
    _, extraction_warm_s = extract()
    outcome, validation_warm_s = validate()
    return RepeatResult(
        extraction_s=extraction_s,
        gx_import_s=gx_import_s,
        normalize_s=normalize_s,
        validation_s=validation_s,
        extraction_warm_s=extraction_warm_s,
        validation_warm_s=validation_warm_s,
        peak_rss_after_extraction_mib=rss_after_extraction,
        peak_rss_mib=peak_rss_mib(),
        rows_extracted=len(stg),
        rows_used=outcome.rows_used,
        rows_quarantined=outcome.rows_quarantined,
    )


def run_child(url: str, ids_path: Path) -> RepeatResult:
    """One repeat in a fresh interpreter; its result comes back as JSON on stdout."""
    completed = subprocess.run(
        [sys.executable, "-m", "bench.validate_vs_extract", "--child", url, str(ids_path)],
        check=True, capture_output=True, text=True,
    )
    return RepeatResult(**json.loads(completed.stdout.strip().splitlines()[-1]))


# ---------------------------------------------------------------- report

def medians(results: list[RepeatResult]) -> dict[str, float]:
    """Per-figure medians, plus the median of the per-repeat ratios."""
    out = {f.name: statistics.median(getattr(r, f.name) for r in results)
           for f in fields(RepeatResult)}
    out["ratio"] = statistics.median(r.ratio for r in results)
    out["warm_ratio"] = statistics.median(r.warm_ratio for r in results)
    return out


def markdown_table(rows: int, repeats: int, median: dict[str, float]) -> str:
    """The medians as a Markdown table."""
    lines = [
        f"| figure (median of {repeats}, {rows:,} rows) | value |",
        "| --- | --- |",
        f"| extraction (`extract_table`, COPY fast path) | {median['extraction_s']:.2f} s |",
        f"| normalize (`normalize`) | {median['normalize_s']:.2f} s |",
        f"| validation (`validate_source`, GX import excluded) | {median['validation_s']:.2f} s |",
        f"| GX import + suite load (once per run) | {median['gx_import_s']:.2f} s |",
        f"| validation / extraction | {median['ratio']:.2f} |",
        f"| second run in the same process: extraction | {median['extraction_warm_s']:.2f} s |",
        f"| second run in the same process: validation | {median['validation_warm_s']:.2f} s |",
        f"| second runs: validation / extraction | {median['warm_ratio']:.2f} |",
        f"| (normalize + validation) / extraction | "
        f"{(median['normalize_s'] + median['validation_s']) / median['extraction_s']:.2f} |",
        f"| peak RSS after extraction | {median['peak_rss_after_extraction_mib']:.0f} MiB |",
        f"| peak RSS (whole repeat) | {median['peak_rss_mib']:.0f} MiB |",
    ]
    return "\n".join(lines)


def append_to_readme(table: str, command: str) -> None:
    """Append the section at the end of bench/README.md (only when the file exists)."""
    if not README.exists():
        return
    section = (
        "\n\n## Validation vs extraction (1 M rows)\n\n"
        f"{dt.date.today().isoformat()}, {MACHINE}. `{command}`: each repeat in a fresh "
        "process; the demo's transactions (with its defects) loaded into PostgreSQL; "
        "validation is `validate_source` on the normalized frame.\n\n"
        f"{table}\n"
    )
    with README.open("a", encoding="utf-8") as handle:
        handle.write(section)


def main(argv: list[str] | None = None) -> None:
    """Parse arguments; run the child stage or the whole benchmark."""
    args = argv if argv is not None else sys.argv[1:]
    if args[:1] == ["--child"]:
        print(json.dumps(asdict(measure_once(args[1], Path(args[2])))))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-readme", action="store_true", help="do not append to README")
    parser.add_argument("--whole-history", action="store_true",
                        help="spread the rows over 13 months instead of the validated one")
    options = parser.parse_args(args)

    name = f"cpp_bench_{secrets.token_hex(4)}"
    started = time.perf_counter()
    transactions, customer_ids = demo_frames(options.rows, options.whole_history)
    print(f"generated {len(transactions):,} rows in {time.perf_counter() - started:.1f} s")
    create_database(name)
    try:
        url = database_url(name)
        started = time.perf_counter()
        load_table(url, loadable(transactions))
        print(f"loaded into {name} in {time.perf_counter() - started:.1f} s")
        del transactions
        with tempfile.TemporaryDirectory() as folder:
            ids_path = Path(folder) / "customer_ids.txt"
            ids_path.write_text("\n".join(customer_ids.astype(str)))
            results: list[RepeatResult] = []
            for number in range(1, options.repeat + 1):
                result = run_child(url, ids_path)
                results.append(result)
                print(f"repeat {number}: extraction {result.extraction_s:.2f} s, "
                      f"normalize {result.normalize_s:.2f} s, "
                      f"validation {result.validation_s:.2f} s, "
                      f"GX import {result.gx_import_s:.2f} s, "
                      f"ratio {result.ratio:.2f}; second runs: extraction "
                      f"{result.extraction_warm_s:.2f} s, validation {result.validation_warm_s:.2f} s, "
                      f"ratio {result.warm_ratio:.2f}; "
                      f"peak RSS {result.peak_rss_after_extraction_mib:.0f} MiB after "
                      f"extraction / {result.peak_rss_mib:.0f} MiB total "
                      f"({result.rows_extracted:,} rows, {result.rows_used:,} used, "
                      f"{result.rows_quarantined:,} quarantined)", flush=True)
    finally:
        drop_database(name)
    table = markdown_table(options.rows, options.repeat, medians(results))
    print()
    print(table)
    if not options.no_readme:
        command = (f"python -m bench.validate_vs_extract --rows {options.rows} "
                   f"--repeat {options.repeat}")
        append_to_readme(table, command)


if __name__ == "__main__":
    main()
