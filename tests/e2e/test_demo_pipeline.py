"""The whole pipeline on a small generated demo, through Prefect (issues 2 and 4).

One module-scoped run of July 2025 (plus a second identical run and a June run) on a
600-customer demo; the tests then read its outputs. Expected defect counts come from the
generator's own manifest (defects.json), not from the pipeline.
"""

from __future__ import annotations

import json
import sqlite3
from decimal import ROUND_HALF_UP, Decimal
from email import message_from_bytes
from pathlib import Path

import pandas as pd
import pytest

from tasks.settings import (
    CUSTOMER_PERFORMANCE_COLUMNS,
    QUALITY_REPORT_COLUMNS,
    REGIONAL_SUMMARY_COLUMNS,
)
from tasks.staging import SUFFIX, read_frame
from tests.e2e.demo_configs import demo_config

pytestmark = [pytest.mark.e2e]

CUSTOMERS = 600

# defect kind in demo/generate.py -> (source, rule) in the quality report
DEFECT_RULES = {
    "missing_email": ("customers", "email_required"),
    "malformed_email": ("customers", "email_format"),
    "duplicate_transaction_id": ("transactions", "duplicate_transaction_id"),
    "negative_amount": ("transactions", "amount_positive"),
    "unknown_currency": ("transactions", "currency_known"),
    "orphan_transaction_customer": ("transactions", "orphan_customer_id"),
    "unparseable_order_date": ("transactions", "event_time_missing"),
    "orphan_interaction_customer": ("interactions", "orphan_customer_id"),
    "satisfaction_out_of_range": ("interactions", "satisfaction_range"),
}


@pytest.fixture(scope="module")
def demo_runs(tmp_path_factory: pytest.TempPathFactory, prefect_harness: None) -> dict[str, object]:
    from flows.main import customer_performance

    folder = tmp_path_factory.mktemp("demo")
    first = demo_config(folder, "out1", CUSTOMERS)
    # same data and analytics DB, other output folder
    second = demo_config(folder, "out2", CUSTOMERS, lambda raw: raw["destinations"]["analytics"].update(
        connection={"url": f"sqlite:///{folder / 'out1.db'}"}))
    july = customer_performance(period="2025-07", config_path=str(first))
    july_again = customer_performance(period="2025-07", config_path=str(second))
    june = customer_performance(period="2025-06", config_path=str(first))
    return {"folder": folder, "july": july, "july_again": july_again, "june": june}


def _out(demo_runs: dict, name: str, output: str = "out1") -> Path:
    return Path(demo_runs["folder"]) / output / name  # type: ignore[arg-type]


def _staged(demo_runs: dict, run: str, name: str) -> pd.DataFrame:
    summary = demo_runs[run]
    folder = Path(demo_runs["folder"]) / "staging" / "customer-performance" / summary["period"] / summary["run_id"]
    return read_frame(folder / f"{name}{SUFFIX}")


def test_outputs_exist_with_stable_columns(demo_runs: dict) -> None:
    for name, columns in [
        ("customer_performance_july2025.csv", CUSTOMER_PERFORMANCE_COLUMNS),
        ("regional_summary_july2025.csv", REGIONAL_SUMMARY_COLUMNS),
        ("data_quality_report_july2025.csv", QUALITY_REPORT_COLUMNS),
    ]:
        frame = pd.read_csv(_out(demo_runs, name))
        assert tuple(frame.columns) == columns, name
        assert len(frame) > 0
    assert len(pd.read_csv(_out(demo_runs, "customer_performance_july2025.csv"))) == CUSTOMERS
    html = _out(demo_runs, "dashboard_july2025.html").read_text()
    assert "<html" in html.lower() and "https://" not in html and "http://" not in html


def test_june_run_writes_june_files(demo_runs: dict) -> None:
    june = pd.read_csv(_out(demo_runs, "customer_performance_june2025.csv"))
    assert set(june["period"]) == {"2025-06"}
    assert _out(demo_runs, "regional_summary_june2025.csv").exists()


def test_email_in_outbox_carries_the_three_csvs(demo_runs: dict) -> None:
    emails = list(_out(demo_runs, "outbox").glob("*.eml"))
    july = [e for e in emails if "july2025" in e.name]
    assert len(july) == 1
    message = message_from_bytes(july[0].read_bytes())
    attached = {part.get_filename(): part.get_payload(decode=True) for part in message.walk() if part.get_filename()}
    for name in ("customer_performance_july2025.csv", "regional_summary_july2025.csv", "data_quality_report_july2025.csv"):
        assert attached[name] == _out(demo_runs, name).read_bytes()


