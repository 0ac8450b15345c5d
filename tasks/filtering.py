"""The filter language of the seed's "July 2025 Date Filter" (SPEC §4).

One spec, two evaluators that agree row for row:
- `tasks.filter_pandas.filter_mask` applies it to a typed pandas frame (vectorised, one
  boolean per row);
- `tasks.filter_sql.compile_filter` turns it into a SQLAlchemy WHERE clause with bound parameters only, so
  extraction can push the period down into PostgreSQL, MariaDB or SQLite.

Semantics: `logic` joins an item to the one before it (the first item's logic is ignored)
and AND binds tighter than OR, so `a, OR b, AND c` means `a OR (b AND c)`. Values follow
the column: a datetime column takes a date or date-time string read in the pipeline's time
zone (a date alone is local midnight) and compared in UTC; a numeric column takes a number;
anything else is compared as text. Case folding (caseSensitive false) uses Python's
`str.lower` in pandas and SQL `lower()` in the database: identical for ASCII text; outside
ASCII, SQLite (and PostgreSQL under the C locale) fold only A-Z.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable
from datetime import date, datetime
from typing import Annotated, Any, Literal, TypeVar
from zoneinfo import ZoneInfo

import pandas as pd
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator

Operator = Literal[
    "equals",
    "not_equals",
    "greater_than",
    "greater_equal",
    "less_than",
    "less_equal",
    "in",
    "not_in",
    "contains",
    "starts_with",
    "ends_with",
    "is_null",
    "is_not_null",
    "between",
]
Logic = Literal["AND", "OR"]
Kind = Literal["datetime", "number", "text"]
T = TypeVar("T")

NULL_CHECKS = frozenset({"is_null", "is_not_null"})
LIST_OPERATORS = frozenset({"in", "not_in"})
TEXT_OPERATORS = frozenset({"contains", "starts_with", "ends_with"})
DIALECTS = {"postgresql": "postgresql", "mysql": "mysql", "mariadb": "mysql", "sqlite": "sqlite"}
LIKE_ESCAPE = "!"  # not a backslash: MySQL would read that as a string escape too


def _upper_logic(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


class Condition(BaseModel):
    """One comparison: `field operator value`, joined to the one before it by `logic`."""

    model_config = ConfigDict(extra="forbid")
    field: str
    operator: Operator
    value: Any = None
    logic: Logic = "AND"

    _logic = field_validator("logic", mode="before")(_upper_logic)


def _item_kind(value: Any) -> str:
    """A dict with a `group` key is a group; anything else is read as a condition.

    Telling pydantic which model to try keeps a bad operator's error about the condition,
    instead of a second list of complaints about why it is not a group either.
    """
    if isinstance(value, dict):
        return "group" if "group" in value else "condition"
    return "group" if isinstance(value, Group) else "condition"


FilterItem = Annotated[
    Annotated["Condition", Tag("condition")] | Annotated["Group", Tag("group")],
    Discriminator(_item_kind),
]


class Group(BaseModel):
    """A parenthesised list of conditions or groups."""

    model_config = ConfigDict(extra="forbid")
    group: list[FilterItem]
    logic: Logic = "AND"

    _logic = field_validator("logic", mode="before")(_upper_logic)


class FilterSpec(BaseModel):
    """The seed's JSON, accepted verbatim (camelCase keys) or in snake_case."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    conditions: list[FilterItem] = Field(default_factory=list)
    case_sensitive: bool = Field(False, alias="caseSensitive")
    null_handling: Literal["exclude", "include", "error"] = Field("exclude", alias="nullHandling")


class FilterConfigError(ValueError):
    """A filter that cannot be applied: unknown field, malformed value, wrong column type."""


class NullFieldError(ValueError):
    """nullHandling is 'error' and a filtered field holds nulls; `counts` says how many."""

    def __init__(self, counts: dict[str, int]):
        self.counts = counts
        detail = "; ".join(
            f"field {name!r} holds {count} null value(s)" for name, count in counts.items()
        )
        super().__init__(f"nullHandling is 'error' and {detail}")


# ---------------------------------------------------------------- spec transformations


def _conditions(items: list[Condition | Group]) -> Iterable[Condition]:
    for item in items:
        if isinstance(item, Group):
            yield from _conditions(item.group)
        else:
            yield item


def _map_items(
    items: list[Condition | Group], change: Callable[[Condition], Condition]
) -> list[Condition | Group]:
    return [
        item.model_copy(update={"group": _map_items(item.group, change)})
        if isinstance(item, Group)
        else change(item)
        for item in items
    ]


def _map_conditions(spec: FilterSpec, change: Callable[[Condition], Condition]) -> FilterSpec:
    return spec.model_copy(update={"conditions": _map_items(spec.conditions, change)})


def substitute(spec: FilterSpec, values: dict[str, str]) -> FilterSpec:
    """Fill placeholders such as "{period_start}" in string values (also inside lists).

    Keys may be given with or without braces. A value without a placeholder, or with one
    that `values` does not name, is left as it is.
    """
    tokens = {
        (key if key.startswith("{") and key.endswith("}") else f"{{{key}}}"): str(text)
        for key, text in values.items()
    }

    def fill(value: Any) -> Any:
        if isinstance(value, str):
            for token, text in tokens.items():
                value = value.replace(token, text)
            return value
        if isinstance(value, list | tuple):
            return [fill(element) for element in value]
        return value

    return _map_conditions(spec, lambda c: c.model_copy(update={"value": fill(c.value)}))


def rename_fields(spec: FilterSpec, mapping: dict[str, str]) -> FilterSpec:
    """Point conditions at other fields, e.g. {"created_at": "order_date"} (SPEC §4)."""
    return _map_conditions(
        spec, lambda c: c.model_copy(update={"field": mapping.get(c.field, c.field)})
    )


