"""The PostgreSQL bulk path of the analytics load: Arrow CSV → COPY, values intact.

COPY's CSV format has traps: an empty string and a null must stay apart, a text with a
comma, a quote or a newline must round-trip, timestamps must keep their instant. These run
against the real PostgreSQL (a fresh database per test).
"""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd
import pytest
import sqlalchemy as sa

import tasks.load as load
from tasks.period import Period

pytestmark = pytest.mark.integration

JULY = Period.parse("2025-07")
TABLE = "customer_performance_july2025"


@pytest.fixture
def engine(pg_url: str) -> Iterator[sa.Engine]:
    created = sa.create_engine(pg_url)
    yield created
    created.dispose()


def tricky_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": ["C1", "C2", "C3"],
            # C1: comma, quote and newline inside one value; C2: an empty string (not null);
            # C3: a null. All three must come back exactly as they went in.
            "name": ['Smith, "Jr"\nline two', "", None],
            # Microseconds survive; NaT becomes NULL.
            "registration_date": pd.to_datetime(
                ["2025-07-01 10:00:00.123456", "2024-02-29 23:59:59", None],
                utc=True,
                format="ISO8601",
            ),
            "transaction_count": pd.array([3, pd.NA, 0], dtype="Int64"),  # a nullable integer
            "total_revenue": [1234.5, 0.1, float("nan")],  # NUMERIC(16,2); NaN -> NULL
            "is_active": [True, False, True],
        }
    )


def read_back(engine: sa.Engine) -> pd.DataFrame:
    with engine.connect() as connection:
        return pd.read_sql(sa.text(f'SELECT * FROM "{TABLE}" ORDER BY customer_id'), connection)


def test_values_round_trip(engine: sa.Engine) -> None:
    load.load_period(engine, {"customer_performance": tricky_frame()}, JULY)
    back = read_back(engine)
    assert back["name"].tolist()[:2] == ['Smith, "Jr"\nline two', ""]
    assert back["name"].isna().tolist() == [False, False, True]  # empty string stayed a string
    stamps = pd.to_datetime(back["registration_date"], utc=True)
    assert stamps[0] == pd.Timestamp("2025-07-01 10:00:00.123456", tz="UTC")
    assert stamps[1] == pd.Timestamp("2024-02-29 23:59:59", tz="UTC") and pd.isna(stamps[2])
    assert back["transaction_count"].isna().tolist() == [False, True, False]
    assert [float(v) for v in back["total_revenue"][:2]] == [1234.5, 0.1] and pd.isna(
        back["total_revenue"][2]
    )
    assert back["is_active"].tolist() == [True, False, True]


def test_instants_survive_a_session_in_another_time_zone(pg_url: str) -> None:
    # The CSV carries UTC wall-clock text without a zone; the load makes its transaction's
    # zone UTC. A session in +05:30 (a server or role setting) must change nothing, for a
    # UTC column, a column in another zone, and a naive one (UTC by the data contract).
    engine = sa.create_engine(pg_url, connect_args={"options": "-c timezone=Asia/Kolkata"}, pool_size=1)
    instants = pd.to_datetime(["2025-07-01 10:00:00.123456", "2024-12-31 23:30:00"], utc=True, format="ISO8601")
    frame = pd.DataFrame(
        {
            "customer_id": ["C1", "C2"],
            "registration_date": instants,
            "last_login": instants.tz_convert("America/New_York"),
            "created_at": instants.tz_localize(None),
        }
    )
    try:
        load.load_period(engine, {"customer_performance": frame}, JULY)
        back = read_back(engine)
        for column in ("registration_date", "last_login", "created_at"):
            assert pd.to_datetime(back[column], utc=True).tolist() == instants.tolist(), column
        with engine.connect() as connection:  # the pool's one connection, the load's own
            assert connection.exec_driver_sql("SHOW TIME ZONE").scalar_one() == "Asia/Kolkata"
    finally:
        engine.dispose()


def test_many_batches_keep_every_row_in_order(
    engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(load, "COPY_BATCH_ROWS", 3)  # 10 rows -> 4 CSV chunks through the producer
    frame = pd.DataFrame(
        {
            "customer_id": [f"C{i:02d}" for i in range(10)],
            "total_revenue": [i + 0.25 for i in range(10)],
        }
    )
    load.load_period(engine, {"customer_performance": frame}, JULY)
    back = read_back(engine)
    assert back["customer_id"].tolist() == frame["customer_id"].tolist()
    assert [float(v) for v in back["total_revenue"]] == frame["total_revenue"].tolist()


def test_a_column_arrow_cannot_write_falls_back_to_pandas(engine: sa.Engine) -> None:
    # A dict per row becomes an Arrow struct, which is not one CSV field: the pandas
    # writer takes over, and the null / empty-string distinction still holds.
    frame = pd.DataFrame(
        {
            "customer_id": ["C1", "C2", "C3"],
            "name": ["a", "", None],
            "details": [{"k": 1}, None, {"k": 2}],
        }
    )
    assert load.arrow_table(frame) is None
    load.load_period(engine, {"customer_performance": frame}, JULY)
    back = read_back(engine)
    assert back["name"].tolist()[:2] == ["a", ""] and pd.isna(back["name"][2])
    assert back["details"].isna().tolist() == [False, True, False]


def test_a_failing_csv_producer_fails_the_load_and_keeps_the_old_version(
    engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    load.load_period(engine, {"customer_performance": tricky_frame()}, JULY)

    def broken(table):  # type: ignore[no-untyped-def]
        yield b"C9,partial\n"
        raise RuntimeError("injected: CSV rendering failed mid-table")

    monkeypatch.setattr(load, "csv_batches", broken)
    with pytest.raises(RuntimeError, match="injected"):
        load.load_period(
            engine,
            {"customer_performance": tricky_frame().assign(customer_id=["X1", "X2", "X3"])},
            JULY,
        )
    assert read_back(engine)["customer_id"].tolist() == ["C1", "C2", "C3"]
