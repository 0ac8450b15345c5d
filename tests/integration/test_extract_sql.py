"""SQL extraction gives the same typed rows from PostgreSQL, MariaDB and SQLite.

One generated data set (demo.generate, 300 customers, 3,000 transactions) is stored three
ways: PostgreSQL with timestamptz and numeric(12,2), MariaDB with DATETIME and
DECIMAL(12,2), SQLite with TEXT timestamps and REAL money as the demo stores them. After
the staging casts the three extracts must be identical frames: customers, the pushed-down
July 2025 transactions plus the June window, and the history aggregate. Row counts and
history sums are also recomputed from the generated frames with pandas, so three equally
wrong extracts cannot pass. Then the edge cases: MariaDB zero dates, text that CSV could
mangle (the PostgreSQL COPY path), missing tables and columns on every backend.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import sqlalchemy as sa

import tasks.sql_fastpath as sql_fastpath
from demo.generate import generate_frames
from tasks.config import SqlSource
from tasks.extract_history import extract_history
from tasks.extract_sql import SourceSchemaError, extract_table
from tasks.filtering import Condition, FilterSpec
from tasks.normalize import normalize, normalize_history
from tasks.retry import is_transient

pytestmark = pytest.mark.integration

BACKENDS = ("sqlite", "postgresql", "mysql")
TIMES = {
    "customers": ("registration_date", "last_login", "created_at", "updated_at"),
    "transactions": ("order_date", "created_at"),
}
MONEY = ("amount", "discount_applied", "tax_amount")
DDL_TYPES = {
    # column kind -> (PostgreSQL, MariaDB) type; SQLite gets what pandas writes (TEXT/REAL/INTEGER)
    "time": ("timestamptz", "DATETIME"),
    "money": ("numeric(12, 2)", "DECIMAL(12, 2)"),
    "int": ("integer", "INT"),
    "text": ("text", "VARCHAR(200)"),
}
# The seed's July 2025 filter (created_at -> order_date) and the previous month's window.
JULY = FilterSpec(
    conditions=[
        Condition(field="order_date", operator="greater_equal", value="2025-07-01"),
        Condition(field="order_date", operator="less_than", value="2025-08-01"),
    ]
)
JUNE = FilterSpec(
    conditions=[
        Condition(field="order_date", operator="greater_equal", value="2025-06-01"),
        Condition(field="order_date", operator="less_than", value="2025-07-01"),
    ]
)
AS_OF = pd.Timestamp("2025-08-01T02:00:00Z")


@dataclass
class Stored:
    """One backend holding the generated data."""

    dialect: str
    url: str
    engine: sa.Engine


@pytest.fixture(scope="module")
def generated() -> dict[str, pd.DataFrame]:
    """The generated sources, with the garbled order dates ('2025-07-3x ...') set to NULL:
    timestamptz and DATETIME cannot store them, and all three backends must hold the same."""
    data = generate_frames(customers=300, seed=3)
    transactions = data.transactions.copy()
    garbled = pd.to_datetime(transactions["order_date"], errors="coerce", format="ISO8601").isna()
    transactions.loc[garbled, "order_date"] = None
    return {"customers": data.customers.copy(), "transactions": transactions}


def _kind(table: str, column: str, frame: pd.DataFrame) -> str:
    if column in TIMES[table]:
        return "time"
    if column in MONEY:
        return "money"
    return "int" if pd.api.types.is_integer_dtype(frame[column]) else "text"


def store(dialect: str, url: str, frames: dict[str, pd.DataFrame]) -> Stored:
    """Create the tables with real column types and insert the frames."""
    engine = sa.create_engine(url)
    for table, frame in frames.items():
        rows = frame.copy()
        if dialect != "sqlite":
            column = 0 if dialect == "postgresql" else 1
            ddl = ", ".join(
                f"{c} {DDL_TYPES[_kind(table, c, frame)][column]}" for c in frame.columns
            )
            with engine.begin() as connection:
                connection.execute(sa.text(f"CREATE TABLE {table} ({ddl})"))
            for c in (c for c in TIMES[table] if c in rows):
                stamps = pd.to_datetime(rows[c], utc=True, format="ISO8601")
                # timestamptz takes the instant; DATETIME holds naive UTC.
                rows[c] = stamps if dialect == "postgresql" else stamps.dt.tz_localize(None)
        rows.to_sql(table, engine, if_exists="append", index=False, chunksize=1000)
    return Stored(dialect, url, engine)


@pytest.fixture(scope="module")
def stored(
    generated, pg_admin_url, mysql_admin_url, tmp_path_factory
) -> Iterator[dict[str, Stored]]:
    """The generated data in all three backends (module scope: loaded once)."""
    import uuid

    name = f"cpp_test_{uuid.uuid4().hex[:12]}"
    pg_admin = sa.create_engine(pg_admin_url, isolation_level="AUTOCOMMIT")
    my_admin = sa.create_engine(mysql_admin_url)
    with pg_admin.connect() as c:
        c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    with my_admin.connect() as c:
        c.execute(sa.text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    urls = {
        "sqlite": f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'sources.db'}",
        "postgresql": pg_admin_url.rsplit("/", 1)[0] + f"/{name}",
        "mysql": mysql_admin_url.rsplit("/", 1)[0] + f"/{name}",
    }
    backends = {dialect: store(dialect, url, generated) for dialect, url in urls.items()}
    try:
        yield backends
    finally:
        for backend in backends.values():
            backend.engine.dispose()
        with pg_admin.connect() as c:
            c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        with my_admin.connect() as c:
            c.execute(sa.text(f"DROP DATABASE IF EXISTS `{name}`"))
        pg_admin.dispose()
        my_admin.dispose()


def source(url: str, table: str, **extra: object) -> SqlSource:
    return SqlSource(connection={"url": url}, table=table, **extra)


def staged(name: str, raw: pd.DataFrame, key: list[str]) -> pd.DataFrame:
    """The staging casts' result in a stable row order (SQL returns rows in any order)."""
    typed = normalize(name, raw).drop(columns="_row")
    return typed.sort_values(key, kind="stable").reset_index(drop=True)


