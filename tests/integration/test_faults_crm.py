"""CRM API faults through the whole flow: the pipeline survives what is transient and fails
clearly on what is not, and never loses or doubles a record.

The CRM is the stand-in on loopback, serving the small demo's crm.db through a saved
`CrmApiCredentials` block (the production wiring), in pages of 20 (~80 July interactions:
5 pages), with a scripted `FaultPlan`: each script entry is the answer to one request, in
order (None = a normal answer). Survivable faults must give byte-identical outputs to a
clean run of the same data; fatal ones must fail the run with the URL and page in the
message and deliver nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from demo.crm_server import Fault, FaultPlan
from tasks.extract_api import MalformedPageError, PaginationError
from tasks.staging import SUFFIX
from tests.fixtures.crm import crm_with_block
from tests.fixtures.pipeline import (
    LABEL,
    assert_nothing_lost,
    clean_baseline,
    config_dict,
    csv_hashes,
    csv_path,
    read_csv_rows,
    run_flow,
    shared_demo,
    sqlite_tables,
    write_config,
)

pytestmark = pytest.mark.integration


def _pages(server) -> list[str]:  # type: ignore[no-untyped-def]
    """The page numbers the stand-in was asked for, in order ('?' for cursor requests)."""
    return [log.query.get("page", "?") for log in server.requests]


def _assert_survived(tmp_path: Path) -> None:
    """Same bytes as the clean run, and every source's row accounting as in the clean run."""
    baseline = clean_baseline()
    table = assert_nothing_lost(tmp_path / "out")
    assert table == baseline.accounting  # no interaction lost or read twice
    assert csv_hashes(tmp_path / "out") == baseline.hashes


def _assert_nothing_delivered(tmp_path: Path) -> None:
    assert not csv_path(tmp_path / "out", "customer_performance").exists()
    assert f"customer_performance_{LABEL}" not in sqlite_tables(tmp_path / "analytics.db")
    # The failed extract wrote no partial raw frame that a rerun could pick up.
    assert not list((tmp_path / "staging").rglob(f"raw_interactions{SUFFIX}"))


@pytest.fixture
def config(tmp_path: Path, prefect_harness: None) -> dict:
    clean_baseline()  # computed once per process, before any fault
    return config_dict(tmp_path, shared_demo())


# --- survivable: transient faults -------------------------------------------------------


def test_a_read_timeout_mid_run_is_retried_and_the_outputs_match_a_clean_run(
    tmp_path: Path, config: dict
) -> None:
    # Page 2 answers after 4 s; the block's client gives up after 1 s and asks again.
    plan = FaultPlan([None, Fault("slow", delay_seconds=4.0)])
    with crm_with_block(shared_demo() / "crm.db", config, faults=plan, timeout_seconds=1.0) as crm:
        run_flow(write_config(tmp_path, config))
    assert [log.fault for log in crm.requests[:2]] == [None, "slow"]
    assert _pages(crm)[:3] == ["1", "2", "2"]  # the slow page, then its retry
    _assert_survived(tmp_path)


def test_a_connection_reset_mid_page_is_retried_and_the_outputs_match_a_clean_run(
    tmp_path: Path, config: dict
) -> None:
    # Page 2's connection is reset (TCP RST) before any byte of the answer.
    plan = FaultPlan([None, "reset"])
    with crm_with_block(shared_demo() / "crm.db", config, faults=plan) as crm:
        run_flow(write_config(tmp_path, config))
    assert _pages(crm)[:3] == ["1", "2", "2"]
    _assert_survived(tmp_path)


def test_a_5xx_burst_longer_than_the_client_retries_is_survived_by_the_task_retry(
    tmp_path: Path, config: dict
) -> None:
    # Page 2 fails five times in a row (500, 502, 503, 500, 503): the client's five attempts
    # run out, the extract task fails as transient, Prefect retries the task, and the retry
    # reads every page again from page 1. The raw frame is written only once all pages are
    # in, so the pages of the failed attempt are neither kept nor counted twice.
    plan = FaultPlan([None, "500", "502", "503", "500", "503"])
    with crm_with_block(shared_demo() / "crm.db", config, faults=plan) as crm:
        run_flow(write_config(tmp_path, config))
    pages = _pages(crm)
    assert pages[:6] == ["1", "2", "2", "2", "2", "2"]
    assert pages[6] == "1"  # the task retry starts over
    _assert_survived(tmp_path)


