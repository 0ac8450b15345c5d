"""The period-filter language (SPEC §4): parsing, evaluation in pandas, compilation to SQL.

Frames are tiny and typed like the stg_ frames (tz-aware UTC datetimes, Int64, float64,
string); every row says in a comment why it is there and whether it is expected in or out.
The SQL side is checked here only for what needs no server (bound parameters, the values
bound per dialect); tests/integration/test_filter_pushdown.py runs it on real databases.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import pandas as pd
import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite

from tasks.filter_pandas import filter_mask
from tasks.filter_sql import compile_filter, sql_columns
from tasks.filtering import (
    Condition,
    FilterConfigError,
    FilterSpec,
    Group,
    NullFieldError,
    check_filter,
    referenced_fields,
    rename_fields,
    substitute,
)

pytestmark = pytest.mark.unit

SEED_JSON = """
{"conditions": [
   {"field": "created_at", "operator": "greater_equal", "value": "2025-07-01", "logic": "AND"},
   {"field": "created_at", "operator": "less_than",     "value": "2025-08-01", "logic": "AND"}],
 "caseSensitive": false, "nullHandling": "exclude"}
"""


def utc(*texts: str | None) -> pd.Series:
    return pd.to_datetime(pd.Series(list(texts), dtype=object), utc=True)


def spec_of(
    *conditions: Condition | Group, case_sensitive: bool = False, null_handling: str = "exclude"
) -> FilterSpec:
    return FilterSpec(
        conditions=list(conditions), case_sensitive=case_sensitive, null_handling=null_handling
    )


def kept(df: pd.DataFrame, spec: FilterSpec, tz: str = "UTC") -> list[int]:
    """The ids of the rows the filter keeps."""
    return df.loc[filter_mask(df, spec, tz), "id"].tolist()


@pytest.fixture
def people() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": [1, 2, 3, 4, 5],
            # 1: "Alice" mixed case   2: "alice" lower twin of 1   3: "Bob"   4: "50%_off" LIKE
            # wildcards as data   5: null name
            "name": pd.array(["Alice", "alice", "Bob", "50%_off", None], dtype="string"),
            "qty": pd.array([1, 2, 3, None, 5], dtype="Int64"),  # row 4: null quantity
            "amount": [10.0, 20.5, None, 40.0, 50.0],  # row 3: null amount
        }
    )


# ---------------------------------------------------------------- operators, one by one

NUMERIC_CASES = [
    # qty is 1, 2, 3, <NA>, 5 for ids 1..5; nulls are excluded by default.
    ("equals", 2, [2]),
    ("equals", "2", [2]),  # a number given as text is coerced to the column's kind
    ("not_equals", 2, [1, 3, 5]),  # id 4 (null) excluded even from not_equals
    ("greater_than", 2, [3, 5]),
    ("greater_equal", 2, [2, 3, 5]),
    ("less_than", 3, [1, 2]),
    ("less_equal", 3, [1, 2, 3]),
    ("in", [1, 5, 7], [1, 5]),
    ("not_in", [1, 5], [2, 3]),  # id 4 is null: excluded
    ("between", [2, 3], [2, 3]),  # inclusive at both ends
    ("between", ["2", 5.0], [2, 3, 5]),
    ("is_null", None, [4]),
    ("is_not_null", None, [1, 2, 3, 5]),
]


@pytest.mark.parametrize(("op", "value", "expected"), NUMERIC_CASES)
def test_numeric_operators(
    people: pd.DataFrame, op: str, value: object, expected: list[int]
) -> None:
    assert kept(people, spec_of(Condition(field="qty", operator=op, value=value))) == expected


def test_float_column_compares_numbers(people: pd.DataFrame) -> None:
    # amount: 10.0, 20.5, null, 40.0, 50.0 -> > 20 keeps 20.5, 40, 50 (ids 2, 4, 5)
    assert kept(
        people, spec_of(Condition(field="amount", operator="greater_than", value="20"))
    ) == [2, 4, 5]


TEXT_CASES = [
    # names: 1 "Alice", 2 "alice", 3 "Bob", 4 "50%_off", 5 null; case-sensitive here.
    ("equals", "alice", [2]),
    ("not_equals", "alice", [1, 3, 4]),  # null id 5 excluded
    ("in", ["Bob", "alice"], [2, 3]),
    ("not_in", ["Bob"], [1, 2, 4]),
    ("contains", "lic", [1, 2]),
    ("contains", "%_", [4]),  # wildcards are literal characters, not patterns
    ("starts_with", "A", [1]),
    ("starts_with", "50%", [4]),
    ("ends_with", "ce", [1, 2]),
    ("ends_with", "_", []),  # "_" is literal: no name ends with an underscore
    ("greater_than", "B", [2, 3]),  # code-point order: "Bob" > "B", "alice" > "B" (a > B)
    ("less_than", "B", [1, 4]),  # "Alice" and "50%_off" sort before "B"
    ("between", ["A", "Bz"], [1, 3]),
    ("is_null", None, [5]),
]


@pytest.mark.parametrize(("op", "value", "expected"), TEXT_CASES)
def test_text_operators_case_sensitive(
    people: pd.DataFrame, op: str, value: object, expected: list[int]
) -> None:
    spec = spec_of(Condition(field="name", operator=op, value=value), case_sensitive=True)
    assert kept(people, spec) == expected


@pytest.mark.parametrize(
    ("op", "value", "expected"),
    [
        ("equals", "ALICE", [1, 2]),  # both Alice and alice fold to "alice"
        ("not_equals", "ALICE", [3, 4]),
        ("in", ["BOB"], [3]),
        ("contains", "LIC", [1, 2]),
        ("starts_with", "a", [1, 2]),
        ("ends_with", "OFF", [4]),
        ("less_than", "b", [1, 2, 4]),  # folded: "alice" < "b", "bob" is not, "50%_off" is
    ],
)
def test_case_insensitive_folds_both_sides(
    people: pd.DataFrame, op: str, value: object, expected: list[int]
) -> None:
    spec = spec_of(Condition(field="name", operator=op, value=value), case_sensitive=False)
    assert kept(people, spec) == expected


@pytest.fixture
def events() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": [1, 2, 3, 4],
            "at": utc(
                "2025-07-01 00:00:00",  # 1: the first instant of July (UTC)
                "2025-07-15 12:30:00",  # 2: mid-month
                "2025-08-01 00:00:00",  # 3: the first instant of August
                None,  # 4: no event time
            ),
        }
    )


@pytest.mark.parametrize(
    ("op", "value", "expected"),
    [
        ("equals", "2025-07-01", [1]),  # a date alone is midnight
        ("equals", "2025-07-15T14:30:00+02:00", [2]),  # an explicit offset is honoured
        ("not_equals", "2025-07-01", [2, 3]),  # null id 4 excluded
        ("greater_than", "2025-07-01", [2, 3]),
        ("less_equal", "2025-07-15 12:30", [1, 2]),
        ("in", ["2025-08-01", "2025-07-15T12:30:00Z"], [2, 3]),
        ("not_in", ["2025-08-01"], [1, 2]),
        ("between", ["2025-07-01", "2025-08-01"], [1, 2, 3]),
        (
            "between",
            [date(2025, 7, 2), datetime(2025, 8, 1, tzinfo=UTC)],
            [2, 3],
        ),  # YAML dates
        ("is_not_null", None, [1, 2, 3]),
    ],
)
def test_datetime_operators(
    events: pd.DataFrame, op: str, value: object, expected: list[int]
) -> None:
    assert kept(events, spec_of(Condition(field="at", operator=op, value=value))) == expected


def test_naive_datetime_column_is_read_as_utc() -> None:
    df = pd.DataFrame(
        {
            "id": [1, 2],
            "at": pd.to_datetime(["2025-06-30 23:59:59", "2025-07-01 00:00:00"]),  # 1 out, 2 in
        }
    )
    assert kept(
        df, spec_of(Condition(field="at", operator="greater_equal", value="2025-07-01"))
    ) == [2]


# ---------------------------------------------------------------- logic and groups


@pytest.fixture
def grid() -> pd.DataFrame:
    # Every combination of a, b, c in {0, 1}; id = 4a + 2b + c, so id names the combination.
    rows = [(a, b, c) for a in (0, 1) for b in (0, 1) for c in (0, 1)]
    return pd.DataFrame(
        {
            "id": [4 * a + 2 * b + c for a, b, c in rows],
            "a": [a for a, _, _ in rows],
            "b": [b for _, b, _ in rows],
            "c": [c for _, _, c in rows],
        }
    )


def is_one(field: str, logic: str = "AND") -> Condition:
    return Condition(field=field, operator="equals", value=1, logic=logic)


def test_and_binds_tighter_than_or(grid: pd.DataFrame) -> None:
    # a OR b AND c == a OR (b AND c): ids with a=1 (4..7) plus b=c=1 (3).
    spec = spec_of(is_one("a"), is_one("b", "OR"), is_one("c", "AND"))
    assert kept(grid, spec) == [3, 4, 5, 6, 7]
    # a AND b OR c == (a AND b) OR c: ids with c=1 (1, 3, 5, 7) plus a=b=1 (6).
    spec = spec_of(is_one("a"), is_one("b", "AND"), is_one("c", "OR"))
    assert kept(grid, spec) == [1, 3, 5, 6, 7]


def test_first_conditions_logic_is_ignored(grid: pd.DataFrame) -> None:
    # "OR" on the first condition joins it to nothing: a AND b keeps only ids 6 and 7.
    assert kept(grid, spec_of(is_one("a", "OR"), is_one("b", "AND"))) == [6, 7]


def test_nested_group_overrides_precedence(grid: pd.DataFrame) -> None:
    # (a OR b) AND c: c=1 and (a or b): ids 3, 5, 7.
    spec = spec_of(Group(group=[is_one("a"), is_one("b", "OR")]), is_one("c", "AND"))
    assert kept(grid, spec) == [3, 5, 7]
    # Two levels deep: a AND (b OR (c)) keeps a=1 with b or c: ids 5, 6, 7.
    inner = Group(group=[is_one("c")], logic="OR")
    spec = spec_of(is_one("a"), Group(group=[is_one("b"), inner], logic="AND"))
    assert kept(grid, spec) == [5, 6, 7]


def test_logic_is_case_insensitive_in_json() -> None:
    spec = FilterSpec.model_validate(
        {"conditions": [{"field": "a", "operator": "equals", "value": 1, "logic": "or"}]}
    )
    assert spec.conditions[0].logic == "OR"


def test_empty_spec_keeps_every_row_aligned_with_the_index() -> None:
    df = pd.DataFrame({"a": [1, 2, 3]}, index=[10, 20, 30])  # a non-default index
    mask = filter_mask(df, FilterSpec())
    assert mask.tolist() == [True, True, True]
    assert mask.index.tolist() == [10, 20, 30]
    assert mask.dtype == bool


# ---------------------------------------------------------------- null handling


def test_null_handling_exclude_and_include(people: pd.DataFrame) -> None:
    # qty: 1, 2, 3, <NA> (id 4), 5
    condition = Condition(field="qty", operator="not_equals", value=2)
    assert kept(people, spec_of(condition, null_handling="exclude")) == [1, 3, 5]
    assert kept(people, spec_of(condition, null_handling="include")) == [1, 3, 4, 5]
    # With include, a null passes the condition it is tested in, nothing more. amount is
    # 10, 20.5, null, 40, 50: > 30 passes ids 3 (null), 4, 5; qty != 2 passes 1, 3, 4 (null), 5.
    both = spec_of(
        condition,
        Condition(field="amount", operator="greater_than", value=30),
        null_handling="include",
    )
    assert kept(people, both) == [3, 4, 5]


def test_null_handling_error_names_field_and_count(people: pd.DataFrame) -> None:
    spec = spec_of(
        Condition(field="qty", operator="greater_than", value=0),
        Condition(field="name", operator="contains", value="a"),
        null_handling="error",
    )
    with pytest.raises(NullFieldError) as raised:
        filter_mask(people, spec)
    # qty is null in row 4, name in row 5: one each.
    assert raised.value.counts == {"qty": 1, "name": 1}
    assert "'qty' holds 1 null" in str(raised.value) and "'name' holds 1 null" in str(raised.value)


def test_null_handling_error_ignores_fields_only_tested_for_null(people: pd.DataFrame) -> None:
    # amount is null in row 3, but it is only asked "is null": that is not an error.
    spec = spec_of(Condition(field="amount", operator="is_null"), null_handling="error")
    assert kept(people, spec) == [3]


# ---------------------------------------------------------------- the seed, time zones


def test_seed_json_verbatim_keeps_july_only() -> None:
    spec = FilterSpec.model_validate_json(SEED_JSON)
    assert spec.case_sensitive is False and spec.null_handling == "exclude"
    df = pd.DataFrame(
        {
            "id": [1, 2, 3, 4, 5],
            "created_at": utc(
                "2025-06-30 23:59:59",  # 1: last second of June: out
                "2025-07-01 00:00:00",  # 2: first instant of July: in (inclusive start)
                "2025-07-31 23:59:59",  # 3: last second of July: in
                "2025-08-01 00:00:00",  # 4: first instant of August: out (exclusive end)
                None,  # 5: no time: belongs to no period, out
            ),
        }
    )
    assert kept(df, spec) == [2, 3]


def test_period_in_a_non_utc_time_zone() -> None:
    # New York is UTC-4 in July and August: July is [07-01 04:00Z, 08-01 04:00Z).
    spec = FilterSpec.model_validate_json(SEED_JSON)
    df = pd.DataFrame(
        {
            "id": [1, 2, 3, 4],
            "created_at": utc(
                "2025-07-01 03:59:59",  # 1: June 30, 23:59:59 in New York: out
                "2025-07-01 04:00:00",  # 2: July 1, 00:00 in New York: in
                "2025-08-01 03:59:59",  # 3: July 31, 23:59:59 in New York: in (though August in UTC)
                "2025-08-01 04:00:00",  # 4: August 1, 00:00 in New York: out
            ),
        }
    )
    assert kept(df, spec, "America/New_York") == [2, 3]


def test_date_on_a_dst_gap_starts_at_the_first_real_instant() -> None:
    # Chile skips 2025-09-07 00:00-01:00 local: that day starts at 01:00 -03 = 04:00Z.
    df = pd.DataFrame(
        {
            "id": [1, 2],
            "at": utc(
                "2025-09-07 03:59:59",  # 1: Sept 6, 23:59:59 -04 local: before the day
                "2025-09-07 04:00:00",
            ),  # 2: Sept 7, 01:00 -03, the day's first instant
        }
    )
    spec = spec_of(Condition(field="at", operator="greater_equal", value="2025-09-07"))
    assert kept(df, spec, "America/Santiago") == [2]


# ---------------------------------------------------------------- spec transformations


def placeholder_spec() -> FilterSpec:
    return spec_of(
        Condition(field="created_at", operator="greater_equal", value="{period_start}"),
        Condition(field="created_at", operator="less_than", value="{period_end}"),
        Group(group=[Condition(field="status", operator="in", value=["{status}", "done"])]),
        Condition(field="note", operator="contains", value="{untouched}"),
        Condition(field="qty", operator="equals", value=3),
    )


def test_substitute_fills_placeholders_and_leaves_literals() -> None:
    original = placeholder_spec()
    filled = substitute(
        original, {"period_start": "2025-09-01", "{period_end}": "2025-10-01", "status": "open"}
    )
    values = [c.value for c in filled.conditions if isinstance(c, Condition)]
    assert values == [
        "2025-09-01",
        "2025-10-01",
        "{untouched}",
        3,
    ]  # unnamed placeholder, number: as is
    group = filled.conditions[2]
    assert isinstance(group, Group) and group.group[0].value == ["open", "done"]  # inside a list
    assert original.conditions[0].value == "{period_start}"  # the input is not modified


def test_rename_and_referenced_fields() -> None:
    renamed = rename_fields(placeholder_spec(), {"created_at": "order_date"})
    # unique, in order of first mention, through the group
    assert referenced_fields(renamed) == ["order_date", "status", "note", "qty"]


def test_check_filter_reports_every_problem_by_field() -> None:
    spec = spec_of(
        Condition(field="nope", operator="equals", value=1),  # unknown field
        Condition(field="qty", operator="in", value="3"),  # in without a list
        Condition(field="qty", operator="between", value=[1]),  # between without two bounds
        Condition(field="amount", operator="greater_than"),  # no value
        Condition(field="name", operator="not_in", value=["a", None]),  # null inside a list
        Group(group=[]),  # an empty group
    )
    problems = check_filter(spec, ["qty", "amount", "name"])
    assert len(problems) == 6
    assert "'nope' does not exist" in problems[0] and "qty, amount, name" in problems[0]
    assert "'qty'" in problems[1] and "in needs a list" in problems[1]
    assert "'qty'" in problems[2] and "between needs [low, high]" in problems[2]
    assert "'amount'" in problems[3] and "needs a value" in problems[3]
    assert "'name'" in problems[4] and "is_null" in problems[4]
    assert "empty group" in problems[5]
    assert check_filter(FilterSpec.model_validate_json(SEED_JSON), ["created_at"]) == []


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        (Condition(field="missing", operator="equals", value=1), "'missing' does not exist"),
        (Condition(field="qty", operator="contains", value="1"), "needs a text field"),
        (Condition(field="qty", operator="equals", value="three"), "'three' is not a number"),
        (Condition(field="at", operator="less_than", value="{period_end}"), "unfilled placeholder"),
    ],
)
def test_filter_mask_raises_config_errors_not_key_errors(
    condition: Condition, message: str
) -> None:
    df = pd.DataFrame({"qty": pd.array([1], dtype="Int64"), "at": utc("2025-07-01")})
    with pytest.raises(FilterConfigError, match=message):
        filter_mask(df, spec_of(condition))


def test_unknown_operator_is_rejected_when_parsed() -> None:
    with pytest.raises(ValueError, match="operator"):
        FilterSpec.model_validate({"conditions": [{"field": "a", "operator": "like", "value": 1}]})


# ---------------------------------------------------------------- compile_filter (no server)

DIALECTS = {
    "postgresql": postgresql.dialect(),
    "mysql": mysql.dialect(),
    "sqlite": sqlite.dialect(),
}


def compiled(spec: FilterSpec, dialect: str, tz: str = "UTC") -> sa.sql.compiler.SQLCompiler:
    columns = sql_columns({"name": "string", "order_date": "datetime", "qty": "Int64"})
    return compile_filter(spec, columns, dialect, tz).compile(dialect=DIALECTS[dialect])


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
def test_values_are_bound_never_formatted_into_sql(dialect: str) -> None:
    hostile = "x'); DROP TABLE customers; --"
    spec = spec_of(
        Condition(field="name", operator="equals", value=hostile),
        Condition(field="name", operator="contains", value=hostile, logic="OR"),
    )
    sql = compiled(spec, dialect)
    assert "DROP" not in str(sql)
    assert hostile in sql.params.values()  # the equals value, bound as is
    assert "%x'); DROP TABLE customers; --%" in sql.params.values()  # the LIKE pattern


@pytest.mark.parametrize(
    ("dialect", "bound"),
    [
        # Berlin is UTC+2 in July: local midnight of July 1 is 2025-06-30 22:00 UTC.
        ("postgresql", datetime(2025, 6, 30, 22, 0, tzinfo=UTC)),  # for timestamptz
        ("mysql", "2025-06-30 22:00:00"),  # DATETIME holding naive UTC
        ("sqlite", "2025-06-30 22:00:00"),  # TEXT, same layout, so text order is time order
    ],
)
def test_datetime_bound_per_storage(dialect: str, bound: object) -> None:
    spec = spec_of(Condition(field="order_date", operator="greater_equal", value="2025-07-01"))
    assert list(compiled(spec, dialect, "Europe/Berlin").params.values()) == [bound]


def test_like_wildcards_in_values_are_escaped() -> None:
    spec = spec_of(Condition(field="name", operator="starts_with", value="50%_!"))
    sql = compiled(spec, "postgresql")
    # % and _ and the escape character itself are escaped with "!"; the pattern ends in %.
    assert list(sql.params.values()) == ["50!%!_!!%"]
    assert "ESCAPE '!'" in str(sql) and "lower(" in str(sql)  # case-insensitive by default


def test_empty_spec_compiles_to_true() -> None:
    clause = compile_filter(FilterSpec(), {}, "sqlite")
    assert clause.compare(sa.true())


def test_compile_rejects_unknown_fields_dialects_and_untyped_columns() -> None:
    spec = spec_of(Condition(field="qty", operator="equals", value=1))
    with pytest.raises(FilterConfigError, match="'qty' does not exist"):
        compile_filter(spec, {"other": sa.column("other", sa.Integer())}, "sqlite")
    with pytest.raises(FilterConfigError, match="dialect 'oracle'"):
        compile_filter(spec, {"qty": sa.column("qty", sa.Integer())}, "oracle")
    # An untyped column that is not a canonical field: the kind cannot be known.
    odd = spec_of(Condition(field="odd", operator="equals", value=1))
    with pytest.raises(FilterConfigError, match="'odd'"):
        compile_filter(odd, {"odd": sa.column("odd")}, "sqlite")


def test_error_mode_lets_null_rows_through_for_the_filter_step_to_report() -> None:
    spec = spec_of(Condition(field="qty", operator="equals", value=1), null_handling="error")
    assert str(compiled(spec, "sqlite")).endswith("OR qty IS NULL")