def july_and_june(backend: Stored, *, fast_path: bool = True) -> pd.DataFrame:
    return extract_table(
        backend.engine,
        "transactions",
        source(backend.url, "transactions"),
        timezone="UTC",
        period_spec=JULY,
        extra_windows=[JUNE],
        event_time="order_date",
        fast_path=fast_path,
    )


def test_customers_are_identical_from_all_three(stored, generated):
    frames = {
        d: staged(
            "customers",
            extract_table(b.engine, "customers", source(b.url, "customers")),
            ["customer_id"],
        )
        for d, b in stored.items()
    }
    assert len(frames["sqlite"]) == len(generated["customers"]) == 300
    for dialect in ("postgresql", "mysql"):
        pd.testing.assert_frame_equal(frames[dialect], frames["sqlite"], check_exact=True)
    # Spot check against the generated text: C000001's registration in UTC, as written.
    first = frames["postgresql"].iloc[0]
    assert first["registration_date"] == pd.Timestamp(
        generated["customers"]["registration_date"][0], tz="UTC"
    )


def test_pushed_down_july_and_june_are_identical_and_complete(stored, generated):
    frames = {
        d: staged("transactions", july_and_june(b), ["transaction_id", "order_date"])
        for d, b in stored.items()
    }
    for dialect in ("postgresql", "mysql"):
        pd.testing.assert_frame_equal(frames[dialect], frames["sqlite"], check_exact=True)
    # Expected: order dates in [2025-06-01, 2025-08-01) plus the NULLed (garbled) ones; the
    # generator's text is UTC 'YYYY-MM-DD HH:MM:SS', so text order is time order.
    dates = generated["transactions"]["order_date"]
    expected = dates.isna() | ((dates >= "2025-06-01") & (dates < "2025-08-01"))
    assert len(frames["sqlite"]) == int(expected.sum())
    assert frames["mysql"]["order_date"].isna().sum() == int(dates.isna().sum()) > 0
    # Money arrives exactly: the stored two-decimal amounts, not a float drifted by DECIMAL.
    want = generated["transactions"].loc[expected, "amount"].sort_values().to_numpy()
    assert np.array_equal(np.sort(frames["postgresql"]["amount"].to_numpy()), want)


def expected_history(transactions: pd.DataFrame) -> pd.DataFrame:
    """The history aggregate recomputed with pandas from the generated rows."""
    rows = transactions.drop_duplicates()
    rows = rows[
        rows["order_date"].notna()
        & (rows["order_date"] < "2025-08-01 02:00:00")
        & (rows["status"].str.lower() == "completed")
        & (rows["amount"] > 0)
    ]
    cents = np.round(rows["amount"] * 100) - np.round(rows["discount_applied"].fillna(0) * 100)
    grouped = rows.assign(cents=cents).groupby(["customer_id", "currency"])
    return pd.DataFrame(
        {
            "net_amount": grouped["cents"].sum() / 100,
            "order_count": grouped.size(),
            "first_order_at": pd.to_datetime(grouped["order_date"].min(), utc=True),
        }
    ).reset_index()


def test_history_aggregate_is_identical_and_exact(stored, generated):
    frames = {}
    for dialect, backend in stored.items():
        raw = extract_history(
            backend.engine,
            source(backend.url, "transactions"),
            timezone="UTC",
            as_of=AS_OF,
            revenue_statuses=["completed"],
        )
        history = normalize_history(raw)
        frames[dialect] = history.sort_values(["customer_id", "currency"]).reset_index(drop=True)
    for dialect in ("postgresql", "mysql"):
        pd.testing.assert_frame_equal(frames[dialect], frames["sqlite"], check_exact=True)
    want = expected_history(generated["transactions"])
    got = frames["mysql"]
    assert len(got) == len(want)
    assert np.array_equal(got["net_amount"].to_numpy(), want["net_amount"].to_numpy())
    assert np.array_equal(got["order_count"].to_numpy(), want["order_count"].to_numpy())
    assert (
        got["first_order_at"]
        .astype("datetime64[us, UTC]")
        .equals(want["first_order_at"].astype("datetime64[us, UTC]"))
    )


