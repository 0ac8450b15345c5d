"""A stand-in for the CRM's REST API: a real HTTP server on loopback, with fault injection.

The demo serves `crm.db` through it so the REST extract runs for real (sockets, auth,
pagination, retries); the integration tests start one per test with tiny records and a
`FaultPlan` that makes chosen requests fail the way real APIs do.

    with CrmStandIn(records, token="demo-token", auth="bearer", pagination="page") as server:
        httpx.get(server.base_url + "/interactions", params={"start_date": "2025-07-01"}, ...)

    python -m demo.crm_server --db output/demo/crm.db --port 8765

`GET /interactions?start_date=..&end_date=..` returns the records whose `interaction_date`
lies in the half-open range [start, end) (ISO date or datetime; naive means UTC), ordered by
date then id. A record whose date does not parse is never inside a range, so it is skipped
whenever either bound is given (and returned only when neither is): a real API that indexes
its dates could not place it either; the pipeline's SQL sources report such rows instead.

Pagination styles (the response body; `page_size`/`limit` capped at `max_page_size`):
  page    ?page=1&page_size=n     {"data": [...], "page", "page_size", "total_pages", "total"}
  offset  ?offset=0&limit=n       {"data": [...], "offset", "limit", "total"}
  cursor  ?cursor=..&page_size=n  {"data": [...], "next_cursor": "..." | null}
  link    ?page=1&page_size=n     {"data": [...]} + `Link: <url>; rel="next"` while more remain
  none                            {"data": [...all...]}
With `totals=False` the page and offset bodies omit `total`/`total_pages`, so a client must
stop on an empty page. Auth kinds: bearer (`Authorization: Bearer`), api_key (a header,
default `X-API-Key`), basic, none; a wrong or missing credential gets 401.
"""

from __future__ import annotations

import argparse
import base64
import hmac
import json
import logging
import math
import random
import socket
import sqlite3
import struct
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, urlencode, urlsplit

import pandas as pd

logger = logging.getLogger(__name__)

AuthKind = Literal["bearer", "api_key", "basic", "none"]
PaginationStyle = Literal["page", "offset", "cursor", "link", "none"]
# Before auth (the network or a gateway fails): statuses, a reset, a slow answer.
# After auth (the body is wrong): invalid JSON, a wrong shape, cursors or links that never end.
FAULT_KINDS = ("500", "502", "503", "429", "reset", "slow", "invalid_json", "wrong_shape",
               "repeat_cursor", "endless")


@dataclass(frozen=True)
class Fault:
    """One injected failure.

    kind: one of FAULT_KINDS. `repeat_cursor` answers with a next cursor (or next link) equal
    to the one requested; `endless` always announces one more page, repeating the same data.
    retry_after: the literal Retry-After header of a 429 ("2", "0", an HTTP-date).
    retry_after_in: for a 429, send an HTTP-date this many seconds in the future instead.
    delay_seconds: how long a `slow` answer takes (the client should time out first).
    """

    kind: str
    retry_after: str | None = None
    retry_after_in: float | None = None
    delay_seconds: float = 2.0

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; choose from {FAULT_KINDS}")


class FaultPlan:
    """Which requests fail: first the scripted ones in order (None = answer normally), then a
    seeded random `rate` of the rest, each with a kind drawn from `kinds`."""

    def __init__(self, script: Sequence[Fault | str | None] = (), *, rate: float = 0.0,
                 kinds: Sequence[str] = ("503",), seed: int = 0) -> None:
        self._script = [Fault(item) if isinstance(item, str) else item for item in script]
        self._kinds = [Fault(kind, retry_after="1" if kind == "429" else None) for kind in kinds]
        self._rate = rate
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._served = 0

    def next_fault(self) -> Fault | None:
        with self._lock:
            index, self._served = self._served, self._served + 1
            if index < len(self._script):
                return self._script[index]
            if self._rate and self._random.random() < self._rate:
                return self._random.choice(self._kinds)
            return None


@dataclass
class RequestLog:
    """What the stand-in saw: lets a test assert how many requests a client made."""

    path: str
    query: dict[str, str]
    fault: str | None
    status: int | None = None


def parse_instant(text: str) -> datetime | None:
    """An ISO date or datetime as naive UTC; None when it does not parse (a garbled date)."""
    try:
        parsed = datetime.fromisoformat(str(text).strip())
    except ValueError:
        return None
    return parsed.astimezone(UTC).replace(tzinfo=None) if parsed.tzinfo else parsed


def in_range(records: Sequence[Mapping[str, Any]], instants: Sequence[datetime | None],
             start: datetime | None, end: datetime | None) -> list[Mapping[str, Any]]:
    """Records whose instant is in [start, end); with no bound at all, every record."""
    if start is None and end is None:
        return list(records)
    return [record for record, at in zip(records, instants, strict=True)
            if at is not None and (start is None or at >= start) and (end is None or at < end)]


