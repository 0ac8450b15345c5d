"""Pushdown agrees with pandas: compile_filter selects exactly the rows filter_mask keeps.

A hypothesis property test draws small tables (ints, floats, mixed-case strings full of LIKE
wildcards and the escape character, timestamps on period boundaries in several zones, nulls)
and random condition trees, writes the table into SQLite, PostgreSQL and MariaDB with real
column types, runs the compiled WHERE and compares the selected ids with filter_mask on the
typed pandas frame. With nullHandling 'error' the property is the one the pipeline relies on:
pandas raises on the pushed-down rows exactly when (and with the counts) it raises on all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from itertools import product
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasks.filter_pandas import filter_mask
from tasks.filter_sql import compile_filter, sql_columns
from tasks.filtering import (
    Condition,
    FilterSpec,
    Group,
    NullFieldError,
)

pytestmark = pytest.mark.integration

ZONES = ("UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata")
# Mixed case next to LIKE wildcards, the escape character, a backslash, a quote and a space;
# few letters, so that short values often match (or nearly match) a row.
ALPHABET = "aAb%_!\\' "
# Strings that tell a right pushdown from a wrong one: a case twin ('a'/'A'), a wildcard that
# would match anything unescaped ('%', '_'), the escape character itself, a trailing space.
TRICKY = ("a", "A", "ab", "Ab", "aB", "%", "_", "a%", "_b", "!", "!%", "\\", "'", "a ")
strings = st.one_of(st.sampled_from(TRICKY), st.text(ALPHABET, max_size=3))
FLOATS = (-1.5, 0.0, 0.25, 1.0, 2.5, 10.0)  # two decimals at most: exact in numeric(12,2)
BASE = datetime(2025, 6, 30, tzinfo=UTC)
DAYS = (date(2025, 7, 1), date(2025, 8, 1), date(2025, 7, 15))  # period bounds, and a plain day
# Midnight of Jul 1 / Aug 1 in every zone drawn, and one second either side of it.
BOUNDARIES = tuple(
    datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(zone)).astimezone(UTC)
    + timedelta(seconds=step)
    for day in (date(2025, 7, 1), date(2025, 8, 1))
    for zone in ZONES
    for step in (-1, 0, 1)
)
DTYPES = {"n": "Int64", "x": "float64", "s": "string", "t": "datetime"}
COMPARISONS = ("equals", "not_equals", "greater_than", "greater_equal", "less_than", "less_equal")
OPERATORS = {
    "n": (*COMPARISONS, "in", "not_in", "between", "is_null", "is_not_null"),
    "x": (*COMPARISONS, "in", "not_in", "between", "is_null", "is_not_null"),
    "t": (*COMPARISONS, "in", "not_in", "between", "is_null", "is_not_null"),
    # The LIKE-based operators twice: they are where escaping and case folding can go wrong.
    "s": (
        *COMPARISONS,
        "in",
        "not_in",
        "between",
        "is_null",
        "is_not_null",
        *(("contains", "starts_with", "ends_with") * 2),
    ),
}

instants = st.one_of(
    st.sampled_from(BOUNDARIES),
    st.integers(0, 34 * 86_400).map(lambda seconds: BASE + timedelta(seconds=seconds)),
)
time_texts = st.one_of(
    st.sampled_from(DAYS).map(date.isoformat),  # a date: local midnight in the filter's zone
    instants.map(lambda moment: moment.strftime("%Y-%m-%d %H:%M:%S")),  # naive: local time
    instants.map(lambda moment: moment.strftime("%Y-%m-%dT%H:%M:%SZ")),  # explicit UTC
)
VALUES: dict[str, st.SearchStrategy[Any]] = {
    "n": st.one_of(st.integers(-3, 3), st.integers(-3, 3).map(str)),
    "x": st.one_of(st.sampled_from(FLOATS), st.sampled_from(FLOATS).map(str)),
    "s": strings,
    "t": time_texts,
}


def sometimes_null(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """About one value in four is null: enough to exercise nullHandling, few enough to compare."""
    return st.one_of(values, values, values, st.none())


rows = st.lists(
    st.fixed_dictionaries(
        {
            "n": sometimes_null(st.integers(-3, 3)),
            "x": sometimes_null(st.sampled_from(FLOATS)),
            "s": sometimes_null(strings),
            "t": sometimes_null(instants),
        }
    ),
    min_size=1,
    max_size=12,
)


@st.composite
def conditions(draw: st.DrawFn) -> Condition:
    field = draw(st.sampled_from(["n", "x", "s", "s", "t"]))
    op = draw(st.sampled_from(OPERATORS[field]))
    values = VALUES[field]
    if op in ("in", "not_in"):
        value: Any = draw(st.lists(values, max_size=3))
    elif op == "between":
        value = [draw(values), draw(values)]
    elif op in ("is_null", "is_not_null"):
        value = None
    else:
        value = draw(values)
    return Condition(
        field=field, operator=op, value=value, logic=draw(st.sampled_from(["AND", "OR"]))
    )


@st.composite
def trees(draw: st.DrawFn, depth: int = 0) -> list[Condition | Group]:
    items: list[Condition | Group] = []
    for _ in range(draw(st.integers(1, 4))):
        if depth < 2 and draw(st.integers(0, 3)) == 0:
            logic = draw(st.sampled_from(["AND", "OR"]))
            items.append(Group(group=draw(trees(depth + 1)), logic=logic))
        else:
            items.append(draw(conditions()))
    return items


specs = st.builds(
    FilterSpec,
    conditions=trees(),
    case_sensitive=st.booleans(),
    null_handling=st.sampled_from(["exclude", "include", "error"]),
)


@dataclass
class Backend:
    connection: sa.Connection  # one per test: a round trip per query, not a pool checkout too
    dialect: str
    db_time: Callable[[datetime], Any]  # how this backend stores a UTC instant


DDL = {
    "sqlite": "CREATE TABLE cases (id INTEGER PRIMARY KEY, n INTEGER, x REAL, s TEXT, t TEXT)",
    "postgresql": "CREATE TABLE cases (id integer PRIMARY KEY, n bigint, x numeric(12, 2), "
    "s varchar(20), t timestamptz)",
    # utf8mb4_nopad_bin: case-sensitive, and 'a' <> 'a ' (the default collations pad and fold).
    "mysql": "CREATE TABLE cases (id INT PRIMARY KEY, n BIGINT, x DOUBLE, "
    "s VARCHAR(20) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin, t DATETIME)",
}
DB_TIME: dict[str, Callable[[datetime], Any]] = {
    "sqlite": lambda moment: moment.strftime("%Y-%m-%d %H:%M:%S"),  # TEXT, UTC, no zone
    "postgresql": lambda moment: moment,  # timestamptz takes the aware instant
    "mysql": lambda moment: moment.replace(tzinfo=None),  # DATETIME holding naive UTC
}


@pytest.fixture(params=["sqlite", "postgresql", "mysql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    dialect = request.param
    if dialect == "sqlite":
        url = f"sqlite:///{tmp_path / 'cases.db'}"
    elif dialect == "postgresql":
        url = request.getfixturevalue("pg_url")
    else:
        url = request.getfixturevalue("mysql_url") + "?charset=utf8mb4"
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        connection.execute(sa.text(DDL[dialect]))
        connection.commit()
        yield Backend(connection, dialect, DB_TIME[dialect])
    engine.dispose()


def typed_frame(data: list[dict[str, Any]]) -> pd.DataFrame:
    """The rows as the filter stage sees them: the canonical dtypes, indexed by id."""
    return pd.DataFrame(
        {
            "n": pd.array([row["n"] for row in data], dtype="Int64"),
            "x": pd.array([row["x"] for row in data], dtype="float64"),
            "s": pd.array([row["s"] for row in data], dtype="string"),
            "t": pd.to_datetime([row["t"] for row in data], utc=True),  # a list: no index to align
        },
        index=pd.RangeIndex(1, len(data) + 1, name="id"),
    )


def load(backend: Backend, data: list[dict[str, Any]]) -> None:
    """Replace the table's rows with `data`, ids 1..n, times stored the backend's way."""
    records = [
        {"id": index, **row, "t": None if row["t"] is None else backend.db_time(row["t"])}
        for index, row in enumerate(data, start=1)
    ]
    backend.connection.execute(sa.text("DELETE FROM cases"))
    if records:
        insert = sa.text("INSERT INTO cases (id, n, x, s, t) VALUES (:id, :n, :x, :s, :t)")
        backend.connection.execute(insert, records)
    backend.connection.commit()


def selected_ids(backend: Backend, spec: FilterSpec, timezone: str) -> list[int]:
    columns = sql_columns(DTYPES)
    table = sa.table("cases", sa.column("id", sa.Integer()), *columns.values())
    query = sa.select(table.c.id).where(compile_filter(spec, columns, backend.dialect, timezone))
    return sorted(backend.connection.execute(query).scalars())


def leaves(items: list[Condition | Group]) -> list[Condition]:
    found: list[Condition] = []
    for item in items:
        found.extend(leaves(item.group) if isinstance(item, Group) else [item])
    return found


def assert_pushdown_agrees(
    backend: Backend, frame: pd.DataFrame, spec: FilterSpec, timezone: str
) -> None:
    pushed = selected_ids(backend, spec, timezone)
    try:
        expected = sorted(frame.index[filter_mask(frame, spec, timezone)])
    except NullFieldError as on_all_rows:
        # The filter step runs on the pushed-down rows: it must fail the same way.
        with pytest.raises(NullFieldError) as on_pushed_rows:
            filter_mask(frame.loc[pushed], spec, timezone)
        assert on_pushed_rows.value.counts == on_all_rows.counts, spec
        return
    assert pushed == expected, spec


@settings(
    max_examples=60,
    deadline=None,
    database=None,  # no .hypothesis folder in the repository; a failure prints its example
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    data=rows,
    spec=specs,
    singles=st.lists(conditions(), min_size=1, max_size=3),
    timezone=st.sampled_from(ZONES),
)
def test_pushdown_selects_the_rows_filter_mask_keeps(
    backend: Backend,
    data: list[dict[str, Any]],
    spec: FilterSpec,
    singles: list[Condition],
    timezone: str,
) -> None:
    frame = typed_frame(data)
    load(backend, data)
    # Conditions alone first, text ones under both case settings, each with nulls excluded
    # and included: a wrong leaf fails here even where a tree would hide it. Then the tree as
    # drawn, for AND/OR precedence, groups and nullHandling 'error'.
    for condition in [*singles, *leaves(spec.conditions)]:
        cases = [True, False] if condition.field == "s" else [spec.case_sensitive]
        for case_sensitive, null_handling in product(cases, ["exclude", "include"]):
            alone = FilterSpec(
                conditions=[condition], case_sensitive=case_sensitive, null_handling=null_handling
            )
            assert_pushdown_agrees(backend, frame, alone, timezone)
    assert_pushdown_agrees(backend, frame, spec, timezone)


# Hand-checked text cases; ids 1..10 hold the strings in TEXT_ROWS below.
TEXT_ROWS = ["a", "A", "a%", "ab", "a_", "a!", "a'", "a\\", "a ", None]
TEXT_CASES = [
    # (operator, value, caseSensitive, nullHandling, ids kept)
    ("contains", "%", True, "exclude", [3]),  # a literal percent sign, not "anything"
    ("starts_with", "a_", True, "exclude", [5]),  # unescaped "_" would also take 3, 4, 6-9
    ("ends_with", "!", True, "exclude", [6]),  # the escape character as data
    ("contains", "'", True, "exclude", [7]),  # a quote travels as a bound value
    ("ends_with", "\\", True, "exclude", [8]),  # a backslash is no escape
    ("equals", "a", True, "exclude", [1]),  # not "A", not "a " (no space padding)
    ("equals", "a", False, "exclude", [1, 2]),  # folded: "A" matches too
    ("starts_with", "A", True, "exclude", [2]),  # SQLite's LIKE would fold here
    ("contains", "A", False, "exclude", [1, 2, 3, 4, 5, 6, 7, 8, 9]),  # every non-null row
    ("not_equals", "A", False, "include", [3, 4, 5, 6, 7, 8, 9, 10]),  # id 10 is null: in
]


def test_text_cases_on_every_backend(backend: Backend) -> None:
    """One database per backend for all cases: creating one per case would dominate the run."""
    data = [{"n": None, "x": None, "s": text, "t": None} for text in TEXT_ROWS]
    frame = typed_frame(data)
    load(backend, data)
    for op, value, case_sensitive, null_handling, expected in TEXT_CASES:
        spec = FilterSpec(
            conditions=[Condition(field="s", operator=op, value=value)],
            case_sensitive=case_sensitive,
            null_handling=null_handling,
        )
        assert sorted(frame.index[filter_mask(frame, spec)]) == expected, spec
        assert selected_ids(backend, spec, "UTC") == expected, spec


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql", "mysql"])
def test_seed_filter_on_untyped_canonical_columns(
    dialect: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Extraction names columns without SQL types; the canonical dtype of order_date decides.

    Europe/Berlin is UTC+2 in July/August, so July is [06-30 22:00, 07-31 22:00) in UTC.
    """
    url = {
        "sqlite": lambda: f"sqlite:///{tmp_path / 'orders.db'}",
        "postgresql": lambda: request.getfixturevalue("pg_url"),
        "mysql": lambda: request.getfixturevalue("mysql_url"),
    }[dialect]()
    ddl = {"sqlite": "TEXT", "postgresql": "timestamptz", "mysql": "DATETIME"}[dialect]
    utc_rows = {
        1: datetime(2025, 6, 30, 21, 59, 59, tzinfo=UTC),  # June 30, 23:59:59 in Berlin: out
        2: datetime(2025, 6, 30, 22, 0, 0, tzinfo=UTC),  # July 1, 00:00 in Berlin: in
        3: datetime(2025, 7, 31, 21, 59, 59, tzinfo=UTC),  # July 31, 23:59:59 in Berlin: in
        4: datetime(2025, 7, 31, 22, 0, 0, tzinfo=UTC),  # Aug 1, 00:00 in Berlin: out
    }
    spec = FilterSpec.model_validate(
        {
            "conditions": [
                {
                    "field": "order_date",
                    "operator": "greater_equal",
                    "value": "2025-07-01",
                    "logic": "AND",
                },
                {
                    "field": "order_date",
                    "operator": "less_than",
                    "value": "2025-08-01",
                    "logic": "AND",
                },
            ],
            "caseSensitive": False,
            "nullHandling": "exclude",
        }
    )
    engine = sa.create_engine(url)
    try:
        with engine.begin() as connection:
            connection.execute(
                sa.text(f"CREATE TABLE orders (id INTEGER PRIMARY KEY, order_date {ddl})")
            )
            connection.execute(
                sa.text("INSERT INTO orders (id, order_date) VALUES (:id, :t)"),
                [{"id": key, "t": DB_TIME[dialect](moment)} for key, moment in utc_rows.items()],
            )
            table = sa.table("orders", sa.column("id"), sa.column("order_date"))
            where = compile_filter(
                spec, {"order_date": table.c.order_date}, dialect, "Europe/Berlin"
            )
            selected = sorted(connection.execute(sa.select(table.c.id).where(where)).scalars())
    finally:
        engine.dispose()
    assert selected == [2, 3]