@pytest.mark.parametrize("dialect", ["postgresql", "mysql"])
def test_fast_path_returns_the_generic_paths_frame(stored, dialect, monkeypatch):
    backend = stored[dialect]
    config = source(backend.url, "transactions")

    def history(fast_path: bool) -> pd.DataFrame:
        frame = extract_history(
            backend.engine,
            config,
            timezone="UTC",
            as_of=AS_OF,
            revenue_statuses=["completed"],
            fast_path=fast_path,
        )
        return frame.sort_values(["customer_id", "currency"]).reset_index(drop=True)

    generic, generic_history = july_and_june(backend, fast_path=False), history(False)

    def no_generic_reader(*args, **kwargs):
        raise AssertionError("the fast path fell back to the generic reader")

    monkeypatch.setattr(sql_fastpath, "read_frames", no_generic_reader)
    statements: list[str] = []
    def recording_stream(raw, query, dialect, *args):
        statements.append(sql_fastpath.bound_statement(query, dialect)[0])
        return STREAM_MYSQL(raw, query, dialect, *args)

    monkeypatch.setattr(sql_fastpath, "stream_mysql", recording_stream)
    through_connectorx: list[str] = []
    connectorx_table = sql_fastpath.connectorx_table

    def recording_connectorx(connection, sql, *args):
        table = connectorx_table(connection, sql, *args)
        if table is not None:
            through_connectorx.append(sql)
        return table

    monkeypatch.setattr(sql_fastpath, "connectorx_table", recording_connectorx)
    fast, fast_history = july_and_june(backend, fast_path=True), history(True)
    if dialect == "mysql":
        # The period's rows stream through mysqlclient, the history through ConnectorX;
        # both get the server's values: no cast for a driver's converters, which were half
        # of MariaDB's work on the history's rows (bench/README.md).
        assert len(statements) == 1 and len(through_connectorx) == 1
        assert not any("CAST" in s.upper() for s in statements + through_connectorx)
    order = ["transaction_id", "order_date"]
    pd.testing.assert_frame_equal(
        fast.sort_values(order).reset_index(drop=True),
        generic.sort_values(order).reset_index(drop=True),
        check_exact=True,
    )
    pd.testing.assert_frame_equal(fast_history, generic_history, check_exact=True)
    assert str(fast["order_date"].dtype) == "datetime64[us, UTC]"
    assert fast["amount"].dtype == "float64"  # DECIMAL as double: no Decimal objects
    assert fast_history["net_amount"].dtype == "float64"


def test_postgres_copy_keeps_text_that_csv_could_mangle(pg_url, monkeypatch):
    engine = sa.create_engine(pg_url)
    with engine.begin() as c:
        c.execute(
            sa.text(
                "CREATE TABLE customers (customer_id integer, name text, email text, "
                "last_login timestamp, status boolean)"
            )
        )
        c.execute(
            sa.text(
                "INSERT INTO customers VALUES "
                "(1, 'O\"Brien, \"Jr\"', 'a@x.io', '2025-07-01 10:00:00', true),"  # quotes and a comma
                "(2, E'two\\nlines', '', '2025-07-01 23:59:59.5', false),"  # newline; empty text
                "(3, NULL, NULL, NULL, NULL),"  # NULL must stay null, not become ''
                "(4, 'Zoë 北京', 'z@x.io', '2025-12-31 00:00:00', true)"  # non-ASCII
            )
        )
    config = source(pg_url, "customers")
    generic = extract_table(engine, "customers", config, fast_path=False).sort_values("customer_id")
    monkeypatch.setattr(
        sql_fastpath, "read_frames", lambda *a, **k: pytest.fail("generic reader used")
    )
    fast = (
        extract_table(engine, "customers", config).sort_values("customer_id").reset_index(drop=True)
    )
    engine.dispose()
    pd.testing.assert_frame_equal(fast, generic.reset_index(drop=True), check_exact=True)
    assert fast["name"].tolist()[:2] == ['O"Brien, "Jr"', "two\nlines"]
    assert fast["email"].iloc[1] == "" and pd.isna(fast["email"].iloc[2])
    assert fast["name"].iloc[3] == "Zoë 北京"
    # A plain timestamp holds UTC by contract; boolean is read as its text.
    assert fast["last_login"].iloc[1] == pd.Timestamp("2025-07-01 23:59:59.5", tz="UTC")
    assert fast["status"].tolist()[:2] == ["true", "false"]


def test_mariadb_zero_dates_reach_staging_as_text(mysql_url):
    engine = sa.create_engine(mysql_url)
    with engine.begin() as c:
        c.execute(sa.text("SET SESSION sql_mode = ''"))  # lets '0000-00-00' in
        c.execute(
            sa.text(
                "CREATE TABLE transactions (transaction_id VARCHAR(10), customer_id "
                "VARCHAR(10), order_date DATETIME, amount DECIMAL(12,2), status VARCHAR(20))"
            )
        )
        c.execute(
            sa.text(
                "INSERT INTO transactions VALUES "
                "('T1', 'C1', '2025-07-10 12:00:00', 10.10, 'completed'),"  # July: in the period
                "('T2', 'C1', '0000-00-00 00:00:00', 20.20, 'completed'),"  # zero date: no period
                "('T3', 'C1', NULL, 30.30, 'completed'),"  # null: no period
                "('T4', 'C1', '2025-08-15 09:00:00', 40.40, 'completed'),"  # August: outside
                "('T5', 'C1', '2025-05-02 08:00:00', 50.50, 'completed')"  # May: history only
            )
        )
    config = source(mysql_url, "transactions")
    raw = extract_table(engine, "transactions", config, period_spec=JULY, event_time="order_date")
    typed = staged("transactions", raw, ["transaction_id"])
    # T1 in the period; T2 and T3 fetched so the filter stage reports them; T4, T5 not read.
    assert typed["transaction_id"].tolist() == ["T1", "T2", "T3"]
    assert typed["order_date"].isna().tolist() == [False, True, True]
    assert typed["order_date__invalid"].tolist()[1] == "0000-00-00 00:00:00"
    assert pd.isna(typed["order_date__invalid"].iloc[2])  # a NULL is missing, not invalid
    assert typed["amount"].tolist() == [10.10, 20.20, 30.30]
    # History before Aug 1: T1 and T5 (T2's zero date and T3's null are no instant):
    # net 10.10 + 50.50 = 60.60, first order May 2, last July 10.
    history = normalize_history(
        extract_history(engine, config, timezone="UTC", as_of=AS_OF, revenue_statuses=["completed"])
    )
    engine.dispose()
    assert history[["customer_id", "net_amount", "order_count"]].values.tolist() == [
        ["C1", 60.60, 2]
    ]
    assert history["first_order_at"].iloc[0] == pd.Timestamp("2025-05-02 08:00:00", tz="UTC")
    assert history["last_order_at"].iloc[0] == pd.Timestamp("2025-07-10 12:00:00", tz="UTC")