def test_429_with_retry_after_is_honoured_and_the_outputs_match_a_clean_run(
    tmp_path: Path, config: dict
) -> None:
    # Page 3 is rate-limited twice (Retry-After: 1), then answered.
    plan = FaultPlan([None, None, Fault("429", retry_after="1"), Fault("429", retry_after="1")])
    with crm_with_block(shared_demo() / "crm.db", config, faults=plan) as crm:
        run_flow(write_config(tmp_path, config))
    statuses = [(log.query.get("page"), log.status) for log in crm.requests[:5]]
    assert statuses == [("1", 200), ("2", 200), ("3", 429), ("3", 429), ("3", 200)]
    _assert_survived(tmp_path)


# --- not survivable: the run fails clearly and delivers nothing -------------------------


def test_a_page_of_invalid_json_fails_the_run_naming_url_and_page(
    tmp_path: Path, config: dict
) -> None:
    plan = FaultPlan([None, "invalid_json"])
    with crm_with_block(shared_demo() / "crm.db", config, faults=plan) as crm:
        with pytest.raises(MalformedPageError, match=r"page 2") as failure:
            run_flow(write_config(tmp_path, config))
    assert "/interactions" in str(failure.value)
    # Not retried: the same bytes would come back; one request per page, no retry storm.
    assert _pages(crm) == ["1", "2"]
    _assert_nothing_delivered(tmp_path)


def test_a_page_of_the_wrong_shape_fails_the_run_naming_url_and_page(
    tmp_path: Path, config: dict
) -> None:
    # 'data' is an object, not a list of records.
    plan = FaultPlan(["wrong_shape"])
    with crm_with_block(shared_demo() / "crm.db", config, faults=plan) as crm:
        with pytest.raises(MalformedPageError, match=r"page 1") as failure:
            run_flow(write_config(tmp_path, config))
    assert "/interactions" in str(failure.value)
    assert _pages(crm) == ["1"]
    _assert_nothing_delivered(tmp_path)


def test_a_cursor_that_never_ends_fails_at_the_page_cap_instead_of_looping(
    tmp_path: Path, config: dict
) -> None:
    # Every answer hands out a brand-new cursor and data: without a cap this never stops.
    plan = FaultPlan(rate=1.0, kinds=("endless",))
    with crm_with_block(
        shared_demo() / "crm.db", config, faults=plan, pagination="cursor", max_pages=6
    ) as crm:
        with pytest.raises(PaginationError, match="max_pages=6"):
            run_flow(write_config(tmp_path, config))
    assert len(crm.requests) == 7  # six pages accepted, the seventh refused; never retried
    _assert_nothing_delivered(tmp_path)


# --- an empty first page is not an error ------------------------------------------------


def test_an_empty_first_page_completes_with_zero_interactions_accounted(
    tmp_path: Path, config: dict
) -> None:
    # The CRM has nothing for July: the first page is empty and says total 0.
    with crm_with_block(shared_demo() / "crm.db", config, records=[]) as crm:
        run_flow(write_config(tmp_path, config))
    assert _pages(crm) == ["1"]
    table = assert_nothing_lost(tmp_path / "out")
    assert table["interactions"] == {"rows_in": 0, "rows_used": 0, "rows_quarantined": 0}
    baseline = clean_baseline().accounting
    # The other sources are untouched by the CRM having nothing.
    assert table["customers"] == baseline["customers"]
    assert table["transactions"] == baseline["transactions"]
    rows = read_csv_rows(csv_path(tmp_path / "out", "customer_performance"))
    assert len(rows) == baseline["customers"]["rows_used"]
    assert {row["interaction_count"] for row in rows} == {"0"}
