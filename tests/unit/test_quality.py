"""Validation, cleansing, the quality report and its thresholds (SPEC §5).

Each fixture row breaks exactly the rule named in its comment (or none); expected counts
are worked out from those comments, not read back from the implementation.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tasks.config import QualityConfig, QualityThreshold
from tasks.period import Period
from tasks.quality import ValidationOutcome, validate_metrics, validate_source
from tasks.quality_report import (
    AccountingError,
    assert_accounting,
    build_report,
    check_thresholds,
    summary_value,
)
from tasks.settings import CANONICAL_DTYPES, QUALITY_REPORT_COLUMNS

pytestmark = pytest.mark.unit

JULY = Period(2025, 7)
RATES = {"USD": Decimal("1"), "EUR": Decimal("1.08")}
KNOWN = pd.Series(["C1", "C2"], dtype="string")


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


def validate(source: str, rows: list[dict[str, Any]], known: pd.Series | None = KNOWN) -> ValidationOutcome:
    return validate_source(
        source, stg_frame(source, rows), known_customer_ids=known, period=JULY, rates=RATES,
        reporting_currency="USD", revenue_statuses=["completed"], sample_values=3,
    )


def failed_by_rule(outcome: ValidationOutcome) -> dict[str, int]:
    return {r: int(n) for r, n in zip(outcome.results["rule"], outcome.results["failed"], strict=True) if n}


def quarantined_rules(outcome: ValidationOutcome) -> dict[int, str]:
    return dict(zip(outcome.quarantine["_row"].tolist(), outcome.quarantine["rules"].tolist(), strict=True))


def tx(row: int, **fields: Any) -> dict[str, Any]:
    """A valid July transaction (distinct amount and day per row) with `fields` changed."""
    base = {"transaction_id": f"T{row}", "customer_id": "C1",
            "order_date": f"2025-07-{row % 28 + 1:02d}T12:00:00Z", "amount": 100.0 + row,
            "currency": "USD", "product_category": "books", "quantity": 1, "payment_method": "card",
            "status": "completed", "discount_applied": 0.0, "tax_amount": 1.0}
    return base | fields


TRANSACTIONS = [
    tx(0, quantity=2, discount_applied=10.0, tax_amount=8.0),  # valid, untouched
    tx(1, currency=None, quantity=None, discount_applied=None, tax_amount=None),  # valid: defaults
    tx(2, transaction_id="T0"),  # duplicate_transaction_id (T0 seen at row 0)
    tx(3, transaction_id=None),  # transaction_id_required
    tx(4, customer_id=None),  # customer_id_required
    tx(5, amount=None, amount__invalid="abc"),  # amount_type + amount_required
    tx(6, amount=None),  # amount_required
    tx(7, order_date="2025-08-01T00:00:00Z"),  # order_date_in_period (end is exclusive)
    tx(8, currency="XYZ"),  # currency_known
    tx(9, amount=0.0),  # amount_positive (completed counts as revenue)
    tx(10, amount=-20.0, status="refunded", discount_applied=None),  # amount_positive_non_revenue: kept
    tx(11, customer_id="C99"),  # orphan_customer_id
    tx(12, quantity=0),  # quantity_min: nulled, then default 1
    tx(13, discount_applied=-5.0),  # discount_non_negative: nulled, then 0
    tx(14, amount=100.0, discount_applied=150.0),  # discount_within_amount: nulled, then 0
    tx(15, tax_amount=-1.0),  # tax_non_negative: nulled, then 0
    tx(16, quantity=None, quantity__invalid="two"),  # quantity_type: default 1
    tx(17, status="shipped"),  # status_allowed (warning): kept as is
    tx(0, quantity=2, discount_applied=10.0, tax_amount=8.0, transaction_id="T18"),  # suspected_duplicate: row 0's content, another id
    tx(19, customer_id="C99", currency="XYZ"),  # currency_known + orphan_customer_id
    tx(20, currency="eur", status=" COMPLETED "),  # valid once normalised (EUR, completed)
]


@pytest.fixture(scope="module")
def transactions() -> ValidationOutcome:
    return validate("transactions", TRANSACTIONS)


def test_transaction_rules_count_exactly_the_planted_defects(transactions: ValidationOutcome) -> None:
    assert failed_by_rule(transactions) == {
        "duplicate_transaction_id": 1, "transaction_id_required": 1, "customer_id_required": 1,
        "amount_type": 1, "amount_required": 2, "order_date_in_period": 1, "currency_known": 2,
        "amount_positive": 1, "amount_positive_non_revenue": 1, "orphan_customer_id": 2,
        "quantity_min": 1, "discount_non_negative": 1, "discount_within_amount": 1,
        "tax_non_negative": 1, "quantity_type": 1, "status_allowed": 1, "suspected_duplicate": 1,
    }
    results = transactions.results.set_index("rule")
    # currency is null on row 1 only: 20 of 21 rows are evaluated, 2 fail -> 10 %.
    assert results.loc["currency_known", ["evaluated", "failed_pct"]].tolist() == [20, 10.0]
    assert results.loc["amount_type", "sample_values"] == "abc"  # the unparseable text
    assert results.loc["orphan_customer_id", "sample_values"] == "C99"
    assert results.loc["order_date_in_period", "sample_values"] == "2025-08-01T00:00:00Z"
    assert results.loc["transaction_id_required", "sample_values"] == "_row=3"  # it has no id
    assert results.loc["duplicate_transaction_id", "severity"] == "critical"
    assert list(transactions.results.columns) == list(QUALITY_REPORT_COLUMNS)


def test_critical_rows_are_quarantined_with_every_rule_they_broke(transactions: ValidationOutcome) -> None:
    assert quarantined_rules(transactions) == {
        2: "duplicate_transaction_id", 3: "transaction_id_required", 4: "customer_id_required",
        5: "amount_type;amount_required", 6: "amount_required", 7: "order_date_in_period",
        8: "currency_known", 9: "amount_positive", 11: "orphan_customer_id",
        19: "currency_known;orphan_customer_id",
    }
    row_5 = transactions.quarantine.set_index("_row").loc[5]
    assert (row_5["rule"], row_5["column"], row_5["row_id"]) == ("amount_type", "amount", "T5")
    # The record keeps what the source said, not the null it was typed to.
    assert json.loads(row_5["record"])["amount"] == "abc"
    assert pd.isna(transactions.quarantine.set_index("_row").loc[3, "row_id"])


def test_rows_in_equal_rows_used_plus_quarantined(transactions: ValidationOutcome) -> None:
    # 21 rows; 10 quarantined (rows 2-9, 11, 19); the other 11 are used.
    assert (transactions.rows_in, transactions.rows_used, transactions.rows_quarantined) == (21, 11, 10)
    assert len(transactions.clean) == 11 and len(transactions.quarantine) == 10


def test_error_values_are_nulled_then_defaults_filled(transactions: ValidationOutcome) -> None:
    clean = transactions.clean.set_index("_row")
    assert clean.loc[1, ["currency", "quantity", "discount_applied", "tax_amount"]].tolist() == ["USD", 1, 0.0, 0.0]
    assert clean.loc[12, "quantity"] == 1  # was 0
    assert clean.loc[16, "quantity"] == 1  # was "two"
    assert clean.loc[13, "discount_applied"] == 0.0  # was -5
    assert clean.loc[14, "discount_applied"] == 0.0  # was 150 on an amount of 100
    assert clean.loc[15, "tax_amount"] == 0.0  # was -1
    # Untouched values stay; warnings change nothing.
    assert clean.loc[0, ["quantity", "discount_applied", "tax_amount"]].tolist() == [2, 10.0, 8.0]
    assert clean.loc[10, "amount"] == -20.0 and clean.loc[17, "status"] == "shipped"
    assert clean.loc[20, ["currency", "status"]].tolist() == ["EUR", "completed"]
    assert not [c for c in clean.columns if c.endswith("__invalid") or c.startswith("_chk_")]
    assert str(clean["quantity"].dtype) == "Int64"


def test_accuracy_and_completeness_inputs(transactions: ValidationOutcome) -> None:
    # Failing a critical or error rule: the 10 quarantined rows + rows 12-16 (5 error rows).
    assert transactions.rows_failing == 15
    # Required cells: transaction_id, customer_id, amount on 21 rows; null: rows 3, 4, 5, 6.
    assert (transactions.required_cells, transactions.missing_required_cells) == (63, 4)
    assert transactions.duplicates == {"duplicate_transaction_id": 1, "suspected_duplicate": 1}


def test_without_known_customers_the_orphan_rule_is_skipped() -> None:
    outcome = validate("transactions", [tx(0, customer_id="C99")], known=None)
    assert "orphan_customer_id" not in set(outcome.results["rule"])
    assert outcome.rows_used == 1


def test_customer_rules() -> None:
    base = {"name": "Ada", "email": "ada@example.com", "status": "active", "segment": "retail",
            "registration_date": "2024-01-01T00:00:00Z", "updated_at": "2025-06-01T00:00:00Z"}
    rows = [
        base | {"customer_id": "C1"},  # valid; region/country/state null -> "unknown"
        base | {"customer_id": "C2", "name": "Bo", "email": None},  # email_required (error): kept
        base | {"customer_id": "C3", "name": "Cy", "email": "not-an-email"},  # email_format: nulled
        base | {"customer_id": None, "name": "Di"},  # customer_id_required
        base | {"customer_id": "C4", "name": "Ed"},  # duplicate_customer_id: older than row 5
        base | {"customer_id": "C4", "name": "Ed", "updated_at": "2025-07-01T00:00:00Z"},  # kept
        base | {"customer_id": "C6", "name": "Fa", "status": "Frozen"},  # status_allowed (warning)
        base | {"customer_id": "C7", "name": "Gu", "registration_date": None,
                "registration_date__invalid": "31/02/2025"},  # registration_date_type (error)
        base | {"customer_id": "C8"},  # suspected_duplicate: row 0's content under another id
    ]
    outcome = validate("customers", rows, known=None)
    assert failed_by_rule(outcome) == {
        "email_required": 1, "email_format": 1, "customer_id_required": 1,
        "duplicate_customer_id": 1, "status_allowed": 1, "registration_date_type": 1,
        "suspected_duplicate": 1,
    }
    assert quarantined_rules(outcome) == {3: "customer_id_required", 4: "duplicate_customer_id"}
    clean = outcome.clean.set_index("_row")
    assert sorted(clean.index) == [0, 1, 2, 5, 6, 7, 8]
    assert pd.isna(clean.loc[2, "email"])  # malformed -> null, the customer stays
    assert clean.loc[0, ["region", "country", "state", "segment"]].tolist() == ["unknown", "unknown", "unknown", "retail"]
    assert clean.loc[6, "status"] == "frozen"
    # Rows failing a critical or error rule: 1, 2, 3, 4, 7.
    assert outcome.rows_failing == 5
    # Required cells: customer_id and email on 9 rows; null: row 3's id, row 1's email.
    assert (outcome.required_cells, outcome.missing_required_cells) == (18, 2)


def test_interaction_rules() -> None:
    base = {"customer_id": "C1", "interaction_type": "call", "interaction_date": "2025-07-03T10:00:00Z",
            "duration": 120.0, "satisfaction_score": 4.0, "resolution_status": "resolved"}
    rows = [
        base | {"interaction_id": "I1"},  # valid
        base | {"interaction_id": "I2", "customer_id": None},  # customer_id_required
        base | {"interaction_id": "I3", "customer_id": "C99"},  # orphan_customer_id
        base | {"interaction_id": "I4", "satisfaction_score": 7.0},  # satisfaction_range: nulled
        base | {"interaction_id": "I5", "duration": -30.0},  # duration_non_negative: nulled
        base | {"interaction_id": "I1", "duration": 60.0},  # duplicate_interaction_id
        base | {"interaction_id": "I6", "interaction_type": "fax", "duration": 61.0},  # interaction_type_allowed
        base | {"interaction_id": "I7", "satisfaction_score": None,
                "satisfaction_score__invalid": "great"},  # satisfaction_score_type: kept
        base | {"interaction_id": "I8"},  # suspected_duplicate of row 0
        base | {"interaction_id": None, "customer_id": "C2"},  # valid: no id is not a defect
        base | {"interaction_id": "I10", "interaction_date": "2025-06-30T23:59:59Z"},  # interaction_date_in_period
    ]
    outcome = validate("interactions", rows)
    assert failed_by_rule(outcome) == {
        "customer_id_required": 1, "orphan_customer_id": 1, "satisfaction_range": 1,
        "duration_non_negative": 1, "duplicate_interaction_id": 1, "interaction_type_allowed": 1,
        "satisfaction_score_type": 1, "suspected_duplicate": 1, "interaction_date_in_period": 1,
    }
    assert quarantined_rules(outcome) == {
        1: "customer_id_required", 2: "orphan_customer_id", 5: "duplicate_interaction_id",
        10: "interaction_date_in_period",
    }
    clean = outcome.clean.set_index("_row")
    assert pd.isna(clean.loc[3, "satisfaction_score"]) and pd.isna(clean.loc[4, "duration"])
    assert clean.loc[0, ["duration", "satisfaction_score"]].tolist() == [120.0, 4.0]
    assert (outcome.rows_in, outcome.rows_used, outcome.rows_quarantined) == (11, 7, 4)


def test_an_empty_source_validates_to_empty_frames() -> None:
    outcome = validate("interactions", [])
    assert (outcome.rows_in, outcome.rows_used, outcome.rows_quarantined) == (0, 0, 0)
    assert outcome.results["success"].all() and outcome.quarantine.empty


def test_metrics_suite_reports_inconsistent_figures() -> None:
    metrics = pd.DataFrame(
        {
            "customer_id": ["C1", "C2", "C2"],  # C2 twice: customer_id_unique fails on both rows
            "transaction_count": [2, 1, 0],
            "total_revenue": [100.0, 10.0, 0.0],
            "avg_order_value": [40.0, 10.0, None],  # C1: 100 / 2 is 50, not 40
            "total_quantity": [2, 1, 0],
            "interaction_count": [1, 0, 0],
            "ticket_count": [1, 0, 0],
            "open_tickets": [2, 0, 0],  # C1: 2 open of 1 ticket
            "avg_satisfaction": [3.0, None, None],
            "engagement_score": [120.0, 50.0, 0.0],  # C1: above 100
            "churn_probability": [0.5, -0.1, 0.2],  # row 2: below 0
            "activity_level": ["high", "busy", "dormant"],  # "busy" is not a level
            "customer_segment": ["vip", "regular", "regular"],
        }
    )
    report = validate_metrics(metrics)
    failed = {r: int(n) for r, n in zip(report["rule"], report["failed"], strict=True) if n}
    assert failed == {
        "customer_id_unique": 2, "avg_order_value_consistent": 1, "open_within_tickets": 1,
        "engagement_score_range": 1, "churn_probability_range": 1, "activity_level_allowed": 1,
    }
    assert report.set_index("rule").loc["avg_order_value_consistent", "sample_values"] == "C1"


# --- the report -------------------------------------------------------------------------

RUN_TIME = pd.Timestamp("2025-08-02T02:00:00Z")


@pytest.fixture(scope="module")
def report_inputs() -> dict[str, Any]:
    customers = validate("customers", [
        {"customer_id": "C1", "email": "a@example.com"},  # valid
        {"customer_id": "C2", "email": None},  # email_required (error)
        {"customer_id": "C3", "email": "c@example.com", "name": "Cy"},  # valid
    ], known=None)
    transactions = validate("transactions", [
        tx(0), tx(1, customer_id="C2"),  # valid
        tx(2, transaction_id="T0"),  # duplicate_transaction_id -> quarantined
    ])
    interactions = validate("interactions", [
        {"interaction_id": "I1", "customer_id": "C1", "interaction_date": "2025-07-04T00:00:00Z"},
        {"interaction_id": "I2", "customer_id": "C2", "interaction_date": "2025-07-05T00:00:00Z"},
    ])
    # The period filter set one transaction aside: its order_date did not parse.
    filter_quarantine = pd.DataFrame({
        "source": ["transactions"], "row_id": ["T9"], "_row": [3], "rule": ["event_time_missing"],
        "rules": ["event_time_missing"], "column": ["order_date"], "severity": ["critical"],
        "record": [json.dumps({"transaction_id": "T9", "order_date": None,
                               "order_date__invalid": "not a date"})],
    })
    return {
        "outcomes": [customers, transactions, interactions],
        "filter_quarantine": filter_quarantine,
        # extracted = validated + set aside by the filter: 3, 3 + 1, 2
        "extracted_counts": {"customers": 3, "transactions": 4, "interactions": 2},
    }


@pytest.fixture(scope="module")
def report(report_inputs: dict[str, Any]) -> pd.DataFrame:
    return build_report(
        **report_inputs, run_time=RUN_TIME,
        freshness_inputs={"customers": pd.Timestamp("2025-08-01T02:00:00Z"),  # 24 h before
                          "transactions": pd.Timestamp("2025-07-31T20:00:00Z"),  # 30 h before
                          "interactions": None},
    )


def summary(report: pd.DataFrame, source: str, rule: str) -> pd.Series:
    return report[(report["source"] == source) & (report["rule"] == rule)].iloc[0]


def test_report_has_the_contract_columns_and_the_filter_rows(report: pd.DataFrame) -> None:
    assert list(report.columns) == list(QUALITY_REPORT_COLUMNS)
    missing = summary(report, "transactions", "event_time_missing")
    # 1 of the 4 extracted transactions had no usable order_date.
    assert (missing["failed"], missing["evaluated"], missing["failed_pct"]) == (1, 4, 25.0)
    assert missing["sample_values"] == "not a date" and missing["severity"] == "critical"
    assert summary(report, "interactions", "event_time_missing")["failed"] == 0
    assert not ((report["source"] == "customers") & (report["rule"] == "event_time_missing")).any()


def test_report_summary_figures(report: pd.DataFrame) -> None:
    # customers: 6 required cells (id, email x 3), 1 null -> 5/6; row C2 fails an error rule.
    assert summary_value(summary(report, "customers", "completeness")) == pytest.approx(5 / 6)
    assert summary_value(summary(report, "customers", "accuracy")) == pytest.approx(2 / 3)
    # transactions: 4 rows in, the duplicate and the filtered row fail -> 2/4.
    assert summary_value(summary(report, "transactions", "accuracy")) == pytest.approx(0.5)
    assert summary(report, "transactions", "quarantined")["sample_values"] == (
        "rows_in=4; rows_used=2; rows_quarantined=2")
    assert summary(report, "transactions", "duplicates")["failed"] == 1
    # all: 6 + 9 + 2 required cells, 1 null -> 16/17; 9 rows, 3 failing -> 6/9.
    assert summary_value(summary(report, "all", "completeness")) == pytest.approx(16 / 17)
    assert summary_value(summary(report, "all", "accuracy")) == pytest.approx(6 / 9)
    assert summary(report, "all", "quarantined")["sample_values"] == (
        "rows_in=9; rows_used=7; rows_quarantined=2")
    assert summary_value(summary(report, "customers", "freshness_hours")) == 24.0
    assert summary_value(summary(report, "interactions", "freshness_hours")) is None
    assert summary_value(summary(report, "all", "freshness_hours")) == 30.0  # the stalest source


def test_accounting_must_hold(report_inputs: dict[str, Any]) -> None:
    assert_accounting(**report_inputs)  # holds: 3 = 3 + 0, 4 = 2 + 2, 2 = 2 + 0
    broken = dict(report_inputs, extracted_counts={"customers": 3, "transactions": 5, "interactions": 2})
    with pytest.raises(AccountingError, match=r"transactions: 5 rows extracted but 2 used \+ 2 quarantined"):
        assert_accounting(**broken)


def test_default_thresholds_fail_on_completeness_and_warn_on_accuracy(report: pd.DataFrame) -> None:
    breaches = check_thresholds(report, QualityConfig())
    found = {(b.source, b.rule, b.action) for b in breaches}
    # completeness < 0.95: customers 5/6 and all 16/17; accuracy < 0.90: customers, transactions, all.
    assert found == {
        ("customers", "completeness", "fail"), ("all", "completeness", "fail"),
        ("customers", "accuracy", "warn"), ("transactions", "accuracy", "warn"), ("all", "accuracy", "warn"),
    }
    completeness = next(b for b in breaches if (b.source, b.rule) == ("all", "completeness"))
    assert completeness.threshold == 0.95 and completeness.value == pytest.approx(16 / 17)
    assert "completeness" in completeness.message and "16 of 17" in completeness.message


def test_freshness_and_rule_thresholds(report: pd.DataFrame) -> None:
    quality = QualityConfig(
        completeness=QualityThreshold(minimum=0.5, action="fail"),
        accuracy=QualityThreshold(minimum=0.4, action="warn"),
        freshness_hours=QualityThreshold(maximum=26, action="warn"),
        # duplicate_transaction_id: 1 of 3 validated transactions -> 33.33 %
        rule_max_failure_pct={"duplicate_transaction_id": QualityThreshold(maximum=10, action="fail")},
    )
    found = {(b.source, b.rule, b.action, round(b.value, 2)) for b in check_thresholds(report, quality)}
    assert found == {
        ("transactions", "freshness_hours", "warn", 30.0), ("all", "freshness_hours", "warn", 30.0),
        ("transactions", "duplicate_transaction_id", "fail", 33.33),
    }


def test_no_breach_when_every_figure_is_within_its_threshold(report: pd.DataFrame) -> None:
    lenient = QualityConfig(completeness=QualityThreshold(minimum=0.8, action="fail"),
                            accuracy=QualityThreshold(minimum=0.5, action="warn"))
    assert check_thresholds(report, lenient) == []