def _indexed_sales(engine: sa.Engine, days: list[str | None], *, primary_key: bool = True) -> None:
    """transactions with an index on order_date; ids in list order (None: no order date;
    MariaDB's zero date is let in)."""
    key = "id INT AUTO_INCREMENT PRIMARY KEY" if primary_key else "id INT NOT NULL"
    with engine.begin() as c:
        c.execute(sa.text("SET SESSION sql_mode = ''"))  # lets '0000-00-00' in
        c.execute(sa.text("DROP TABLE IF EXISTS transactions"))
        c.execute(
            sa.text(
                f"CREATE TABLE transactions ({key}, transaction_id VARCHAR(10), customer_id "
                "VARCHAR(10), order_date DATETIME, amount DECIMAL(12,2), status VARCHAR(20),"
                " INDEX by_order_date (order_date))"
            )
        )
        rows = [
            {"id": i + 1, "t": _transaction_id(i), "d": day, "a": i + 0.25}
            for i, day in enumerate(days)
        ]
        c.execute(
            sa.text(
                "INSERT INTO transactions (id, transaction_id, customer_id, order_date, amount,"
                " status) VALUES (:id, :t, 'C1', :d, :a, 'completed')"
            ),
            rows,
        )
        c.execute(sa.text("ANALYZE TABLE transactions"))


def _transaction_id(position: int) -> str:
    """Every fifth row repeats an earlier id: which copy comes first depends on the order."""
    return f"T{position % 7}" if position % 5 == 0 else f"T{position}"


STREAM_MYSQL = sql_fastpath.stream_mysql  # what _read_july records around, however often


def _read_july(
    engine: sa.Engine, url: str, monkeypatch, statements: list[str], period: FilterSpec = JULY
) -> pd.DataFrame:
    def recording_stream(raw, query, dialect, *args):
        statements.append(sql_fastpath.bound_statement(query, dialect)[0])
        return STREAM_MYSQL(raw, query, dialect, *args)

    monkeypatch.setattr(sql_fastpath, "stream_mysql", recording_stream)
    config = source(url, "transactions")
    return extract_table(engine, "transactions", config, period_spec=period, event_time="order_date")


def test_mariadb_reads_a_small_period_through_the_event_time_index(mysql_url, monkeypatch):
    """Forced index when the period is a small share of the table, rows in primary-key order
    as a full scan gives them (so the first of two copies stays the first); the same rows
    as without the hint. A period that is most of the table, or a table without a primary
    key, is read without it."""
    import tasks.mysql_index as mysql_index

    engine = sa.create_engine(mysql_url)
    # 400 older orders, 40 in July spread over the whole key (ids that do not follow the
    # time, so no key range); July's dates descend with the id: index order != id order.
    history = [f"2024-{1 + i % 12:02d}-{1 + i % 28:02d} 10:00:00" for i in range(400)]
    july = [f"2025-07-{28 - i % 28:02d} {i % 24:02d}:00:00" for i in range(40)]
    july_at = set(range(10, 440, 11))
    older, in_july = iter(history), iter(july)
    spread = [next(in_july) if i in july_at else next(older) for i in range(440)]
    _indexed_sales(engine, spread)
    statements: list[str] = []
    hinted = _read_july(engine, mysql_url, monkeypatch, statements)
    monkeypatch.setattr(mysql_index, "INDEX_RANGE_MAX_SHARE", 0)  # never the index
    scanned = _read_july(engine, mysql_url, monkeypatch, statements)
    assert "FORCE INDEX (by_order_date)" in statements[0] and "ORDER BY" in statements[0]
    assert "FORCE INDEX" not in statements[1]
    assert len(hinted) == 40
    # The same rows. (Unhinted, MariaDB picks the index itself for a table this small and
    # returns index order: only the hinted read's order is fixed, asserted below.)
    order = ["transaction_id", "order_date"]
    pd.testing.assert_frame_equal(
        hinted.sort_values(order).reset_index(drop=True),
        scanned.sort_values(order).reset_index(drop=True),
    )
    # July rows in id order, their dates descending.
    assert hinted["transaction_id"].tolist() == [_transaction_id(i) for i in sorted(july_at)]
    monkeypatch.undo()

    # A table larger than InnoDB's buffer pool is scanned: the index path's per-row lookups
    # and sort no longer stay in memory (the pool's size is the server's; faked here).
    statements.clear()
    monkeypatch.setattr(mysql_index, "buffer_pool_bytes", lambda connection: 1)
    assert len(_read_july(engine, mysql_url, monkeypatch, statements)) == 40
    assert "FORCE INDEX" not in statements[0]
    monkeypatch.undo()

    statements.clear()
    _indexed_sales(engine, july)  # the period is the whole table
    assert len(_read_july(engine, mysql_url, monkeypatch, statements)) == 40
    _indexed_sales(engine, spread, primary_key=False)
    assert len(_read_july(engine, mysql_url, monkeypatch, statements)) == 40
    assert not any("FORCE INDEX" in s for s in statements)
    engine.dispose()