def test_analytics_tables_exist_and_a_rerun_replaces_rows(demo_runs: dict) -> None:
    with sqlite3.connect(Path(demo_runs["folder"]) / "out1.db") as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"customer_performance_july2025", "regional_summary_july2025", "performance_trends_july2025",
                "data_quality_issues_july2025", "customer_performance_june2025"} <= tables
        # July was loaded twice (two runs): the period holds each customer once.
        (count,) = db.execute("SELECT count(*) FROM customer_performance_july2025").fetchone()
        (in_view,) = db.execute("SELECT count(*) FROM customer_performance WHERE period = '2025-07'").fetchone()
    assert count == in_view == CUSTOMERS


def test_two_runs_give_identical_csvs(demo_runs: dict) -> None:
    for name in ("customer_performance_july2025.csv", "regional_summary_july2025.csv", "data_quality_report_july2025.csv"):
        assert _out(demo_runs, name).read_bytes() == _out(demo_runs, name, "out2").read_bytes(), name


def test_revenue_adds_up_across_outputs(demo_runs: dict) -> None:
    performance = pd.read_csv(_out(demo_runs, "customer_performance_july2025.csv"))
    regional = pd.read_csv(_out(demo_runs, "regional_summary_july2025.csv"))
    customer_total = Decimal(str(round(performance["total_revenue"].sum(), 2)))
    for dimension, rows in regional.groupby("dimension"):
        total = Decimal(str(round(rows["revenue"].sum(), 2)))
        if dimension == "product_category":
            # A category's revenue is summed exactly over its transactions, then rounded;
            # it cannot be built from per-customer rounded figures, so the two totals may
            # differ by rounding only: at most half a cent per customer and per category.
            tolerance = Decimal("0.005") * (len(performance) + len(rows))
            assert abs(total - customer_total) <= tolerance, dimension
        else:  # geography and segment partition the customers: the cents add up exactly
            assert total == customer_total, dimension
        assert rows["revenue_share"].sum() == pytest.approx(1.0, abs=1e-9), dimension


def test_kpis_are_computed_from_clean_rows_only(demo_runs: dict) -> None:
    """Revenue recomputed independently (Decimal) from the validated rows equals the KPI."""
    transactions = _staged(demo_runs, "july", "transactions")
    quarantine = _staged(demo_runs, "july", "quarantine")
    rates = {"USD": Decimal("1"), "EUR": Decimal("1.08"), "GBP": Decimal("1.27"), "CAD": Decimal("0.73"), "AUD": Decimal("0.66")}
    completed = transactions[transactions["status"] == "completed"]
    expected = sum(
        (Decimal(str(a)) - Decimal(str(d))) * rates[c]
        for a, d, c in zip(completed["amount"], completed["discount_applied"], completed["currency"], strict=True)
    )
    performance = pd.read_csv(_out(demo_runs, "customer_performance_july2025.csv"))
    assert performance["transaction_count"].sum() == len(completed)
    per_customer = sum(Decimal(str(v)) for v in performance["total_revenue"])
    # Each customer's revenue is rounded half-up to cents, so the sum may differ from the
    # unrounded total by at most half a cent per buyer.
    assert abs(per_customer - expected.quantize(Decimal("0.01"), ROUND_HALF_UP)) <= Decimal("0.005") * completed["customer_id"].nunique()
    # quarantined transactions are nowhere among the counted rows
    quarantined_rows = set(quarantine.loc[quarantine["source"] == "transactions", "_row"])
    assert quarantined_rows.isdisjoint(set(transactions["_row"]))
    assert transactions["transaction_id"].is_unique


def test_each_injected_defect_is_reported_with_its_exact_count(demo_runs: dict) -> None:
    manifest = json.loads((Path(demo_runs["folder"]) / "demo" / "defects.json").read_text())["defects"]
    report = pd.read_csv(_out(demo_runs, "data_quality_report_july2025.csv"))
    for kind, (source, rule) in DEFECT_RULES.items():
        entry = manifest[kind]
        if source == "customers":  # the dimension is not date-filtered: every customer counts
            expected = entry["count"]
        else:
            expected = sum(1 for month in entry["months"] if month == "2025-07")
        row = report[(report["source"] == source) & (report["rule"] == rule)]
        assert len(row) == 1, (source, rule)
        assert int(row["failed"].iloc[0]) == expected, (kind, rule)


def test_every_input_row_is_accounted_for(demo_runs: dict) -> None:
    report = pd.read_csv(_out(demo_runs, "data_quality_report_july2025.csv"))
    quarantined = report[report["rule"] == "quarantined"]
    for _, row in quarantined.iterrows():
        figures = dict(part.split("=") for part in row["sample_values"].split("; "))
        assert int(figures["rows_in"]) == int(figures["rows_used"]) + int(figures["rows_quarantined"]), row["source"]
