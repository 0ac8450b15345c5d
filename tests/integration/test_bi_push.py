"""The BI push against a real HTTP server on 127.0.0.1 that records every request.

The server answers from a script (a list of status codes, headers, bodies, or "hang"),
so each test states what the BI API does and checks what the pipeline sent and how often.
No real sleeping: push_dashboard's `sleep` is a list's append, which also records the waits.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pandas as pd
import pytest

from blocks.bi_api import BiApiCredentials
from tasks.alerts import Alert
from tasks.bi_push import BiPushError, build_payload, idempotency_key_for, push_dashboard
from tasks.settings import (
    CUSTOMER_PERFORMANCE_COLUMNS,
    PERFORMANCE_TRENDS_COLUMNS,
    QUALITY_REPORT_COLUMNS,
    REGIONAL_SUMMARY_COLUMNS,
)

pytestmark = pytest.mark.integration

TOKEN = "bi-token-SECRET-42"
KEY = idempotency_key_for("customer-performance", "2025-07", "run-7")


@dataclass
class Reply:
    status: int = 201
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b'{"dashboard_id": "cp-2025-07"}'
    hang_seconds: float = 0.0  # answer only after this long (to make the client time out)


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class BiServer:
    """A stand-in BI API: replays scripted replies, then 201s; records every request."""

    def __init__(self) -> None:
        self.script: list[Reply] = []
        self.requests: list[Recorded] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
                length = int(self.headers.get("Content-Length", 0))
                server.requests.append(
                    Recorded("POST", self.path, dict(self.headers.items()), self.rfile.read(length))
                )
                reply = server.script.pop(0) if server.script else Reply()
                if reply.hang_seconds:
                    time.sleep(reply.hang_seconds)
                self.send_response(reply.status)
                for name, value in {"Content-Type": "application/json", **reply.headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                try:
                    self.wfile.write(reply.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and left, as the time-out test intends

            def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/api"


@pytest.fixture
def bi_server() -> Iterator[BiServer]:
    server = BiServer()
    server.thread.start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


def credentials(url: str, timeout: float = 5.0) -> BiApiCredentials:
    return BiApiCredentials(base_url=url, token=TOKEN, timeout_seconds=timeout)


def payload() -> dict[str, Any]:
    """Two customers, two days, one region, one alert: small enough to check by hand."""
    customer = (
        "customer_id",
        "name",
        "region",
        "total_revenue",
        "transaction_count",
        "customer_segment",
        "activity_level",
        "engagement_score",
        "revenue_prev_period",
    )
    customers = [
        # the top customer
        ("C1", "Ada", "North", 300.0, 3, "vip", "high", 80.0, 400.0),
        # bought nothing; a NaN engagement that must become null, not NaN, in the JSON
        ("C2", "Bo", "North", 0.0, 0, "at_risk", "dormant", float("nan"), 100.0),
    ]  # fmt: skip
    july = [pd.Timestamp(f"2025-07-0{d}", tz="UTC") for d in (1, 2)]
    trends = [
        # two overall days: the daily series
        {"grain": "day", "bucket_start": july[0], "region": None, "revenue": 100.0, "transactions": 1},
        {"grain": "day", "bucket_start": july[1], "region": None, "revenue": 200.0, "transactions": 2},
        # their week: the weekly series
        {"grain": "week", "bucket_start": july[0], "region": None, "revenue": 300.0, "transactions": 3},
    ]  # fmt: skip
    regional = [
        # the one area: North rolls up to one region
        {"dimension": "geography", "region": "North", "country": "US", "state": "NY",
         "revenue": 300.0, "revenue_share": 1.0},
    ]  # fmt: skip
    quality = [
        # a summary row: 1 of 50 required cells missing → completeness 0.98
        {"source": "all", "rule": "completeness", "evaluated": 50, "failed": 1, "failed_pct": 2.0,
         "sample_values": "0.9800"},
        # a failing rule: listed under failed_rules
        {"source": "customers", "rule": "email_format", "column": "email", "severity": "error",
         "evaluated": 2, "failed": 1, "failed_pct": 50.0},
    ]  # fmt: skip
    alert = Alert("revenue_drop", "critical", "Revenue fell 40.0%", value=-40.0, threshold=-20.0)
    return build_payload(
        period="2025-07",
        customer_performance=pd.DataFrame(
            [dict(zip(customer, c, strict=True)) for c in customers]
        ).reindex(columns=list(CUSTOMER_PERFORMANCE_COLUMNS)),
        regional_summary=pd.DataFrame(regional).reindex(columns=list(REGIONAL_SUMMARY_COLUMNS)),
        performance_trends=pd.DataFrame(trends).reindex(columns=list(PERFORMANCE_TRENDS_COLUMNS)),
        quality_report=pd.DataFrame(quality).reindex(columns=list(QUALITY_REPORT_COLUMNS)),
        insights={"pareto": {"revenue_share": 1.0}},
        alerts=[alert],
        run_id="run-7",
    )


def test_payload_arrives_whole_with_auth_and_idempotency_key(bi_server: BiServer) -> None:
    with credentials(bi_server.url).get_client() as client:
        result = push_dashboard(client, payload(), idempotency_key=KEY, sleep=pytest.fail)
    assert (result.status_code, result.attempts, result.body) == (
        201,
        1,
        {"dashboard_id": "cp-2025-07"},
    )
    (request,) = bi_server.requests
    assert (
        request.path == "/api/dashboards/customer-performance"
    )  # appended to the block's base path
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["Idempotency-Key"] == KEY and len(KEY) == 64
    assert request.headers["Content-Type"] == "application/json"
    sent = json.loads(request.body)  # strict JSON: NaN would not parse in most readers
    assert b"NaN" not in request.body
    assert set(sent) == {
        "schema_version",
        "pipeline",
        "period",
        "run_id",
        "currency",
        "revenue",
        "engagement",
        "regional",
        "alerts",
        "quality",
        "insights",
    }
    assert (sent["period"], sent["run_id"], sent["currency"]) == ("2025-07", "run-7", "USD")
    revenue = sent["revenue"]
    # total 300 + 0; previous 400 + 100 = 500 → change (300 − 500) / 500 = −40 %
    assert (revenue["total"], revenue["previous_period"], revenue["change_pct"]) == (
        300.0,
        500.0,
        -40.0,
    )
    assert revenue["daily"] == [
        {"date": "2025-07-01", "revenue": 100.0, "transactions": 1},
        {"date": "2025-07-02", "revenue": 200.0, "transactions": 2},
    ]
    assert [c["customer_id"] for c in revenue["top_customers"]] == ["C1"]  # C2 bought nothing
    engagement = sent["engagement"]
    assert engagement["avg_engagement_score"] == 80.0  # the NaN is left out of the mean, not zero
    assert {
        "customer_segment": "at_risk",
        "activity_level": "dormant",
        "customers": 1,
    } in engagement["segment_activity"]
    assert sent["regional"]["regions"] == [{"region": "North", "revenue": 300.0}]
    assert sent["alerts"][0]["kind"] == "revenue_drop" and sent["alerts"][0]["value"] == -40.0
    assert sent["quality"]["summary"] == [{"source": "all", "rule": "completeness", "value": 0.98}]
    assert [r["rule"] for r in sent["quality"]["failed_rules"]] == ["email_format"]


def test_a_503_is_retried_once_with_the_same_key(bi_server: BiServer) -> None:
    bi_server.script = [Reply(status=503, body=b"maintenance")]  # then the default 201
    waits: list[float] = []
    with credentials(bi_server.url).get_client() as client:
        result = push_dashboard(client, payload(), idempotency_key=KEY, sleep=waits.append)
    assert result.attempts == 2 and len(bi_server.requests) == 2
    assert [r.headers["Idempotency-Key"] for r in bi_server.requests] == [KEY, KEY]
    assert bi_server.requests[0].body == bi_server.requests[1].body  # the same document both times
    assert (
        len(waits) == 1 and 0.5 <= waits[0] <= 1.0
    )  # first backoff step 1 s, equal jitter: [0.5, 1]


def test_a_400_is_not_retried_and_says_status_and_url(bi_server: BiServer) -> None:
    bi_server.script = [Reply(status=400, body=b'{"error": "period must be YYYY-MM"}')]
    with credentials(bi_server.url).get_client() as client, pytest.raises(BiPushError) as error:
        push_dashboard(client, payload(), idempotency_key=KEY, sleep=pytest.fail)
    assert len(bi_server.requests) == 1
    assert (error.value.status_code, error.value.transient, error.value.attempts) == (400, False, 1)
    message = str(error.value)
    assert "HTTP 400" in message and f"{bi_server.url}/dashboards/customer-performance" in message
    assert "period must be YYYY-MM" in message  # the server's reason, for the person fixing it


def test_429_waits_as_long_as_retry_after_says(bi_server: BiServer) -> None:
    bi_server.script = [Reply(status=429, headers={"Retry-After": "7"})]
    waits: list[float] = []
    with credentials(bi_server.url).get_client() as client:
        push_dashboard(client, payload(), idempotency_key=KEY, sleep=waits.append)
    assert waits == [7.0] and len(bi_server.requests) == 2


def test_a_retry_after_beyond_the_limit_stops_without_waiting(bi_server: BiServer) -> None:
    bi_server.script = [Reply(status=503, headers={"Retry-After": "3600"})]
    with credentials(bi_server.url).get_client() as client, pytest.raises(BiPushError) as error:
        push_dashboard(
            client, payload(), idempotency_key=KEY, sleep=pytest.fail, max_retry_after_seconds=60
        )
    assert error.value.transient is True and len(bi_server.requests) == 1


def test_persistent_5xx_gives_up_after_max_attempts(bi_server: BiServer) -> None:
    bi_server.script = [Reply(status=502), Reply(status=500), Reply(status=504)]
    waits: list[float] = []
    with credentials(bi_server.url).get_client() as client, pytest.raises(BiPushError) as error:
        push_dashboard(client, payload(), idempotency_key=KEY, max_attempts=3, sleep=waits.append)
    assert len(bi_server.requests) == 3 and len(waits) == 2  # no wait after the last attempt
    assert (error.value.status_code, error.value.transient, error.value.attempts) == (504, True, 3)
    assert 1.0 <= waits[1] <= 2.0  # the second step doubles: [1, 2] with equal jitter


def test_a_read_timeout_is_retried_with_the_same_key(bi_server: BiServer) -> None:
    # The first answer comes after 3 s; the client gives up at 1 s and tries again. The
    # server did receive the first POST: the key is what lets it drop the duplicate.
    bi_server.script = [Reply(hang_seconds=3.0)]
    waits: list[float] = []
    with credentials(bi_server.url, timeout=1.0).get_client() as client:
        result = push_dashboard(client, payload(), idempotency_key=KEY, sleep=waits.append)
    assert result.attempts == 2 and len(waits) == 1
    assert [r.headers["Idempotency-Key"] for r in bi_server.requests] == [KEY, KEY]


def test_connection_refused_is_retried_then_reported() -> None:
    with socket.socket() as probe:  # a port that was free a moment ago and has no listener
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    waits: list[float] = []
    with (
        credentials(f"http://127.0.0.1:{port}").get_client() as client,
        pytest.raises(BiPushError) as error,
    ):
        push_dashboard(client, payload(), idempotency_key=KEY, max_attempts=2, sleep=waits.append)
    assert (error.value.status_code, error.value.transient, error.value.attempts) == (None, True, 2)
    assert "ConnectError" in str(error.value) and len(waits) == 1


def test_the_token_never_reaches_the_logs(
    bi_server: BiServer, caplog: pytest.LogCaptureFixture
) -> None:
    bi_server.script = [Reply(status=503), Reply(status=422, body=b'{"error": "bad"}')]
    caplog.set_level(logging.DEBUG)
    with credentials(bi_server.url).get_client() as client, pytest.raises(BiPushError) as error:
        push_dashboard(client, payload(), idempotency_key=KEY, sleep=lambda _: None)
    assert len(bi_server.requests) == 2  # the 503 was retried, the 422 was final
    assert caplog.records  # the retry was logged...
    assert TOKEN not in caplog.text and TOKEN not in str(error.value)  # ...without the token