def test_mariadb_reads_a_period_by_its_key_range_where_the_key_follows_the_time(
    mysql_url, monkeypatch
):
    """Ids that follow the order time (as an auto-increment key of a sales table does): the
    period is read as the key range its dated rows span, plus the rows without a usable
    time outside it (through the index). Together: the rows, order and types of the plan
    that reads everything in one query in key order."""
    import tasks.mysql_index as mysql_index

    engine = sa.create_engine(mysql_url)
    days: list[str | None] = (
        [f"2024-{1 + i // 28 % 12:02d}-{1 + i % 28:02d} 10:00:00" for i in range(300)]
        + [f"2025-07-{28 - i % 28:02d} {i % 24:02d}:00:00" for i in range(40)]  # ids 301-340
        + [f"2025-08-{1 + i:02d} 09:00:00" for i in range(30)]
    )
    no_time = {4: None, 149: None, 319: None, 354: None, 59: "0000-00-00 00:00:00", 364: "0000-00-00 00:00:00"}
    for position, value in no_time.items():
        days[position] = value
    _indexed_sales(engine, days)
    statements: list[str] = []
    ranged = _read_july(engine, mysql_url, monkeypatch, statements)
    assert len(statements) == 3
    assert "BETWEEN" in statements[1] and "FORCE INDEX" not in statements[1]
    assert all("FORCE INDEX (by_order_date)" in statements[i] for i in (0, 2))
    assert all("ORDER BY" in statement for statement in statements)
    july_at = [i for i in range(300, 340) if i not in no_time]
    assert ranged["transaction_id"].tolist() == [
        _transaction_id(i) for i in sorted([*july_at, *no_time])
    ]
    monkeypatch.setattr(mysql_index, "KEY_RANGE_MAX_SHARE", 0)  # one query, the index, key order
    statements.clear()
    indexed = _read_july(engine, mysql_url, monkeypatch, statements)
    assert len(statements) == 1 and "FORCE INDEX" in statements[0]
    # The zero dates keep order_date as text in both: typed once over all three reads.
    assert ranged["order_date"].tolist()[1] == "0000-00-00 00:00:00"
    pd.testing.assert_frame_equal(ranged, indexed)
    monkeypatch.undo()
    # The generic reader takes the same three reads and gives the same frame.
    generic = extract_table(
        engine, "transactions", source(mysql_url, "transactions"), period_spec=JULY,
        event_time="order_date", fast_path=False,
    )
    pd.testing.assert_frame_equal(generic, ranged)

    # A period with no dated rows: only the rows without a usable time, in key order.
    statements.clear()
    nothing_dated = FilterSpec(conditions=[
        Condition(field="order_date", operator="greater_equal", value="2026-01-01"),
        Condition(field="order_date", operator="less_than", value="2026-02-01"),
    ])
    undated = _read_july(engine, mysql_url, monkeypatch, statements, period=nothing_dated)
    assert len(statements) == 1
    assert undated["transaction_id"].tolist() == [_transaction_id(i) for i in sorted(no_time)]

    # A period filter that reads another column: the index does not cover it, no key range.
    statements.clear()
    completed_july = FilterSpec(conditions=[
        *JULY.conditions, Condition(field="status", operator="equals", value="completed"),
    ])
    completed = _read_july(engine, mysql_url, monkeypatch, statements, period=completed_july)
    assert len(completed) == len(july_at) + len(no_time)
    assert len(statements) == 1 and "BETWEEN" not in statements[0]
    engine.dispose()


def test_the_key_range_reads_see_one_snapshot(mysql_url, monkeypatch):
    """The range is found first and bounds the reads after it, so they must see the data
    as it was then, also on a server whose default isolation is READ COMMITTED: an order
    below the range that had no time when the range was found, and is given a July date
    before the reads, is read as it was (else it would fall between the reads)."""
    engine = sa.create_engine(mysql_url, isolation_level="READ COMMITTED")
    days: list[str | None] = (
        [f"2024-{1 + i // 28 % 12:02d}-{1 + i % 28:02d} 10:00:00" for i in range(300)]
        + [f"2025-07-{1 + i % 28:02d} 10:00:00" for i in range(40)]
    )
    days[4] = None
    _indexed_sales(engine, days)
    writer = sa.create_engine(mysql_url)
    changed: list[bool] = []

    def dated_meanwhile(raw, query, dialect, *args):
        if not changed:  # after the range was found, before the first read
            with writer.begin() as c:
                c.execute(sa.text("UPDATE transactions SET order_date = '2025-07-15 10:00:00' WHERE id = 5"))
            changed.append(True)
        return STREAM_MYSQL(raw, query, dialect, *args)

    monkeypatch.setattr(sql_fastpath, "stream_mysql", dated_meanwhile)
    july = extract_table(
        engine, "transactions", source(mysql_url, "transactions"), period_spec=JULY,
        event_time="order_date",
    )
    writer.dispose()
    engine.dispose()
    assert changed
    assert len(july) == 41
    assert july["transaction_id"].iloc[0] == _transaction_id(4)
    assert pd.isna(july["order_date"].iloc[0])


