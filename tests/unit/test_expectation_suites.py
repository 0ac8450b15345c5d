"""The GX suites in expectations/: every one loads whole, and known-good data passes them.

GX 1.x drops an expectation of unknown type with only a log line, so a typo in a suite
would silently switch a rule off; these tests make that loud.
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tasks.gx_suites import (
    EXPECTATIONS_DIR,
    SuiteError,
    load_all_suites,
    load_suite,
    read_suite_file,
)
from tasks.period import Period
from tasks.quality import validate_metrics, validate_source
from tasks.settings import CANONICAL_DTYPES, SOURCES

pytestmark = pytest.mark.unit

JULY = Period(2025, 7)
RATES = {"USD": Decimal("1"), "EUR": Decimal("1.08")}
SUITE_FILES = sorted(EXPECTATIONS_DIR.glob("*.json"))


def stg_frame(source: str, rows: list[dict[str, Any]]) -> pd.DataFrame:
    """A typed (stg_) frame: canonical dtypes, `<col>__invalid` text where given, `_row`."""
    frame = pd.DataFrame(rows)
    for column, dtype in CANONICAL_DTYPES[source].items():
        values = frame[column] if column in frame else pd.Series([None] * len(frame))
        if dtype == "datetime":
            frame[column] = pd.to_datetime(values, utc=True).astype("datetime64[ns, UTC]")
        else:
            frame[column] = values.astype(dtype)
        if dtype != "string":
            invalid = column + "__invalid"
            given = frame[invalid] if invalid in frame else pd.Series([None] * len(frame))
            frame[invalid] = given.astype("string")
    frame["_row"] = np.arange(len(frame), dtype="int64")
    return frame


# Known-good rows: every rule of the source holds for every row.
GOOD_CUSTOMERS = [
    {"customer_id": "C1", "name": "Ada", "email": "ada@example.com", "status": "active",
     "region": "EU", "segment": "retail", "country": "DE", "state": "BE",
     "registration_date": "2024-01-05T00:00:00Z", "updated_at": "2025-07-30T10:00:00Z"},
    {"customer_id": "C2", "name": "Bo", "email": "bo.b+news@mail.example.org", "status": "inactive",
     "region": "NA", "segment": "smb", "country": "US", "state": "NY",
     "registration_date": "2023-03-01T00:00:00Z", "updated_at": "2025-07-01T00:00:00Z"},
]
GOOD_TRANSACTIONS = [
    {"transaction_id": "T1", "customer_id": "C1", "order_date": "2025-07-01T00:00:00Z",  # first instant
     "amount": 100.0, "currency": "USD", "quantity": 2, "status": "completed",
     "discount_applied": 100.0, "tax_amount": 0.0},  # discount may equal the amount
    {"transaction_id": "T2", "customer_id": "C2", "order_date": "2025-07-31T23:59:59Z",  # last second
     "amount": 12.5, "currency": "EUR", "quantity": 1, "status": "refunded",
     "discount_applied": 0.0, "tax_amount": 2.0},
]
GOOD_INTERACTIONS = [
    {"interaction_id": "I1", "customer_id": "C1", "interaction_type": "ticket",
     "interaction_date": "2025-07-02T09:00:00Z", "duration": 0.0, "satisfaction_score": 1.0},
    {"interaction_id": "I2", "customer_id": "C2", "interaction_type": "chat",
     "interaction_date": "2025-07-03T09:00:00Z", "duration": 300.0, "satisfaction_score": 5.0},
]
GOOD_FRAMES = {"customers": GOOD_CUSTOMERS, "transactions": GOOD_TRANSACTIONS,
               "interactions": GOOD_INTERACTIONS}


def good_metrics() -> pd.DataFrame:
    """Two customers whose figures are consistent (AOV 100/3 = 33.33 within a cent)."""
    return pd.DataFrame(
        {
            "customer_id": ["C1", "C2"],
            "transaction_count": pd.array([3, 0], dtype="Int64"),
            "total_revenue": [Decimal("100.00"), Decimal("0.00")],  # exact money as Decimal
            "avg_order_value": [Decimal("33.33"), None],  # null when there is no order
            "total_quantity": pd.array([4, 0], dtype="Int64"),
            "interaction_count": pd.array([2, 0], dtype="Int64"),
            "ticket_count": pd.array([1, 0], dtype="Int64"),
            "open_tickets": pd.array([1, 0], dtype="Int64"),
            "avg_satisfaction": [4.5, None],
            "engagement_score": [100.0, 0.0],
            "churn_probability": [0.0, 1.0],
            "activity_level": ["high", "dormant"],
            "customer_segment": ["vip", "regular"],
        }
    )


def test_there_is_one_suite_per_source_and_one_for_the_metrics() -> None:
    assert {p.stem for p in SUITE_FILES} == {*SOURCES, "customer_performance"}


@pytest.mark.parametrize("path", SUITE_FILES, ids=lambda p: p.stem)
def test_every_suite_loads_every_expectation(path: Path) -> None:
    in_file = json.loads(path.read_text(encoding="utf-8"))["expectations"]
    suite = load_suite(path.stem)
    assert len(suite.expectations) == len(in_file)
    assert [e.meta["rule"] for e in suite.expectations] == [e["meta"]["rule"] for e in in_file]


def test_a_suite_with_an_unknown_expectation_type_is_refused(tmp_path: Path) -> None:
    suite = {"name": "typo", "expectations": [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "a"},
         "meta": {"rule": "a_required", "severity": "critical", "category": "required"}},
        # A misspelt type: GX would drop it and log, leaving the rule switched off.
        {"type": "expect_column_values_to_be_nul", "kwargs": {"column": "b"},
         "meta": {"rule": "b_null", "severity": "error", "category": "type"}},
    ]}
    (tmp_path / "typo.json").write_text(json.dumps(suite), encoding="utf-8")
    with pytest.raises(SuiteError, match=r"loaded 1 of 2 .*b_null"):
        load_suite("typo", directory=tmp_path)


def test_loading_all_suites_up_front_names_every_suite_and_refuses_a_broken_one(tmp_path: Path) -> None:
    # The flow calls load_all_suites() before extracting: a broken suite stops the run
    # before any data moves, naming the file.
    assert load_all_suites() == sorted(p.stem for p in SUITE_FILES)
    (tmp_path / "customers.json").write_text((EXPECTATIONS_DIR / "customers.json").read_text())
    (tmp_path / "zz_broken.json").write_text(json.dumps({"name": "zz_broken", "expectations": []}))
    with pytest.raises(SuiteError, match=r"zz_broken\.json: 'expectations' must be a non-empty list"):
        load_all_suites(tmp_path)


@pytest.mark.parametrize(
    ("meta", "message"),
    [
        ({"severity": "critical", "category": "required"}, "no meta.rule"),
        ({"rule": "r", "severity": "fatal", "category": "required"}, "meta.severity"),
        ({"rule": "r", "severity": "error", "category": "misc"}, "meta.category"),
    ],
)
def test_an_expectation_without_a_usable_rule_meta_is_refused(
    tmp_path: Path, meta: dict[str, str], message: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"name": "bad", "expectations": [
        {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "a"}, "meta": meta}
    ]}), encoding="utf-8")
    with pytest.raises(SuiteError, match=message):
        read_suite_file(path)


@pytest.mark.parametrize("source", SOURCES)
def test_known_good_rows_pass_every_rule(source: str) -> None:
    outcome = validate_source(
        source, stg_frame(source, GOOD_FRAMES[source]), known_customer_ids=pd.Series(["C1", "C2"]),
        period=JULY, rates=RATES, reporting_currency="USD", revenue_statuses=["completed"],
    )
    failed = outcome.results.loc[~outcome.results["success"], "rule"].tolist()
    assert failed == []
    # One report row per rule of the suite: nothing skipped, nothing invented.
    assert outcome.results["rule"].tolist() == [e.meta["rule"] for e in load_suite(source).expectations]
    assert (outcome.rows_in, outcome.rows_used, outcome.rows_quarantined) == (2, 2, 0)


def test_known_good_metrics_pass_every_rule() -> None:
    report = validate_metrics(good_metrics())
    assert report.loc[~report["success"], "rule"].tolist() == []
    assert len(report) == len(load_suite("customer_performance").expectations)
    assert set(report["source"]) == {"customer_performance"}


def _email_regex() -> str:
    suite = json.loads((EXPECTATIONS_DIR / "customers.json").read_text())
    (rule,) = [e for e in suite["expectations"] if e["meta"]["rule"] == "email_format"]
    return rule["kwargs"]["regex"]


def test_email_format_spells_out_exactly_pythons_whitespace() -> None:
    """The local part's class lists \\s by hand (so pandas can run it in Arrow): it must
    reject exactly what Python's \\s matches, no more, no less, over every code point."""
    import re
    import sys

    local_class = re.match(r"\^\[\^@(.*?)\]\+@", _email_regex())
    assert local_class is not None
    spelled_out = re.compile(f"[{local_class.group(1)}]")
    python_space = re.compile(r"\s")
    differ = [
        hex(code) for code in range(sys.maxunicode + 1)
        if bool(spelled_out.fullmatch(chr(code))) != bool(python_space.fullmatch(chr(code)))
    ]
    assert differ == []


