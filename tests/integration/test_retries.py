"""Task retries (SPEC §9): Prefect retries the extract task on a transient failure only.

The real `extract_source` task runs through the Prefect engine (`prefect_harness`) against
the CRM stand-in on loopback, wired through a saved `CrmApiCredentials` block as in
production. Attempts are counted twice, independently: by the task run's `run_count` on
the Prefect API and by the requests the stand-in logged.

Two layers retry a 503 (SPEC §3): the REST client repeats one page up to 5 times, then
raises `TransientApiError`; the task's `retry_condition_fn` (`tasks.retry.retry_on_transient`)
then lets Prefect run the whole task again. To keep the file fast, only the waits are
shortened (the client's backoff and the task's retry delay); the retry *decisions* are the
production ones.
"""

from __future__ import annotations

import functools
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr

from blocks.crm_api import CrmApiCredentials
from demo.crm_server import CrmStandIn, FaultPlan
from tasks import extract
from tasks.config import DEFAULT_CONFIG
from tasks.staging import StagingArea

pytestmark = pytest.mark.integration

TOKEN = "retry-test-token"  # a test credential, not a secret
PERIOD = "2025-07"
CLIENT_ATTEMPTS = 5  # fetch_records' default max_attempts: one page asked at most 5 times
RECORDS = [  # two July interactions: one page of 100 holds both, so a clean fetch is 1 request
    {
        "interaction_id": "I1",
        "customer_id": "C000001",
        "interaction_type": "call",
        "interaction_date": "2025-07-03 10:00:00",
        "duration": 60,
        "satisfaction_score": 4,
    },
    {
        "interaction_id": "I2",
        "customer_id": "C000002",
        "interaction_type": "chat",
        "interaction_date": "2025-07-20 16:45:00",
        "duration": 300,
        "satisfaction_score": 5,
    },
]


@pytest.fixture
def fast_waits(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The extract task with short waits but the production retry count and condition."""
    monkeypatch.setattr(
        extract, "fetch_records", functools.partial(extract.fetch_records, backoff_seconds=0.01)
    )
    return extract.extract_source.with_options(retry_delay_seconds=0)


def _config(tmp_path: Path, block: str, **overrides: Any) -> Path:
    """The demo config with its interactions read through `block`; paths under tmp_path."""
    config = yaml.safe_load(DEFAULT_CONFIG.read_text(encoding="utf-8"))
    config["base_dir"] = str(tmp_path)
    config["sources"]["interactions"] = {
        "kind": "rest",
        "block": block,
        "path": "/interactions",
        "records_path": "data",
        "pagination": {"style": "page", "page_size": 100},
        "date_params": {"start": "start_date", "end": "end_date"},
        "event_time": "interaction_date",
    }
    config.update(overrides)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def _save_block(server: CrmStandIn, token: str) -> str:
    name = f"crm-retry-{uuid.uuid4().hex[:10]}"
    CrmApiCredentials(
        base_url=server.base_url, auth_kind="bearer", token=SecretStr(token), timeout_seconds=5.0
    ).save(name, overwrite=True)
    return name


def _run(task: Any, config_path: Path, run_id: str) -> tuple[Any, int]:
    """Run the extract of interactions in a small flow, as the parent flow does; return the
    task's final state and its run_count as the Prefect API recorded it."""
    from prefect import flow
    from prefect.client.orchestration import get_client

    @flow(name="extract-interactions-once")
    def extract_once() -> Any:
        state = task("interactions", str(config_path), PERIOD, run_id, return_state=True)
        return {"state": state}  # wrapped: a bare State would become the flow's own state

    state = extract_once()["state"]
    with get_client(sync_client=True) as client:
        task_run = client.read_task_run(state.state_details.task_run_id)
    return state, task_run.run_count


def test_a_transient_503_is_retried_by_the_task(
    prefect_harness: None, fast_waits: Any, tmp_path: Path
) -> None:
    # The first 5 requests get 503: the client's 5 attempts at page 1 all fail, so the
    # first task attempt fails with TransientApiError; the task's second attempt gets 200.
    faults = FaultPlan(["503"] * CLIENT_ATTEMPTS)
    with CrmStandIn(RECORDS, token=TOKEN, faults=faults) as server:
        config_path = _config(tmp_path, _save_block(server, TOKEN))
        state, run_count = _run(fast_waits, config_path, run_id="transient")
    assert state.is_completed(), state.message
    assert run_count == 2  # one Prefect retry
    assert [log.status for log in server.requests] == [503] * CLIENT_ATTEMPTS + [200]
    staged = StagingArea(
        tmp_path / "output" / "staging", "customer-performance", PERIOD, "transient"
    )
    assert sorted(staged.read("raw_interactions")["interaction_id"]) == [
        "I1",
        "I2",
    ]


def test_a_401_is_not_retried(prefect_harness: None, fast_waits: Any, tmp_path: Path) -> None:
    with CrmStandIn(RECORDS, token=TOKEN) as server:
        config_path = _config(tmp_path, _save_block(server, "a-wrong-token"))
        state, run_count = _run(fast_waits, config_path, run_id="unauthorised")
    assert state.is_failed()
    assert "401" in state.message
    assert run_count == 1  # no Prefect retry (retries=3 would allow three)
    assert [log.status for log in server.requests] == [401]  # and no client retry either


def test_an_unknown_block_is_not_retried(
    prefect_harness: None, fast_waits: Any, tmp_path: Path
) -> None:
    # A typo in the config's block name: no request is ever made, and asking again will
    # not create the block.
    with CrmStandIn(RECORDS, token=TOKEN) as server:
        config_path = _config(tmp_path, f"no-such-block-{uuid.uuid4().hex[:6]}")
        state, run_count = _run(fast_waits, config_path, run_id="missing-block")
    assert state.is_failed()
    assert run_count == 1
    assert server.requests == []


def test_an_invalid_config_is_not_retried(
    prefect_harness: None, fast_waits: Any, tmp_path: Path
) -> None:
    with CrmStandIn(RECORDS, token=TOKEN) as server:
        # 'usd' is not a 3-letter upper-case currency code: a ConfigError before any I/O.
        config_path = _config(tmp_path, _save_block(server, TOKEN), currency_rates={"usd": "1"})
        state, run_count = _run(fast_waits, config_path, run_id="bad-config")
    assert state.is_failed()
    assert "currency code 'usd'" in state.message
    assert run_count == 1
    assert server.requests == []