def test_a_connection_lost_while_choosing_the_index_is_raised_not_swallowed(
    mysql_url, monkeypatch
):
    """Choosing the index must not hide a lost connection (the retry policy judges it; once
    it fell back to a scan on a dead session and failed with PendingRollbackError), while
    any other inspection error only means: read without the hint."""
    import MySQLdb

    engine = sa.create_engine(mysql_url)
    _indexed_sales(engine, [f"2024-{1 + i % 12:02d}-01 10:00:00" for i in range(40)])

    def failing(invalidated: bool):
        def get_indexes(self, *args, **kwargs):
            raise sa.exc.OperationalError(
                "SHOW CREATE TABLE", {}, MySQLdb.OperationalError(2013, "Lost connection"),
                connection_invalidated=invalidated,
            )
        return get_indexes

    monkeypatch.setattr(sa.engine.reflection.Inspector, "get_indexes", failing(True))
    with pytest.raises(sa.exc.OperationalError, match="Lost connection"):
        _read_july(engine, mysql_url, monkeypatch, [])
    monkeypatch.setattr(sa.engine.reflection.Inspector, "get_indexes", failing(False))
    assert len(_read_july(engine, mysql_url, monkeypatch, [])) == 0  # no July rows here
    engine.dispose()


def test_sqlite_history_skips_garbled_dates(tmp_path: Path):
    """A garbled latest order must not blank the customer's last order (it would be dropped)."""
    url = f"sqlite:///{tmp_path / 'sales.db'}"
    pd.DataFrame(
        {
            "transaction_id": ["T1", "T2"],
            "customer_id": ["C1", "C1"],
            "order_date": ["2025-07-10 12:00:00", "2025-07-3x 10:00:00"],  # T2 sorts last as text
            "amount": [10.0, 5.0],
            "status": ["completed", "completed"],
        }
    ).to_sql("transactions", sa.create_engine(url), index=False)
    engine = sa.create_engine(url)
    history = normalize_history(
        extract_history(
            engine,
            source(url, "transactions"),
            timezone="UTC",
            as_of=AS_OF,
            revenue_statuses=["completed"],
        )
    )
    engine.dispose()
    assert history["last_order_at"].tolist() == [pd.Timestamp("2025-07-10 12:00:00", tz="UTC")]
    assert history["net_amount"].tolist() == [10.0]


@pytest.fixture(params=BACKENDS)
def small_backend(request, tmp_path) -> Iterator[Stored]:
    """One row of transactions in the backend under test."""
    dialect = request.param
    url = (
        f"sqlite:///{tmp_path / 'sales.db'}"
        if dialect == "sqlite"
        else request.getfixturevalue("pg_url" if dialect == "postgresql" else "mysql_url")
    )
    frame = pd.DataFrame(
        {
            "transaction_id": ["T1"],
            "customer_id": ["C1"],
            "order_date": ["2025-07-01 00:00:00"],
            "amount": [1.5],
        }
    )
    backend = store(dialect, url, {"transactions": frame})
    yield backend
    backend.engine.dispose()


def test_missing_table_is_named(small_backend):
    with pytest.raises(SourceSchemaError, match="'sales_2025'"):
        extract_table(small_backend.engine, "transactions", source(small_backend.url, "sales_2025"))


def test_missing_mapped_column_is_named(small_backend):
    config = source(small_backend.url, "transactions", column_map={"amount": "amount_usd"})
    with pytest.raises(SourceSchemaError, match="'amount_usd'.*'amount'"):
        extract_table(small_backend.engine, "transactions", config)


def test_query_on_a_missing_table_or_column_is_a_schema_error(small_backend):
    url = small_backend.url
    no_table = SqlSource(connection={"url": url}, query="SELECT * FROM sales_2025")
    with pytest.raises(SourceSchemaError, match="sales_2025"):
        extract_table(small_backend.engine, "transactions", no_table)
    no_column = SqlSource(
        connection={"url": url}, query="SELECT transaction_id, gross FROM transactions"
    )
    with pytest.raises(SourceSchemaError, match="gross"):
        extract_table(small_backend.engine, "transactions", no_column)


def test_query_with_a_literal_percent_reads_through_every_reader(small_backend):
    """'%' is the drivers' parameter marker: SQLAlchemy doubles it, the driver undoes that.
    The fast readers bind parameters themselves, so they must get this right too."""
    config = SqlSource(
        connection={"url": small_backend.url},
        query="SELECT * FROM transactions WHERE transaction_id LIKE 'T%'",
    )
    frame = extract_table(
        small_backend.engine, "transactions", config, period_spec=JULY, event_time="order_date"
    )
    assert frame["transaction_id"].tolist() == ["T1"]  # the one row, on its July 1 boundary


def test_postgres_copy_failing_mid_query_raises_the_database_error(pg_url):
    """A COPY that fails on the server must raise its error (as SQLAlchemy's DBAPIError, which
    the retry policy judges), never hand back the rows that came before it."""
    engine = sa.create_engine(pg_url)
    with engine.begin() as c:
        c.execute(
            sa.text(
                "CREATE TABLE transactions AS SELECT 'T' || n AS transaction_id, "
                "'C1' AS customer_id, now() AS order_date, n AS amount "
                "FROM generate_series(1, 50000) AS n"
            )
        )
    # Row 40,000 divides by zero, after ~39,999 rows have been sent.
    failing = SqlSource(
        connection={"url": pg_url},
        query="SELECT transaction_id, customer_id, "
        "order_date, 1.0 / (amount - 40000) AS amount FROM transactions",
    )
    with pytest.raises(sa.exc.DBAPIError, match="division by zero"):
        extract_table(engine, "transactions", failing)
    # The engine is still usable: the broken session was discarded, not returned to the pool.
    ok = extract_table(engine, "transactions", source(pg_url, "transactions"))
    engine.dispose()
    assert len(ok) == 50_000


