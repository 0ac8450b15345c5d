"""The filter language of the seed's "July 2025 Date Filter" (SPEC §4).

PLACEHOLDER: the models are final; the functions below are being written.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Operator = Literal[
    "equals", "not_equals", "greater_than", "greater_equal", "less_than", "less_equal", "in",
    "not_in", "contains", "starts_with", "ends_with", "is_null", "is_not_null", "between",
]
Logic = Literal["AND", "OR"]


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


class Group(BaseModel):
    """A parenthesised list of conditions or groups."""

    model_config = ConfigDict(extra="forbid")
    group: list[Condition | Group]
    logic: Logic = "AND"

    _logic = field_validator("logic", mode="before")(_upper_logic)


class FilterSpec(BaseModel):
    """The seed's JSON, accepted verbatim (camelCase keys) or in snake_case."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    conditions: list[Condition | Group] = Field(default_factory=list)
    case_sensitive: bool = Field(False, alias="caseSensitive")
    null_handling: Literal["exclude", "include", "error"] = Field("exclude", alias="nullHandling")
