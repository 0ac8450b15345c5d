"""The REST fetcher's pure parts: retry arithmetic, Retry-After, paths, column mapping."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from email.utils import formatdate

import pytest

from tasks.extract_api import (
    MIN_RETRY_WAIT_SECONDS,
    format_instant,
    is_retryable_status,
    lookup,
    parse_retry_after,
    retry_wait,
    to_frame,
)

pytestmark = pytest.mark.unit

NOW = 1_750_000_000.0  # a fixed clock for HTTP-date arithmetic


@pytest.mark.parametrize(("value", "expected"), [
    ("7", 7.0),  # delta-seconds
    ("0", 0.0),  # zero is a valid answer; retry_wait raises it to the minimum
    (formatdate(NOW + 30, usegmt=True), 30.0),  # an HTTP-date 30 s ahead
    (formatdate(NOW - 30, usegmt=True), 0.0),  # a date in the past: no extra wait
    ("soon", None),  # unreadable: fall back to the backoff
    ("", None),
    (None, None),
])
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == expected


def test_retry_wait_doubles_per_attempt_with_jitter_around_it() -> None:
    # jitter 0.5 is the midpoint of the ±50 % band: exactly base x 2^(attempt-1).
    assert [retry_wait(n, 0.5, None, jitter=lambda: 0.5) for n in (1, 2, 3)] == [0.5, 1.0, 2.0]
    # The band's ends: 50 % and 150 % of the 1.0 s second attempt.
    assert retry_wait(2, 0.5, None, jitter=lambda: 0.0) == 0.5
    assert retry_wait(2, 0.5, None, jitter=lambda: 1.0) == 1.5


def test_retry_wait_honours_retry_after_and_never_hot_loops() -> None:
    assert retry_wait(1, 0.5, 7.0, jitter=lambda: 0.5) == 7.0  # the server asked for more
    assert retry_wait(3, 0.5, 0.1, jitter=lambda: 0.5) == 2.0  # our backoff is longer
    # Retry-After: 0 with no backoff configured still waits the floor.
    assert retry_wait(1, 0.0, 0.0, jitter=lambda: 0.0) == MIN_RETRY_WAIT_SECONDS > 0


@pytest.mark.parametrize(("status", "retry"), [
    (408, True), (429, True), (500, True), (502, True), (503, True), (504, True),
    (400, False), (401, False), (403, False), (404, False), (422, False),
    (501, False), (505, False),  # the server says it never will
])
def test_only_transient_statuses_are_retried(status: int, retry: bool) -> None:
    assert is_retryable_status(status) is retry


def test_format_instant_sends_utc() -> None:
    assert format_instant(datetime(2025, 7, 1)) == "2025-07-01T00:00:00Z"  # naive = UTC
    berlin_summer = timezone(timedelta(hours=2))
    assert format_instant(datetime(2025, 7, 1, tzinfo=berlin_summer)) == "2025-06-30T22:00:00Z"


def test_lookup_follows_dotted_paths() -> None:
    body = {"result": {"items": [1]}, "data": []}
    assert lookup(body, "result.items") == [1]
    assert lookup(body, "data") == []
    assert lookup([1, 2], "$") == [1, 2]
    missing = lookup(body, "result.rows")
    assert missing is lookup(body, "nope")  # the same 'missing' marker, never None
    assert missing is not None


def test_to_frame_maps_api_fields_to_canonical_names() -> None:
    records = [
        # contact_id is the customer; the API's own 'customer_id' is something else and loses.
        {"contact_id": "C1", "customer_id": "legacy-9", "kind": "call"},
        # a record without 'kind': stays null, as the API gave it
        {"contact_id": "C2", "customer_id": "legacy-8"},
    ]
    frame = to_frame(records, {"customer_id": "contact_id", "interaction_type": "kind"},
                     fields=["customer_id", "interaction_type", "duration"])
    assert list(frame.columns) == ["customer_id", "interaction_type", "duration"]
    assert list(frame["customer_id"]) == ["C1", "C2"]
    assert frame["interaction_type"].iloc[0] == "call" and frame["interaction_type"].isna().iloc[1]
    assert frame["duration"].isna().all()  # asked for, absent from the API: a null column


def test_to_frame_keeps_unmapped_fields_after_the_requested_ones() -> None:
    frame = to_frame([{"b": 1, "a": 2}], {}, fields=["a"])
    assert list(frame.columns) == ["a", "b"]
    assert list(to_frame([], {}, fields=["a", "b"]).columns) == ["a", "b"]