def test_email_format_judges_like_the_python_pattern_through_arrow() -> None:
    """pandas (Arrow RE2) with the suite's pattern == Python's re with the plain \\s one."""
    import re
    import sys

    plain = re.compile(
        r"^[^@\s]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
        r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.[A-Za-z]{2,}$"
    )
    spaces = [chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace() and chr(c) != "\n"]
    emails = [f"a{s}b@example.com" for s in [*spaces, "\u200b", "é", "+", "_"]] + [
        "ada@example.com", "bo.b+news@mail.example.org", "not-an-email", "a@b", "@example.com",
        "a@@example.com", "a@-example.com", "a@example.c", "ünï@example.com",
    ]
    expected = [plain.search(e) is not None for e in emails]
    through_arrow = pd.Series(emails, dtype="str").str.contains(_email_regex()).tolist()
    assert through_arrow == expected
    assert sum(expected) == 7  # four harmless characters, two valid addresses, one non-ASCII local part


def test_memoised_configurations_never_carry_one_validations_parameters_into_the_next() -> None:
    """run_suite builds each expectation's configuration once per validation (GX rebuilds
    it on every read). The period rule's bounds are parameters filled in per validation:
    July's rows pass in July, fail in June, and pass in July again."""

    def period_rule_failed(period: Period) -> int:
        outcome = validate_source(
            "transactions", stg_frame("transactions", GOOD_TRANSACTIONS),
            known_customer_ids=pd.Series(["C1", "C2"]), period=period, rates=RATES,
            reporting_currency="USD", revenue_statuses=["completed"],
        )
        report = outcome.results.set_index("rule")
        return int(report.loc["order_date_in_period", "failed"])

    assert [period_rule_failed(p) for p in (JULY, Period(2025, 6), JULY)] == [0, 2, 0]


def test_configurations_are_memoised_only_inside_a_validation() -> None:
    from tasks.gx_memo import configurations_memoised

    expectation = load_suite("transactions").expectations[0]
    assert expectation.configuration is not expectation.configuration  # GX's own behaviour
    with configurations_memoised():
        assert expectation.configuration is expectation.configuration
        assert expectation.configuration == load_suite("transactions").expectations[0].configuration
    assert expectation.configuration is not expectation.configuration
