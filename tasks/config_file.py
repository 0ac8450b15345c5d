"""Reading a pipeline config file, and checking it as a whole before any data moves.

`load_config(path)` expands ${ENV} references, parses and type-checks (pydantic names the
offending field); `check_config(config, period)` adds the cross-field checks that need the
whole picture (filter fields exist in each source, the period parses, ...) and returns
every problem at once, so `python flows/main.py --check` can report them together.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from tasks.config import PROJECT_ROOT, ConfigError, PipelineConfig
from tasks.filtering import Condition, Group
from tasks.period import Period, PeriodError
from tasks.settings import DEFAULT_EVENT_TIME, FIELDS, SOURCES


def _format_validation_error(error: ValidationError) -> list[str]:
    problems = []
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"] if not str(part).startswith("function-"))
        got = item.get("input")
        shown = f" (got {got!r})" if isinstance(got, str | int | float) and not isinstance(got, bool) else ""
        problems.append(f"{location}: {item['msg']}{shown}")
    return problems


def load_config(path: str | Path) -> PipelineConfig:
    """Read and type-check a config file; raise ConfigError naming every bad field."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError([f"config file {path} does not exist"]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{path} is not valid YAML: {exc}"]) from None
    if not isinstance(raw, dict):
        raise ConfigError([f"{path} must hold a mapping at the top level"])
    missing_env: list[str] = []
    raw = _expand_env(raw, missing_env)
    if missing_env:
        raise ConfigError(
            [f"environment variable {name} is not set (the config refers to ${{{name}}})" for name in sorted(set(missing_env))]
        )
    raw.setdefault("base_dir", str(PROJECT_ROOT))
    try:
        return PipelineConfig.model_validate(raw)
    except ValidationError as exc:
        # Report the filter's unknown fields too, so one --check lists every problem.
        raise ConfigError(_format_validation_error(exc) + _raw_filter_problems(raw)) from None


_ENV_RE = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)\}")


def _expand_env(value: Any, missing: list[str]) -> Any:
    """Replace ${NAME} in strings with the environment's value (non-secret settings only)."""
    if isinstance(value, dict):
        return {k: _expand_env(v, missing) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, missing) for v in value]
    if isinstance(value, str):
        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in os.environ:
                missing.append(name)
                return match.group(0)
            return os.environ[name]

        return _ENV_RE.sub(replace, value)
    return value


def _raw_filter_problems(raw: dict[str, Any]) -> list[str]:
    """Filter fields missing from a source, read from a config that did not validate."""
    conditions = (raw.get("period_filter") or {}).get("conditions") or []
    sources = raw.get("sources") or {}

    def walk(items: list[Any]) -> list[str]:
        found: list[str] = []
        for item in items if isinstance(items, list) else []:
            if isinstance(item, dict) and "group" in item:
                found.extend(walk(item["group"]))
            elif isinstance(item, dict) and isinstance(item.get("field"), str):
                found.append(item["field"])
        return found

    problems = []
    for name in SOURCES:
        source = sources.get(name) if isinstance(sources, dict) else None
        event_time = (source or {}).get("event_time") or DEFAULT_EVENT_TIME[name]
        if event_time is None:
            continue
        for field in walk(conditions):
            mapped = event_time if field == "created_at" else field
            if mapped not in FIELDS[name]:
                problems.append(f"period_filter: field {field!r} does not exist in source {name!r}")
    return problems


def _condition_fields(items: list[Condition | Group]) -> list[str]:
    fields: list[str] = []
    for item in items:
        if isinstance(item, Group):
            fields.extend(_condition_fields(item.group))
        else:
            fields.append(item.field)
    return fields


def filter_field_for(config: PipelineConfig, source: str, field: str) -> str:
    """The seed filters on `created_at`; per source that means its event time (SPEC §4)."""
    event_time = config.event_time(source)
    return event_time if field == "created_at" and event_time else field


def resolve_period(config: PipelineConfig, period: str | None) -> Period:
    text = period or config.period
    if text is None:
        return Period.containing_yesterday(config.timezone)
    return Period.parse(text, config.timezone)


def check_config(config: PipelineConfig, period: str | None = None) -> list[str]:
    """Cross-field checks; every problem, not just the first."""
    problems: list[str] = []
    try:
        resolve_period(config, period)
    except PeriodError as exc:
        problems.append(f"period: {exc}")
    try:
        from zoneinfo import ZoneInfo

        ZoneInfo(config.timezone)
    except Exception:
        problems.append(f"timezone: {config.timezone!r} is not an IANA time zone")
    if config.reporting_currency not in config.currency_rates:
        problems.append(
            f"currency_rates: no rate for the reporting currency {config.reporting_currency}"
        )
    for name, source in config.sources.items():
        known = set(FIELDS[name])
        for canonical in source.column_map:
            if canonical not in known:
                problems.append(
                    f"sources.{name}.column_map: {canonical!r} is not a field of {name} "
                    f"(fields: {', '.join(sorted(known))})"
                )
        event_time = config.event_time(name)
        if event_time is not None and event_time not in known:
            problems.append(f"sources.{name}.event_time: {event_time!r} is not a field of {name}")
        if event_time is None:
            continue  # a dimension: the period filter does not apply
        for field in _condition_fields(config.period_filter.conditions):
            mapped = filter_field_for(config, name, field)
            if mapped not in known:
                problems.append(
                    f"period_filter: field {field!r} does not exist in source {name!r} "
                    f"(fields: {', '.join(sorted(known))})"
                )
    return problems


def load_and_check(path: str | Path, period: str | None = None) -> PipelineConfig:
    """Load, then run every check; raise one ConfigError with all problems."""
    try:
        config = load_config(path)
    except ConfigError:
        raise
    problems = check_config(config, period)
    if problems:
        raise ConfigError(problems)
    return config