def _cursor_for(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode()


def _offset_of(cursor: str) -> int:
    decoded = base64.urlsafe_b64decode(cursor.encode()).decode()
    if not decoded.startswith("offset:"):
        raise ValueError(cursor)
    return int(decoded.removeprefix("offset:"))


def paginate(
    selected: Sequence[Mapping[str, Any]], style: str, query: Mapping[str, str],
    default_size: int, max_size: int, page_url: str,
) -> tuple[dict[str, Any], dict[str, str]]:
    """The body and extra headers of one page; raises ValueError on a bad paging parameter."""
    total = len(selected)
    if style == "none":
        return {"data": list(selected)}, {}
    if style == "offset":
        offset = int(query.get("offset", 0))
        limit = min(int(query.get("limit", default_size)), max_size)
        if offset < 0 or limit < 1:
            raise ValueError("offset must be >= 0 and limit >= 1")
        return {"data": list(selected[offset:offset + limit]), "offset": offset, "limit": limit,
                "total": total}, {}
    size = min(int(query.get("page_size", default_size)), max_size)
    if size < 1:
        raise ValueError("page_size must be >= 1")
    if style == "cursor":
        offset = _offset_of(query["cursor"]) if query.get("cursor") else 0
        more = offset + size < total
        return {"data": list(selected[offset:offset + size]),
                "next_cursor": _cursor_for(offset + size) if more else None}, {}
    page = int(query.get("page", 1))
    if page < 1:
        raise ValueError("page must be >= 1")
    rows = list(selected[(page - 1) * size:page * size])
    total_pages = math.ceil(total / size)
    if style == "page":
        return {"data": rows, "page": page, "page_size": size, "total_pages": total_pages,
                "total": total}, {}
    headers = {}
    if page < total_pages:
        headers["Link"] = f'<{page_url}?{urlencode({**query, "page": page + 1})}>; rel="next"'
    return {"data": rows}, headers


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a handler still sleeping for a `slow` fault must not block stop()
    stand_in: CrmStandIn

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("client %s went away mid-request", client_address)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        logger.debug("crm stand-in: " + format, *args)

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        stand_in = self.server.stand_in
        url = urlsplit(self.path)
        parsed = parse_qs(url.query, keep_blank_values=True)
        query = {key: values[-1] for key, values in parsed.items()}
        fault = stand_in.faults.next_fault() if stand_in.faults else None
        log = RequestLog(url.path, query, fault.kind if fault else None)
        stand_in.requests.append(log)
        if fault and fault.kind == "reset":
            # SO_LINGER 0 makes close() send a TCP RST: the client sees "connection reset".
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True
            return
        if fault and fault.kind == "slow":
            time.sleep(fault.delay_seconds)
        if fault and fault.kind in ("500", "502", "503"):
            return self._send(log, int(fault.kind), {"error": "injected failure"})
        if fault and fault.kind == "429":
            retry_after = fault.retry_after or "1"
            if fault.retry_after_in is not None:
                retry_after = formatdate(time.time() + fault.retry_after_in, usegmt=True)
            return self._send(log, 429, {"error": "rate limited"}, {"Retry-After": retry_after})
        if url.path != stand_in.path:
            return self._send(log, 404, {"error": f"no such path {url.path}"})
        if not stand_in.authorised(self.headers):
            challenge = 'Basic realm="crm"' if stand_in.auth == "basic" else "Bearer"
            return self._send(log, 401, {"error": "unauthorized"}, {"WWW-Authenticate": challenge})
        try:
            start, end = (self._bound(query, name) for name in ("start_date", "end_date"))
            selected = in_range(stand_in.records, stand_in.instants, start, end)
            body, headers = paginate(
                selected, stand_in.pagination, query, stand_in.default_page_size,
                stand_in.max_page_size, stand_in.base_url + stand_in.path)
        except (ValueError, KeyError) as exc:
            return self._send(log, 400, {"error": f"bad request: {exc}"})
        if not stand_in.totals:  # like APIs that never say how many pages remain
            body.pop("total", None)
            body.pop("total_pages", None)
        if fault is None or fault.kind == "slow":
            return self._send(log, 200, body, headers)
        return self._send_faulty(log, fault, body, headers, query)

    @staticmethod
    def _bound(query: Mapping[str, str], name: str) -> datetime | None:
        if not query.get(name):
            return None
        parsed = parse_instant(query[name])
        if parsed is None:
            raise ValueError(f"{name}={query[name]!r} is not an ISO date or datetime")
        return parsed

    def _send_faulty(self, log: RequestLog, fault: Fault, body: dict[str, Any],
                     headers: dict[str, str], query: Mapping[str, str]) -> None:
        if fault.kind == "invalid_json":
            return self._send_raw(log, 200, b'{"data": [{"interaction_id": "I1", ', headers)
        if fault.kind == "wrong_shape":
            return self._send(log, 200, {"data": {"unexpected": "an object, not a list"}}, headers)
        stand_in = self.server.stand_in
        first_page = {**body, "data": body["data"] or stand_in.records[:1]}
        if fault.kind == "repeat_cursor":
            first_page["next_cursor"] = query.get("cursor") or _cursor_for(0)
            link = f"{stand_in.base_url}{self.path}"
        else:  # endless: a brand-new cursor / page number every time
            first_page["next_cursor"] = _cursor_for(len(stand_in.requests) * 10_000)
            next_page = int(query.get("page", 1)) + 1
            first_page["total_pages"] = next_page
            link = f"{stand_in.base_url}{stand_in.path}?{urlencode({**query, 'page': next_page})}"
        return self._send(log, 200, first_page, {"Link": f'<{link}>; rel="next"'})

    def _send(self, log: RequestLog, status: int, body: Any,
              headers: Mapping[str, str] | None = None) -> None:
        payload = json.dumps(body, default=_json_default).encode()
        self._send_raw(log, status, payload, headers or {})

    def _send_raw(self, log: RequestLog, status: int, payload: bytes,
                  headers: Mapping[str, str]) -> None:
        log.status = status
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (e.g. timed out on a slow answer)


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if value is pd.NA:
        return None
    return str(value)


def _as_records(records: Iterable[Mapping[str, Any]] | pd.DataFrame) -> list[dict[str, Any]]:
    if isinstance(records, pd.DataFrame):
        return records.astype(object).where(records.notna(), None).to_dict("records")
    return [dict(record) for record in records]


@dataclass
class CrmStandIn:
    """The CRM API, served on 127.0.0.1 (an ephemeral port unless `port` is given)."""

    records: list[dict[str, Any]] = field(repr=False)  # a DataFrame is accepted too
    token: str = field(default="demo-token", repr=False)
    auth: AuthKind = "bearer"
    pagination: PaginationStyle = "page"
    username: str = "demo"
    password: str = field(default="demo-password", repr=False)
    api_key_header: str = "X-API-Key"
    path: str = "/interactions"
    date_field: str = "interaction_date"
    id_field: str = "interaction_id"
    default_page_size: int = 100
    max_page_size: int = 1_000
    totals: bool = True
    faults: FaultPlan | None = None
    host: str = "127.0.0.1"
    port: int = 0
    requests: list[RequestLog] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        records = _as_records(self.records)
        instants = [parse_instant(r.get(self.date_field) or "") for r in records]
        # Stable paging needs a total order: date, then id; undated records last.
        def key(i: int) -> tuple[bool, datetime, str, int]:
            return (instants[i] is None, instants[i] or datetime.min,
                    str(records[i].get(self.id_field, "")), i)

        order = sorted(range(len(records)), key=key)
        self.records = [records[i] for i in order]
        self.instants = [instants[i] for i in order]
        self._server: _Server | None = None
        self._base_url: str | None = None  # kept after stop(), for messages and assertions
        self._thread: threading.Thread | None = None

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, **options: Any) -> CrmStandIn:
        """Serve the rows of a frame (NaN and NA become JSON null)."""
        return cls(_as_records(frame), **options)

    @classmethod
    def from_db(cls, db_path: str | Path, table: str = "interactions",
                **options: Any) -> CrmStandIn:
        """Serve a table of a SQLite file (the demo's crm.db)."""
        return cls(load_records(db_path, table), **options)

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise RuntimeError("the CRM stand-in was never started; use it as a context manager")
        return self._base_url

    def authorised(self, headers: Message) -> bool:
        """Constant-time check of the credential the auth kind asks for."""
        if self.auth == "none":
            return True
        if self.auth == "api_key":
            return hmac.compare_digest(headers.get(self.api_key_header, ""), self.token)
        pair = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        expected = f"Bearer {self.token}" if self.auth == "bearer" else f"Basic {pair}"
        return hmac.compare_digest(headers.get("Authorization", ""), expected)

    def start(self) -> CrmStandIn:
        self._server = _Server((self.host, self.port), _Handler)
        self._server.stand_in = self
        self._base_url = f"http://{self.host}:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
            name="crm-stand-in", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server, self._thread = None, None

    def __enter__(self) -> CrmStandIn:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def load_records(db_path: str | Path, table: str = "interactions") -> list[dict[str, Any]]:
    """Every row of a SQLite table as a dict (column -> value)."""
    if not Path(db_path).exists():
        raise FileNotFoundError(f"{db_path} does not exist; run `python -m demo.generate` first")
    with sqlite3.connect(db_path) as connection:
        connection.row_factory = sqlite3.Row
        # The table name comes from our own code or CLI, never from a request.
        rows = connection.execute(f'SELECT * FROM "{table}"').fetchall()
    connection.close()
    return [dict(row) for row in rows]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve crm.db as the CRM REST API on loopback.")
    parser.add_argument("--db", type=Path, default=Path("output/demo/crm.db"))
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--auth", choices=["bearer", "api_key", "basic", "none"], default="bearer")
    parser.add_argument("--token", default="demo-token")
    parser.add_argument("--pagination", default="page",
                        choices=["page", "offset", "cursor", "link", "none"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with CrmStandIn.from_db(args.db, token=args.token, auth=args.auth, pagination=args.pagination,
                            port=args.port) as server:
        logger.info("CRM stand-in serving %d records at %s%s (Ctrl-C stops)",
                    len(server.records), server.base_url, server.path)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            logger.info("stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
