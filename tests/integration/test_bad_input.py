"""The bad-input corpus through the whole pipeline (tests/fixtures/corpus.py lists every row
with its reason and expected fate): each row is either handled by a documented rule or
quarantined, and the quality report accounts for every input row.

The corpus is mostly defects, so completeness is far below 95 %: the config downgrades that
threshold to a warning, otherwise the run would (rightly) stop before delivering anything.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.corpus import (
    CORPUS,
    FORMULA_NAME,
    LONG_TEXT,
    UNICODE_NAME,
    expected_accounting,
    expected_quarantine,
    write_corpus,
)
from tests.fixtures.pipeline import (
    LABEL,
    assert_nothing_lost,
    config_dict,
    csv_path,
    read_csv_rows,
    run_flow,
    write_config,
)

pytestmark = pytest.mark.integration


def _corpus_config(workdir: Path, data: Path) -> Path:
    config = config_dict(workdir, data)
    config["demo_data"] = None  # the corpus is the data: nothing is generated
    config["quality"]["completeness"] = {"minimum": 0.95, "action": "warn"}
    return write_config(workdir, config)


def _quarantine(workdir: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(workdir / "analytics.db") as connection:
        connection.row_factory = sqlite3.Row
        rows = connection.execute(f'SELECT * FROM "data_quality_issues_{LABEL}"').fetchall()
    connection.close()
    return [dict(row) for row in rows]


@pytest.fixture(scope="module")
def corpus_run(tmp_path_factory: pytest.TempPathFactory, prefect_harness: None) -> Path:
    workdir = tmp_path_factory.mktemp("corpus")
    run_flow(_corpus_config(workdir, write_corpus(workdir / "sources")))
    return workdir


@pytest.fixture(scope="module")
def performance(corpus_run: Path) -> dict[str, dict[str, str]]:
    rows = read_csv_rows(csv_path(corpus_run / "out", "customer_performance"))
    return {row["customer_id"]: row for row in rows}


def test_every_input_row_is_used_or_quarantined_as_the_corpus_says(corpus_run: Path) -> None:
    table = assert_nothing_lost(corpus_run / "out")
    expected = expected_accounting()
    assert {source: table[source] for source in expected} == expected


def test_each_quarantined_row_is_filed_under_the_rule_it_breaks(corpus_run: Path) -> None:
    quarantine = _quarantine(corpus_run)
    assert Counter((q["source"], q["rule"]) for q in quarantine) == expected_quarantine()
    # Where a row has an id, the right row went to the right rule (duplicates share an id,
    # so those are checked by count above).
    filed = {(q["source"], q["row_id"]): q["rule"] for q in quarantine}
    ids = Counter((row.source, row.row_id) for row in CORPUS)
    for row in CORPUS:
        if (
            row.expect.startswith("q:")
            and row.row_id is not None
            and ids[(row.source, row.row_id)] == 1
        ):
            assert filed[(row.source, row.row_id)] == row.expect[2:], row.reason


def test_quarantined_rows_keep_their_original_values(corpus_run: Path) -> None:
    # T02's amount was '12,50': the quarantine keeps that text, not a null.
    record = next(q["record"] for q in _quarantine(corpus_run) if q["row_id"] == "T02")
    assert '"amount":"12,50"' in record.replace(" ", "")


def test_float_ids_join_their_customer(performance: dict[str, dict[str, str]]) -> None:
    # Customer 17850.0; orders T10 ('17850') and T11 (17850.0), 100 USD each; interaction I08.
    row = performance["17850"]
    assert (row["transaction_count"], float(row["total_revenue"]), row["interaction_count"]) == (
        "2",
        200.0,
        "1",
    )
    assert not any(key.endswith(".0") for key in performance)


def test_documented_defaults_and_case_folding(performance: dict[str, dict[str, str]]) -> None:
    # K002: quantities -2, 0 and 'N/A' each become the default 1 -> 3 orders, quantity 3,
    # 300 USD; its region etc. were null -> 'unknown'; five interactions (I10 'CALL', I11
    # 'video', I14, I15 with an offset, and one without an id).
    k002 = performance["K002"]
    assert (k002["transaction_count"], k002["total_quantity"], float(k002["total_revenue"])) == (
        "3",
        "3",
        300.0,
    )
    assert (k002["region"], k002["country"], k002["state"]) == ("unknown",) * 3
    assert k002["interaction_count"] == "5"
    # K004: 'eur' -> EUR at 1.08 (108) + a null currency as USD (100) = 208.
    assert float(performance["K004"]["total_revenue"]) == pytest.approx(208.0)
    # K010: 'COMPLETED' counts as completed (100); the -20 refund is not revenue; ' ACTIVE '.
    k010 = performance["K010"]
    assert (k010["transaction_count"], float(k010["total_revenue"]), k010["status"]) == (
        "1",
        100.0,
        "active",
    )
    # K009: discount 'N/A' and tax '12,50' default to 0 -> 2 x 100.
    assert float(performance["K009"]["total_revenue"]) == 200.0
    # K011: the first T12 (40) counts, the duplicate (45) does not.
    assert float(performance["K011"]["total_revenue"]) == 40.0


def test_error_rules_null_the_value_and_keep_the_row(
    performance: dict[str, dict[str, str]],
) -> None:
    # K001: I01-I06 all count; satisfaction 'N/A', 9 and 0 are nulled, so the mean is over
    # I01, I05, I06 (4 each) = 4.0.
    k001 = performance["K001"]
    assert (k001["interaction_count"], float(k001["avg_satisfaction"])) == ("6", 4.0)
    # Malformed e-mails are nulled (K005's IDN domain, K010's 'N/A'); a unicode local part
    # on an ASCII domain is kept (K004).
    assert performance["K005"]["email"] == "" and performance["K010"]["email"] == ""
    assert performance["K004"]["email"] == "zoë@example.com"


def test_dates_out_of_range_do_not_break_the_metrics(
    performance: dict[str, dict[str, str]],
) -> None:
    # K008 logged in 'in 2100': 0 days since, not negative; engagement stays within 0-100.
    k008 = performance["K008"]
    assert k008["days_since_last_login"] == "0"
    assert 0.0 <= float(k008["engagement_score"]) <= 100.0
    assert k008["registration_date"] == ""  # year 1 is no timestamp: nulled, reported
    assert k008["transaction_count"] == "0"  # all of its orders were quarantined


def test_a_far_past_order_neither_blanks_nor_skews_the_clv(
    performance: dict[str, dict[str, str]],
) -> None:
    # K001's orders: T01 (2025-07-10, 100 USD) and T09 (dated year 1, which no timestamp can
    # hold: it is placed in no period and no history). CLV = 100 / max(1, 21.5 days /
    # 30.4375) x 24 = 100 x 24 = 2400. Had T09 counted, the year-1 'first order' would make
    # the lifetime ~24,000 months and the CLV ~0; had it blanked first_order_at, CLV null.
    assert float(performance["K001"]["clv"]) == 2400.0
    # 17850: T10 + T11 on 2025-07-10, 200 USD over the same single month: 4800.
    assert float(performance["17850"]["clv"]) == 4800.0


def test_text_arrives_intact_and_formulas_inert(performance: dict[str, dict[str, str]]) -> None:
    assert performance["K004"]["name"] == UNICODE_NAME
    assert performance["K005"]["name"] == LONG_TEXT
    assert performance["K006"]["name"] == "New Name"  # the newer duplicate wins
    assert performance["K009"]["name"] == "'" + FORMULA_NAME


def test_the_report_names_the_defects(corpus_run: Path) -> None:
    report = read_csv_rows(csv_path(corpus_run / "out", "data_quality_report"))
    failed = {
        (r["source"], r["rule"]): int(r["failed"])
        for r in report
        if r["failed"] not in ("", None)
        and r["rule"] not in ("completeness", "accuracy", "duplicates", "quarantined")
    }
    # Error and warning findings are reported even though their rows are used.
    assert failed[("customers", "email_format")] == 2  # K005 (IDN domain), K010 ('N/A')
    assert failed[("transactions", "quantity_min")] == 2  # T13 (-2), T14 (0)
    assert failed[("transactions", "quantity_type")] == 1  # T28 ('N/A')
    assert failed[("interactions", "satisfaction_range")] == 2  # I03 (9), I04 (0)
    assert failed[("customers", "status_allowed")] == 1  # K011 'zombie'


def test_empty_sources_complete_with_empty_outputs(tmp_path: Path, prefect_harness: None) -> None:
    # Every source has its table and no row: a run must deliver empty outputs, not crash.
    workdir = tmp_path
    run_flow(_corpus_config(workdir, write_corpus(workdir / "sources", rows=())))
    table = assert_nothing_lost(workdir / "out")
    assert all(
        row == {"rows_in": 0, "rows_used": 0, "rows_quarantined": 0} for row in table.values()
    )
    assert read_csv_rows(csv_path(workdir / "out", "customer_performance")) == []
