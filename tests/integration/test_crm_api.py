"""The REST extract against the CRM stand-in: real HTTP on loopback, faults injected.

Every wait the fetcher asks for is recorded by a fake `sleep` instead of slept, so retries
cost no time; timeouts are real (a 0.2 s client timeout against a 1 s answer).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from pydantic import SecretStr, ValidationError

from blocks.crm_api import CrmApiCredentials
from demo.crm_server import CrmStandIn, Fault, FaultPlan
from tasks.config import Pagination, RestSource
from tasks.extract_api import (
    MIN_RETRY_WAIT_SECONDS,
    ApiError,
    MalformedPageError,
    PaginationError,
    TransientApiError,
    fetch_records,
    is_transient,
)
from tasks.settings import INTERACTION_FIELDS

pytestmark = pytest.mark.integration

TOKEN = "s3cret-token"


def _record(interaction_id: str, date: str, **extra: Any) -> dict[str, Any]:
    return {"interaction_id": interaction_id, "customer_id": "C000001", "interaction_type": "call",
            "interaction_date": date, "duration": 60, "satisfaction_score": 4, **extra}


# Listed out of order on purpose: the stand-in must page in (date, id) order.
RECORDS = [
    _record("I05", "2025-07-20 16:45:00"),  # inside July
    _record("I01", "2025-06-30 23:59:59"),  # one second before July: outside [start, ...
    _record("I07", "2025-08-01 00:00:00"),  # exactly the end: outside ..., end)
    _record("I02", "2025-07-01 00:00:00"),  # exactly the start: inside
    _record("I03", "2025-07-10 09:00:00"),  # inside
    _record("I08", "2025-07-1x 10:00:00"),  # garbled date: in no range, skipped by the stand-in
    _record("I06", "2025-07-31 23:59:59"),  # the last second of July: inside
    _record("I04", "2025-07-15 12:30:00"),  # inside
]
JULY_IDS = ["I02", "I03", "I04", "I05", "I06"]  # in date order
JULY_START, JULY_END = datetime(2025, 7, 1), datetime(2025, 8, 1)


def _credentials(server: CrmStandIn, **overrides: Any) -> CrmApiCredentials:
    fields: dict[str, Any] = {"base_url": server.base_url, "auth_kind": "bearer",
                              "token": SecretStr(TOKEN), "timeout_seconds": 5.0}
    return CrmApiCredentials(**{**fields, **overrides})


def _fetch(server: CrmStandIn, waits: list[float] | None = None, *, style: str = "page",
           page_size: int = 2, credentials: CrmApiCredentials | None = None,
           start: datetime = JULY_START, end: datetime = JULY_END, max_attempts: int = 5,
           **source: Any) -> Any:
    max_pages = source.pop("max_pages", 100)
    pagination = Pagination(style=style, page_size=page_size, max_pages=max_pages)
    rest = RestSource(demo=True, pagination=pagination, **source)
    with (credentials or _credentials(server)).get_client() as client:
        sleep = (waits if waits is not None else []).append
        return fetch_records(client, rest, start, end, sleep=sleep, max_attempts=max_attempts,
                             fields=INTERACTION_FIELDS)


# --- pagination -------------------------------------------------------------------------

@pytest.mark.parametrize(("style", "requests"), [
    ("page", 3),  # pages of 2, 2, 1; total_pages=3 says no 4th request is needed
    ("offset", 3),  # offsets 0, 2, 4; total=5 ends it
    ("cursor", 3),  # the third page's next_cursor is null
    ("link", 3),  # the third page has no rel="next"
    ("none", 1),  # everything at once
])
def test_every_pagination_style_returns_the_range_exactly_once(style: str, requests: int) -> None:
    with CrmStandIn(RECORDS, token=TOKEN, pagination=style) as server:
        frame = _fetch(server, style=style)
    assert list(frame["interaction_id"]) == JULY_IDS
    assert len(server.requests) == requests


@pytest.mark.parametrize("style", ["page", "offset"])
def test_without_totals_paging_stops_on_the_first_empty_page(style: str) -> None:
    with CrmStandIn(RECORDS, token=TOKEN, pagination=style, totals=False) as server:
        frame = _fetch(server, style=style)
    assert list(frame["interaction_id"]) == JULY_IDS
    assert len(server.requests) == 4  # pages of 2, 2, 1, then an empty one


def test_empty_first_page_gives_an_empty_frame_with_the_canonical_columns() -> None:
    with CrmStandIn(RECORDS, token=TOKEN, totals=False) as server:
        frame = _fetch(server, start=datetime(2024, 1, 1), end=datetime(2024, 2, 1))
    assert frame.empty
    assert tuple(frame.columns) == INTERACTION_FIELDS
    assert len(server.requests) == 1


def test_page_cap_is_an_error_not_a_silent_truncation() -> None:
    # 5 July records in pages of 1 need 5 pages; a cap of 3 must fail on the 4th non-empty page.
    with CrmStandIn(RECORDS, token=TOKEN) as server:
        with pytest.raises(PaginationError, match="max_pages=3"):
            _fetch(server, page_size=1, max_pages=3)
    assert len(server.requests) == 4


@pytest.mark.parametrize(("style", "requests"), [
    ("cursor", 2),  # page 1 hands out a cursor; page 2 hands out the same one again
    ("link", 1),  # page 1's next link is page 1 itself
])
def test_a_repeating_cursor_or_link_stops_instead_of_looping(style: str, requests: int) -> None:
    plan = FaultPlan(rate=1.0, kinds=("repeat_cursor",))
    with CrmStandIn(RECORDS, token=TOKEN, pagination=style, faults=plan) as server:
        with pytest.raises(PaginationError, match="again|already followed"):
            _fetch(server, style=style)
    assert len(server.requests) == requests


def test_a_never_ending_cursor_is_stopped_by_the_page_cap() -> None:
    plan = FaultPlan(rate=1.0, kinds=("endless",))  # a new cursor every time, data every time
    with CrmStandIn(RECORDS, token=TOKEN, pagination="cursor", faults=plan) as server:
        with pytest.raises(PaginationError, match="max_pages=4"):
            _fetch(server, style="cursor", max_pages=4)
    assert len(server.requests) == 5


def test_a_next_link_to_another_host_is_refused() -> None:
    # The client is configured for 'localhost'; the stand-in's links name 127.0.0.1.
    with CrmStandIn(RECORDS, token=TOKEN, pagination="link") as server:
        local = _credentials(server, base_url=server.base_url.replace("127.0.0.1", "localhost"))
        with pytest.raises(PaginationError, match="refusing to send credentials"):
            _fetch(server, style="link", credentials=local)


# --- date range -------------------------------------------------------------------------

def test_the_stand_in_filters_half_open_and_accepts_dates_datetimes_and_offsets() -> None:
    with CrmStandIn(RECORDS, token=TOKEN, pagination="none") as server:
        headers = {"Authorization": f"Bearer {TOKEN}"}

        def ids(start: str, end: str) -> list[str]:
            response = httpx.get(f"{server.base_url}/interactions", headers=headers,
                                 params={"start_date": start, "end_date": end})
            return [r["interaction_id"] for r in response.json()["data"]]

        assert ids("2025-07-01", "2025-08-01") == JULY_IDS
        # 02:00 at +02:00 is midnight UTC: the same range.
        assert ids("2025-07-01T02:00:00+02:00", "2025-08-01T00:00:00Z") == JULY_IDS
        # One second later at both ends: I02 drops out, I07 comes in.
        assert ids("2025-07-01 00:00:01", "2025-08-01 00:00:01") == [*JULY_IDS[1:], "I07"]
        bad = httpx.get(f"{server.base_url}/interactions", headers=headers,
                        params={"start_date": "July"})
        assert bad.status_code == 400


def test_a_tz_aware_range_is_sent_in_utc() -> None:
    # [2025-07-01 02:00 +02:00, 2025-08-01 02:00 +02:00) is July in UTC.
    plus_two = timezone(timedelta(hours=2))
    with CrmStandIn(RECORDS, token=TOKEN) as server:
        frame = _fetch(server, start=datetime(2025, 7, 1, 2, tzinfo=plus_two),
                       end=datetime(2025, 8, 1, 2, tzinfo=plus_two))
    assert list(frame["interaction_id"]) == JULY_IDS
    assert server.requests[0].query["start_date"] == "2025-07-01T00:00:00Z"


def test_column_map_renames_api_fields_to_canonical_names() -> None:
    # An API that calls the customer 'contact_id' and the date 'created'.
    renamed = [{"interaction_id": r["interaction_id"], "contact_id": f"C-{r['interaction_id']}",
                "created": r["interaction_date"]} for r in RECORDS]
    with CrmStandIn(renamed, token=TOKEN, date_field="created") as server:
        mapping = {"customer_id": "contact_id", "interaction_date": "created"}
        frame = _fetch(server, column_map=mapping)
    assert list(frame["customer_id"]) == [f"C-{i}" for i in JULY_IDS]
    assert frame["interaction_date"].iloc[0] == "2025-07-01 00:00:00"  # as the API gave it
    assert "contact_id" not in frame.columns and "created" not in frame.columns


# --- auth -------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["bearer", "api_key", "basic"])
def test_every_auth_kind_accepts_the_right_credential(kind: str) -> None:
    with CrmStandIn(RECORDS, token=TOKEN, auth=kind, username="etl", password="pa55") as server:
        credentials = _credentials(server, auth_kind=kind, username="etl",
                                   password=SecretStr("pa55"))
        frame = _fetch(server, credentials=credentials)
    assert list(frame["interaction_id"]) == JULY_IDS


@pytest.mark.parametrize("kind", ["bearer", "api_key", "basic"])
def test_a_wrong_credential_fails_at_once_without_retry(kind: str) -> None:
    waits: list[float] = []
    with CrmStandIn(RECORDS, token=TOKEN, auth=kind, username="etl", password="pa55") as server:
        wrong = _credentials(server, auth_kind=kind, token=SecretStr("wrong"), username="etl",
                             password=SecretStr("wrong"))
        with pytest.raises(ApiError, match="HTTP 401") as caught:
            _fetch(server, waits, credentials=wrong)
    assert caught.value.status == 401 and not is_transient(caught.value)
    assert len(server.requests) == 1 and waits == []


def test_a_missing_credential_is_401_and_a_wrong_path_is_404_both_unretried() -> None:
    with CrmStandIn(RECORDS, token=TOKEN) as server:
        with httpx.Client(base_url=server.base_url) as anonymous:
            rest = RestSource(demo=True)
            with pytest.raises(ApiError, match="HTTP 401"):
                fetch_records(anonymous, rest, JULY_START, JULY_END, sleep=pytest.fail)
        with pytest.raises(ApiError, match="HTTP 404") as caught:
            _fetch(server, path="/nope")
    assert caught.value.status == 404
    assert len(server.requests) == 2


# --- retries ----------------------------------------------------------------------------

def test_503_then_success_retries_once() -> None:
    waits: list[float] = []
    with CrmStandIn(RECORDS, token=TOKEN, faults=FaultPlan(["503"])) as server:
        frame = _fetch(server, waits)
    assert list(frame["interaction_id"]) == JULY_IDS
    assert len(waits) == 1 and waits[0] >= MIN_RETRY_WAIT_SECONDS
    assert [r.status for r in server.requests] == [503, 200, 200, 200]


def test_429_retry_after_seconds_is_honoured() -> None:
    waits: list[float] = []
    plan = FaultPlan([None, Fault("429", retry_after="7")])  # page 2 is rate-limited once
    with CrmStandIn(RECORDS, token=TOKEN, faults=plan) as server:
        frame = _fetch(server, waits)
    assert list(frame["interaction_id"]) == JULY_IDS
    assert len(waits) == 1 and waits[0] >= 7  # the backoff (0.25-0.75 s) is shorter: 7 wins
    assert server.requests[1].query["page"] == server.requests[2].query["page"] == "2"


def test_429_retry_after_http_date_is_honoured() -> None:
    waits: list[float] = []
    plan = FaultPlan([Fault("429", retry_after_in=30)])  # an HTTP-date 30 s ahead (1 s resolution)
    with CrmStandIn(RECORDS, token=TOKEN, faults=plan) as server:
        _fetch(server, waits)
    assert len(waits) == 1 and 28 <= waits[0] <= 31


def test_retry_after_zero_still_waits_a_minimum() -> None:
    waits: list[float] = []
    plan = FaultPlan([Fault("429", retry_after="0")] * 3)
    with CrmStandIn(RECORDS, token=TOKEN, faults=plan) as server:
        _fetch(server, waits)
    assert len(waits) == 3 and min(waits) >= MIN_RETRY_WAIT_SECONDS > 0


def test_a_retry_after_beyond_the_limit_fails_instead_of_sleeping_for_an_hour() -> None:
    waits: list[float] = []
    plan = FaultPlan([Fault("429", retry_after="3600")])
    with CrmStandIn(RECORDS, token=TOKEN, faults=plan) as server:
        with pytest.raises(TransientApiError, match="asks to wait 3600 s"):
            _fetch(server, waits)
    assert waits == [] and len(server.requests) == 1  # the task's own retry comes back later


def test_timeout_and_connection_reset_are_retried() -> None:
    waits: list[float] = []
    plan = FaultPlan([Fault("slow", delay_seconds=1.0), "reset"])
    with CrmStandIn(RECORDS, token=TOKEN, faults=plan) as server:
        frame = _fetch(server, waits, credentials=_credentials(server, timeout_seconds=0.2))
    assert list(frame["interaction_id"]) == JULY_IDS
    assert len(waits) == 2


def test_a_failure_that_outlasts_every_attempt_is_transient() -> None:
    waits: list[float] = []
    with CrmStandIn(RECORDS, token=TOKEN, faults=FaultPlan(rate=1.0, kinds=("502",))) as server:
        with pytest.raises(TransientApiError, match="after 3 attempts: HTTP 502") as caught:
            _fetch(server, waits, max_attempts=3)
    assert is_transient(caught.value)
    assert len(server.requests) == 3 and len(waits) == 2


def test_random_faults_still_deliver_every_record_exactly_once() -> None:
    plan = FaultPlan(rate=0.4, kinds=("500", "503", "429", "reset"), seed=3)
    with CrmStandIn(RECORDS, token=TOKEN, pagination="cursor", faults=plan) as server:
        frame = _fetch(server, style="cursor", max_attempts=10)
    assert list(frame["interaction_id"]) == JULY_IDS
    assert any(r.fault for r in server.requests)  # the plan did inject faults


# --- malformed pages --------------------------------------------------------------------

def test_an_invalid_json_page_names_the_url_and_page() -> None:
    with CrmStandIn(RECORDS, token=TOKEN, faults=FaultPlan([None, "invalid_json"])) as server:
        with pytest.raises(MalformedPageError, match="not valid JSON") as caught:
            _fetch(server)
    message = str(caught.value)
    assert "page 2" in message and f"{server.base_url}/interactions" in message
    assert len(server.requests) == 2  # not retried


def test_a_wrong_shape_page_is_an_error() -> None:
    with CrmStandIn(RECORDS, token=TOKEN, faults=FaultPlan(["wrong_shape"])) as server:
        with pytest.raises(MalformedPageError, match="page 1 .*'data' is not a list"):
            _fetch(server)


def test_a_missing_records_path_is_an_error() -> None:
    with CrmStandIn(RECORDS, token=TOKEN) as server:
        with pytest.raises(MalformedPageError, match="no records at 'items'"):
            _fetch(server, records_path="items")


# --- the block --------------------------------------------------------------------------

def test_block_never_shows_its_secrets() -> None:
    block = CrmApiCredentials(base_url="https://crm.example.com", token=SecretStr(TOKEN))
    basic = CrmApiCredentials(base_url="https://crm.example.com", auth_kind="basic",
                              username="etl", password=SecretStr(TOKEN))
    for shown in (repr(block), str(block), block.model_dump_json(), repr(basic), str(basic)):
        assert TOKEN not in shown


@pytest.mark.parametrize(("url", "allowed"), [
    ("https://crm.example.com", True),
    ("http://127.0.0.1:8765", True),  # loopback: never leaves the machine
    ("http://localhost:8765", True),
    ("http://[::1]:8765", True),
    ("http://crm.example.com", False),  # a token in clear text over a network
    ("ftp://crm.example.com", False),
])
def test_block_refuses_plain_http_to_a_remote_host(url: str, allowed: bool) -> None:
    if allowed:
        CrmApiCredentials(base_url=url, token=SecretStr(TOKEN))
    else:
        with pytest.raises(ValidationError):
            CrmApiCredentials(base_url=url, token=SecretStr(TOKEN))


def test_block_allows_plain_http_only_when_told_and_needs_its_credential() -> None:
    CrmApiCredentials(base_url="http://crm.example.com", token=SecretStr(TOKEN),
                      allow_insecure_http=True)
    with pytest.raises(ValidationError, match="needs a token"):
        CrmApiCredentials(base_url="https://crm.example.com", auth_kind="api_key")
    with pytest.raises(ValidationError, match="username and a password"):
        CrmApiCredentials(base_url="https://crm.example.com", auth_kind="basic", username="etl")