ORDER_TIME_TYPES = {"sqlite": "TEXT", "postgresql": "timestamptz", "mysql": "DATETIME"}


def test_history_leaves_out_order_dates_the_pipeline_cannot_place(small_backend):
    """Year 1 is a date every backend stores, but no datetime64[ns]: the staging casts
    report it, so it must not become the customer's first order (which would blank it)."""
    time_type = ORDER_TIME_TYPES[small_backend.dialect]
    with small_backend.engine.begin() as c:
        c.execute(
            sa.text(
                f"CREATE TABLE history_case (transaction_id VARCHAR(10), customer_id "
                f"VARCHAR(10), order_date {time_type}, amount DECIMAL(12,2), status VARCHAR(20))"
            )
        )
        c.execute(
            sa.text(
                "INSERT INTO history_case VALUES "
                "('T1', 'C1', '2025-07-10 12:00:00', 10.00, 'completed'),"  # counts
                "('T2', 'C1', '0001-01-01 00:00:00', 5.00, 'completed')"  # year 1: left out
            )
        )
    config = source(small_backend.url, "history_case")
    history = normalize_history(
        extract_history(
            small_backend.engine,
            config,
            timezone="UTC",
            as_of=AS_OF,
            revenue_statuses=["completed"],
        )
    )
    assert history[["customer_id", "net_amount", "order_count"]].values.tolist() == [
        ["C1", 10.0, 1]
    ]
    assert history["first_order_at"].tolist() == [pd.Timestamp("2025-07-10 12:00:00", tz="UTC")]


def test_mariadb_text_order_dates_that_do_not_parse_are_left_out_of_history(mysql_url):
    engine = sa.create_engine(mysql_url)
    with engine.begin() as c:
        c.execute(
            sa.text(
                "CREATE TABLE transactions (transaction_id VARCHAR(10), customer_id "
                "VARCHAR(10), order_date VARCHAR(30), amount DOUBLE, status VARCHAR(20))"
            )
        )
        c.execute(
            sa.text(
                "INSERT INTO transactions VALUES "
                "('T1', 'C1', '2025-07-10 12:00:00', 10.0, 'completed'),"  # counts
                "('T2', 'C1', '2025-07-3x 10:00:00', 5.0, 'completed'),"  # garbled (CAST says July 3)
                "('T3', 'C1', '2025-02-30 09:00:00', 7.0, 'completed'),"  # no such day
                "('T4', 'C1', '2025-07-20T08:00:00', 1.0, 'completed')"  # ISO with a T: counts
            )
        )
    history = normalize_history(
        extract_history(
            engine,
            source(mysql_url, "transactions"),
            timezone="UTC",
            as_of=AS_OF,
            revenue_statuses=["completed"],
        )
    )
    engine.dispose()
    # T1 + T4: 10.0 + 1.0 = 11.0 over 2 orders, first July 10, last July 20.
    assert history[["customer_id", "net_amount", "order_count"]].values.tolist() == [
        ["C1", 11.0, 2]
    ]
    assert history["first_order_at"].tolist() == [pd.Timestamp("2025-07-10 12:00:00", tz="UTC")]
    assert history["last_order_at"].tolist() == [pd.Timestamp("2025-07-20 08:00:00", tz="UTC")]


# ---------------------------------------------------------------- the history through ConnectorX


def _orders_table(engine: sa.Engine, amount_type: str = "DECIMAL(12,2)") -> None:
    with engine.begin() as c:
        c.execute(
            sa.text(
                "CREATE TABLE transactions (id INT PRIMARY KEY, transaction_id VARCHAR(20), "
                f"customer_id VARCHAR(20), order_date DATETIME(6), amount {amount_type}, "
                f"discount_applied {amount_type}, currency CHAR(3), status VARCHAR(20))"
            )
        )
        c.execute(
            sa.text(
                "INSERT INTO transactions VALUES "
                "(1, 'T1', 'C-ü', '2025-07-10 12:00:00.250000', 10.10, NULL, 'EUR', 'completed'),"
                "(2, 'T2', 'C-😀', '2024-02-29 23:59:59', 99999999.99, 0.01, NULL, 'Completed'),"
                "(3, 'T3', 'NULL', '2025-01-01 00:00:00', 0.05, 0.05, 'USD', 'completed'),"
                "(4, 'T3', 'NULL', '2025-01-01 00:00:00', 0.05, 0.05, 'USD', 'completed'),"  # a copy
                "(5, 'T4', 'c\\\\1''%s', '1999-12-31 23:00:00', 1.99, 2.50, 'usd', 'completed'),"
                "(6, 'T5', 'C-ü', '2025-07-31 23:59:59.999999', 5.00, NULL, 'EUR', 'completed'),"
                "(7, 'T6', 'C-ü', '2025-08-01 02:00:00', 7.00, NULL, 'EUR', 'completed'),"  # as_of: out
                "(8, 'T7', 'C9', '2025-03-03 03:03:03', 3.00, NULL, 'EUR', 'cancelled')"
            )
        )


def _history(engine: sa.Engine, url: str) -> pd.DataFrame:
    return extract_history(
        engine, source(url, "transactions"), timezone="UTC", as_of=AS_OF,
        revenue_statuses=["completed"],
    )


