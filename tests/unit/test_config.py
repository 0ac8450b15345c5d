"""Config is rejected before data moves, with every problem named (SPEC §4, §10)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tasks.config import ConfigError
from tasks.config_file import load_and_check, load_config
from tasks.preflight import preflight

pytestmark = pytest.mark.unit

DEMO = Path(__file__).resolve().parents[2] / "config" / "demo.yaml"


def _write(tmp_path: Path, mutate) -> Path:  # type: ignore[no-untyped-def]
    raw = yaml.safe_load(DEMO.read_text())
    mutate(raw)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_demo_config_is_valid() -> None:
    config = load_and_check(DEMO)
    assert config.period == "2025-07"
    assert config.event_time("transactions") == "order_date"
    assert config.event_time("customers") is None  # the dimension is not date-filtered


def test_check_names_unknown_operator_missing_field_and_bad_period_at_once(tmp_path: Path) -> None:
    def mutate(raw: dict) -> None:
        raw["period"] = "2025-13"
        raw["period_filter"]["conditions"].append({"field": "region", "operator": "roughly", "value": "x"})
        raw["period_filter"]["conditions"].append({"field": "no_such_field", "operator": "equals", "value": "x"})

    problems = preflight(str(_write(tmp_path, mutate)), None)
    text = "\n".join(problems)
    assert "period" in text and "2025-13" in text
    assert "roughly" in text or "operator" in text
    assert "no_such_field" in text


def test_bad_cli_period_is_reported(tmp_path: Path) -> None:
    problems = preflight(str(DEMO), "July")
    assert any("period" in p and "July" in p for p in problems)


def test_password_in_url_is_refused(tmp_path: Path) -> None:
    def mutate(raw: dict) -> None:
        raw["sources"]["customers"]["connection"] = {"url": "postgresql://etl:s3cret@db/crm"}

    with pytest.raises(ConfigError) as error:
        load_config(_write(tmp_path, mutate))
    assert "sources.customers" in str(error.value)
    assert "s3cret" not in str(error.value)


@pytest.mark.parametrize("table", ["customers; DROP TABLE x", "a b", "t--", "x.y.z"])
def test_table_names_must_be_plain_identifiers(tmp_path: Path, table: str) -> None:
    def mutate(raw: dict) -> None:
        raw["sources"]["customers"]["table"] = table

    with pytest.raises(ConfigError) as error:
        load_config(_write(tmp_path, mutate))
    assert "sources.customers" in str(error.value)


def test_column_map_to_unknown_field_is_named(tmp_path: Path) -> None:
    def mutate(raw: dict) -> None:
        raw["sources"]["transactions"]["column_map"] = {"amout": "total"}

    with pytest.raises(ConfigError) as error:
        load_and_check(_write(tmp_path, mutate))
    assert "amout" in str(error.value)


def test_env_placeholders_must_be_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REPORT_RECIPIENTS", raising=False)

    def mutate(raw: dict) -> None:
        raw["destinations"]["email"]["recipients"] = "${REPORT_RECIPIENTS}"

    with pytest.raises(ConfigError) as error:
        load_config(_write(tmp_path, mutate))
    assert "REPORT_RECIPIENTS" in str(error.value)
    monkeypatch.setenv("REPORT_RECIPIENTS", "a@example.com, b@example.com")
    assert load_config(_write(tmp_path, mutate)).destinations.email.recipients == ["a@example.com", "b@example.com"]


def test_engagement_weights_must_sum_to_one(tmp_path: Path) -> None:
    def mutate(raw: dict) -> None:
        raw["metrics"] = {"engagement_weights": {"login": 0.5, "interactions": 0.5, "satisfaction": 0.5, "purchases": 0}}

    with pytest.raises(ConfigError) as error:
        load_config(_write(tmp_path, mutate))
    assert "metrics.engagement_weights" in str(error.value)


def test_cli_check_exits_non_zero_naming_every_problem(tmp_path: Path) -> None:
    """`python flows/main.py --check` as a user runs it: readable reasons, exit status 2."""
    import subprocess
    import sys

    def mutate(raw: dict) -> None:
        raw["period"] = "2025-13"
        raw["period_filter"]["conditions"].append({"field": "region", "operator": "roughly", "value": "x"})
        raw["period_filter"]["conditions"].append({"field": "no_such_field", "operator": "equals", "value": "x"})

    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, str(root / "flows" / "main.py"), "--check", "--config", str(_write(tmp_path, mutate))],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert "2025-13" in result.stdout and "roughly" in result.stdout and "no_such_field" in result.stdout
    assert result.stdout.strip().splitlines()[-1].startswith("config check failed")