def referenced_fields(spec: FilterSpec) -> list[str]:
    """Every field the spec names, once each, in order of first mention."""
    return list(dict.fromkeys(c.field for c in _conditions(spec.conditions)))


def _null_checked_fields(spec: FilterSpec) -> list[str]:
    """Fields whose nulls nullHandling governs: all but those only tested by is_(not_)null."""
    return list(
        dict.fromkeys(
            c.field for c in _conditions(spec.conditions) if c.operator not in NULL_CHECKS
        )
    )


def _condition_problems(condition: Condition) -> list[str]:
    field, op, value = condition.field, condition.operator, condition.value
    if op in NULL_CHECKS:
        return []
    if op in LIST_OPERATORS:
        if not isinstance(value, list | tuple):
            return [f"field {field!r}: operator {op} needs a list of values, got {value!r}"]
        if any(element is None for element in value):
            return [f"field {field!r}: operator {op} cannot match null; use is_null / is_not_null"]
        return []
    if op == "between":
        if not isinstance(value, list | tuple) or len(value) != 2 or None in value:
            return [f"field {field!r}: operator between needs [low, high], got {value!r}"]
        return []
    if value is None:
        return [f"field {field!r}: operator {op} needs a value"]
    if isinstance(value, list | tuple | dict):
        return [f"field {field!r}: operator {op} needs a single value, got {value!r}"]
    return []


def check_filter(spec: FilterSpec, available: Iterable[str]) -> list[str]:
    """Every problem that would stop the spec from running, each naming its field."""
    known = list(dict.fromkeys(str(name) for name in available))
    problems = [
        f"field {name!r} does not exist (available: {', '.join(known)})"
        for name in referenced_fields(spec)
        if name not in known
    ]
    for condition in _conditions(spec.conditions):
        problems.extend(_condition_problems(condition))

    def empty_groups(items: list[Condition | Group]) -> int:
        groups = [item for item in items if isinstance(item, Group)]
        return sum((not g.group) + empty_groups(g.group) for g in groups)

    if empty_groups(spec.conditions):
        problems.append("an empty group would match every row: give it conditions or remove it")
    return problems


def _fold(
    items: list[Condition | Group],
    leaf: Callable[[Condition], T],
    both: Callable[[T, T], T],
    either: Callable[[T, T], T],
    everything: Callable[[], T],
) -> T:
    """Combine items as a sum of products: an OR starts a new AND-term (AND binds tighter)."""
    terms: list[T] = []
    for index, item in enumerate(items):
        value = (
            _fold(item.group, leaf, both, either, everything)
            if isinstance(item, Group)
            else leaf(item)
        )
        if index == 0 or item.logic == "OR":
            terms.append(value)
        else:
            terms[-1] = both(terms[-1], value)
    if not terms:
        return everything()
    result = terms[0]
    for term in terms[1:]:
        result = either(result, term)
    return result


# ---------------------------------------------------------------- value coercion


def _check_timezone(timezone: str) -> None:
    try:
        ZoneInfo(timezone)
    except Exception:
        raise FilterConfigError(f"timezone {timezone!r} is not an IANA time zone") from None


def _to_utc(value: Any, field: str, timezone: str) -> pd.Timestamp:
    """A date or date-time; naive ones are local to `timezone` (a date alone: local midnight)."""
    if not isinstance(value, str | date | datetime):
        raise FilterConfigError(
            f"field {field!r} is a date-time; {value!r} is not a date or date-time"
        )
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError):
        hint = " (an unfilled placeholder?)" if isinstance(value, str) and "{" in value else ""
        raise FilterConfigError(
            f"field {field!r} is a date-time; {value!r} is not a date or date-time{hint}"
        ) from None
    if pd.isna(stamp):
        raise FilterConfigError(f"field {field!r}: {value!r} is not a date-time")
    if stamp.tzinfo is None:
        # The first instant of the local wall-clock time: on a DST gap or fold, the earlier one.
        stamp = stamp.tz_localize(timezone, ambiguous=True, nonexistent="shift_forward")
    return stamp.tz_convert("UTC")


def _to_number(value: Any, field: str) -> int | float:
    number: int | float
    if isinstance(value, bool):
        raise FilterConfigError(f"field {field!r} is numeric; {value!r} is not a number")
    if isinstance(value, int | float):
        number = value
    else:
        text = str(value).strip()
        try:
            number = int(text)
        except ValueError:
            try:
                number = float(text)
            except ValueError:
                raise FilterConfigError(
                    f"field {field!r} is numeric; {value!r} is not a number"
                ) from None
    if isinstance(number, float) and not math.isfinite(number):
        raise FilterConfigError(f"field {field!r}: {value!r} is not a finite number")
    return number


def _coerce(value: Any, kind: Kind, field: str, timezone: str) -> Any:
    if kind == "datetime":
        return _to_utc(value, field, timezone)
    if kind == "number":
        return _to_number(value, field)
    return value if isinstance(value, str) else str(value)


def _operands(condition: Condition, kind: Kind, timezone: str) -> list[Any]:
    """The condition's value(s), coerced to the column's kind, as a list."""
    if condition.operator in TEXT_OPERATORS and kind != "text":
        raise FilterConfigError(
            f"field {condition.field!r}: operator {condition.operator} needs a text field, not {kind}"
        )
    raw = condition.value
    values = list(raw) if condition.operator in LIST_OPERATORS | {"between"} else [raw]
    return [_coerce(value, kind, condition.field, timezone) for value in values]


# Comparison operators as functions, for both evaluators.
_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "equals": operator.eq,
    "not_equals": operator.ne,
    "greater_than": operator.gt,
    "greater_equal": operator.ge,
    "less_than": operator.lt,
    "less_equal": operator.le,
}