def test_history_through_connectorx_equals_the_streaming_readers(mysql_url, monkeypatch):
    engine = sa.create_engine(mysql_url)
    _orders_table(engine)

    used: list[pa.Table] = []
    connectorx_table = sql_fastpath.connectorx_table

    def spying(*args):
        used.append(connectorx_table(*args))
        return used[-1]

    monkeypatch.setattr(sql_fastpath, "connectorx_table", spying)
    through_connectorx = _history(engine, mysql_url)
    assert len(used) == 1 and used[0] is not None, "ConnectorX was not used"
    monkeypatch.setattr(sql_fastpath, "connectorx_table", lambda *args: None)
    streamed = _history(engine, mysql_url)
    engine.dispose()
    pd.testing.assert_frame_equal(through_connectorx, streamed, check_exact=True)
    # and what they agree on is right: text, money, copies, times, the as_of bound
    assert through_connectorx[["customer_id", "net_amount", "order_count"]].values.tolist() == [
        ["C-ü", 15.10, 2],
        ["C-😀", 99999999.98, 1],
        ["NULL", 0.0, 1],  # the text 'NULL', its copy counted once
        ["c\\1'%s", -0.51, 1],
    ]
    assert through_connectorx["currency"].fillna("(null)").tolist() == ["EUR", "(null)", "USD", "usd"]
    assert through_connectorx["last_order_at"].iloc[0] == pd.Timestamp("2025-07-31 23:59:59.999999", tz="UTC")


@pytest.mark.parametrize(
    ("amount_type", "url_suffix", "reason"),
    [
        ("DOUBLE", "", "columns ConnectorX would not hand over exactly: ['amount', 'discount_applied']"),
        ("DECIMAL(30,12)", "", "columns ConnectorX would not hand over exactly: ['amount', 'discount_applied']"),
        ("DECIMAL(12,2)", "?charset=utf8mb4", "the URL has options (charset)"),
    ],
)
def test_connectorx_is_left_out_where_it_would_not_be_exact(mysql_url, amount_type, url_suffix, reason, caplog):
    engine = sa.create_engine(mysql_url + url_suffix)
    _orders_table(engine, amount_type)
    with caplog.at_level("INFO", logger="tasks.sql_connectorx"):
        history = _history(engine, mysql_url)
    engine.dispose()
    assert f"history read with mysqlclient: {reason}" in caplog.text
    assert history["order_count"].sum() == 5  # still read, by the streaming reader


def test_a_failing_connectorx_read_falls_back_to_the_streaming_reader(mysql_url, monkeypatch, caplog):
    import connectorx

    def refused(*args, **kwargs):
        raise RuntimeError("DriverError(Server(ServerError { code: 1045 }))")

    monkeypatch.setattr(connectorx, "read_sql", refused)
    engine = sa.create_engine(mysql_url)
    _orders_table(engine)
    with caplog.at_level("WARNING", logger="tasks.sql_fastpath"):
        history = _history(engine, mysql_url)
    engine.dispose()
    assert "ConnectorX failed (RuntimeError: DriverError" in caplog.text
    assert history["order_count"].sum() == 5


def test_our_session_lost_while_checking_connectorx_is_raised_not_swallowed(mysql_url, monkeypatch):
    """A kill that lands on our idle session between two queries (CI saw one: the operator's
    KILL aimed at the column probe arrived just after it) must reach the retry policy as
    the lost connection it is. It was once taken for ConnectorX's failure: the fallback then
    read on the invalidated session and raised PendingRollbackError, which is not retried."""
    engine = sa.create_engine(mysql_url)
    _orders_table(engine)
    checks = sql_fastpath.connectorx_table

    def killed_first(connection, *args):
        session = connection.exec_driver_sql("SELECT CONNECTION_ID()").scalar_one()
        with engine.connect() as operator:
            operator.exec_driver_sql(f"KILL {session:d}")
        return checks(connection, *args)

    monkeypatch.setattr(sql_fastpath, "connectorx_table", killed_first)
    with pytest.raises(sa.exc.DBAPIError) as raised:
        _history(engine, mysql_url)
    assert not isinstance(raised.value, sa.exc.PendingRollbackError)
    assert is_transient(raised.value), raised.value
    monkeypatch.setattr(sql_fastpath, "connectorx_table", checks)
    assert _history(engine, mysql_url)["order_count"].sum() == 5  # the pool handed out a live session
    engine.dispose()


def test_a_value_connectorx_cannot_take_falls_back_with_the_same_history(mysql_url, monkeypatch, caplog):
    engine = sa.create_engine(mysql_url)
    _orders_table(engine)
    with engine.begin() as c:
        c.execute(sa.text("SET SESSION sql_mode = ''"))  # lets a zero day in
        c.execute(sa.text(
            "INSERT INTO transactions VALUES (9, 'T9', 'C9', '2025-02-00 10:00:00', 4.00, NULL, 'EUR', 'completed')"
        ))

    with caplog.at_level("WARNING", logger="tasks.sql_fastpath"):
        after_a_panic = _history(engine, mysql_url)
    assert "ConnectorX failed (ConnectorXPanic: " in caplog.text
    monkeypatch.setattr(sql_fastpath, "connectorx_table", lambda *args: None)
    streamed = _history(engine, mysql_url)
    engine.dispose()
    pd.testing.assert_frame_equal(after_a_panic, streamed, check_exact=True)
    assert "C9" in after_a_panic["customer_id"].tolist()
