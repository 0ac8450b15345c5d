"""The one declarative REST fetcher (SPEC §3), in the spirit of dlt's `rest_api` source.

An endpoint is data, a `tasks.config.RestSource` (path, records path, pagination, date
parameters, fixed parameters, column map); this module is the only code that pages through
one. Each request is retried on what is transient (timeouts, connection errors, 408, 429,
5xx) with exponential backoff and jitter, honouring Retry-After; anything else fails at
once with an error that names the URL and the page. The errors split into `ApiError`
(permanent: do not retry) and `TransientApiError` (retries ran out: a later retry of the
whole task may work), so a Prefect `retry_condition_fn` can use `is_transient`.

No Prefect here: the flow wraps `fetch_records` in a task.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import pandas as pd

from tasks.config import RestSource

logger = logging.getLogger(__name__)

# 501 Not Implemented and 505 HTTP Version Not Supported will not change by asking again.
PERMANENT_SERVER_STATUSES = frozenset({501, 505})
MIN_RETRY_WAIT_SECONDS = 0.1  # even 'Retry-After: 0' waits this long: no hot loop
MAX_RETRY_WAIT_SECONDS = 300.0  # a longer Retry-After fails the attempt (the task retries later)
# Read when a page body carries them, so the fetcher stops without asking for an empty page.
TOTAL_PAGES_KEY = "total_pages"
TOTAL_ROWS_KEY = "total"
_TRANSPORT_TRANSIENT = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)
_MISSING = object()


class ApiError(RuntimeError):
    """A REST request that repeating will not fix: a 4xx, a malformed page, a runaway paginator."""

    def __init__(self, message: str, *, url: str | None = None, status: int | None = None,
                 page: int | None = None) -> None:
        super().__init__(message)
        self.url, self.status, self.page = url, status, page


class TransientApiError(ApiError):
    """A transient failure (timeout, reset, 5xx, 429) that outlasted every attempt."""


class MalformedPageError(ApiError):
    """A page that is not JSON, or whose records path is missing or not a list of objects."""


class PaginationError(ApiError):
    """A paginator that would not end: page cap reached, a cursor or link seen before."""


def is_transient(error: BaseException) -> bool:
    """For a Prefect retry_condition_fn: True only for failures a later retry may fix."""
    return isinstance(error, TransientApiError)


_SECRET_HEADER_HINTS = ("auth", "key", "token", "secret", "cookie")


def redacted_excerpt(response: httpx.Response, request: httpx.Request, limit: int = 200) -> str:
    """The start of an error body, with every credential we sent blanked out.

    Some servers echo the request headers in a 401 body; quoting it as is would carry the
    token into the exception, the logs and the stored run state.
    """
    text = response.text
    secrets: set[str] = set()
    for name, value in request.headers.items():
        if any(hint in name.lower() for hint in _SECRET_HEADER_HINTS) and value:
            secrets.add(value)
            secrets.update(part for part in value.split() if len(part) >= 4)
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text[:limit]


def is_retryable_status(status: int) -> bool:
    """408, 429 and 5xx (but 501/505) are worth another try; other 4xx never are (SPEC §3)."""
    server_side = 500 <= status <= 599 and status not in PERMANENT_SERVER_STATUSES
    return status in (408, 429) or server_side


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After as seconds to wait: delta-seconds or an HTTP-date; None if absent/unreadable."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def retry_wait(attempt: int, backoff_seconds: float, retry_after: float | None,
               jitter: Callable[[], float] = random.random) -> float:
    """Seconds before attempt `attempt + 1`: exponential backoff with ±50 % jitter, never below
    MIN_RETRY_WAIT_SECONDS, and never below what the server asked for in Retry-After."""
    backoff = backoff_seconds * 2 ** (attempt - 1) * (0.5 + jitter())
    wait = max(backoff, MIN_RETRY_WAIT_SECONDS)
    return max(wait, retry_after) if retry_after is not None else wait


def format_instant(value: datetime) -> str:
    """A bound as ISO 8601 UTC ('2025-07-01T00:00:00Z'); a naive datetime is taken as UTC."""
    aware = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return aware.strftime("%Y-%m-%dT%H:%M:%SZ")


def lookup(body: Any, path: str) -> Any:
    """The value at a dotted path ('data', 'result.items'); '' or '$' is the body itself."""
    if path in ("", "$"):
        return body
    value = body
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return _MISSING
        value = value[part]
    return value


def _send(client: httpx.Client, request: httpx.Request, page: int, *,
          sleep: Callable[[float], None], max_attempts: int,
          backoff_seconds: float) -> httpx.Response:
    """One page's request, retried on transient failures only."""
    url = str(request.url)
    for attempt in range(1, max_attempts + 1):
        retry_after: float | None = None
        try:
            response = client.send(request)
        except _TRANSPORT_TRANSIENT as exc:
            problem = f"{type(exc).__name__}: {exc or 'no detail'}"
        except httpx.HTTPError as exc:  # e.g. an unsupported scheme: asking again will not help
            raise ApiError(f"GET {url} (page {page}) failed: {type(exc).__name__}: {exc}",
                           url=url, page=page) from exc
        else:
            status = response.status_code
            if status < 300:
                return response
            if not is_retryable_status(status):
                raise ApiError(
                    f"GET {url} (page {page}) failed with HTTP {status} {response.reason_phrase}: "
                    f"{redacted_excerpt(response, request)!r}; not retried: a {status} does not change by asking "
                    "again (check the credentials, path and parameters)",
                    url=url, status=status, page=page,
                )
            problem = f"HTTP {status} {response.reason_phrase}"
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if attempt == max_attempts:
            raise TransientApiError(
                f"GET {url} (page {page}) still failing after {max_attempts} attempts: {problem}",
                url=url, page=page)
        wait = retry_wait(attempt, backoff_seconds, retry_after)
        if wait > MAX_RETRY_WAIT_SECONDS:
            raise TransientApiError(
                f"GET {url} (page {page}): the server asks to wait {wait:.0f} s ({problem}), "
                f"longer than {MAX_RETRY_WAIT_SECONDS:.0f} s; retry the task later",
                url=url, page=page)
        logger.warning("GET %s (page %d) attempt %d/%d: %s; retrying in %.2f s",
                       url, page, attempt, max_attempts, problem, wait)
        sleep(wait)
    raise AssertionError("unreachable")  # the loop returns or raises


def _page_records(response: httpx.Response, records_path: str,
                  page: int) -> tuple[Any, list[dict[str, Any]]]:
    """The parsed body and its records; MalformedPageError names the URL and page."""
    url = str(response.request.url)
    try:
        body = response.json()
    except ValueError as exc:
        raise MalformedPageError(f"page {page} of GET {url} is not valid JSON ({exc}): "
                                 f"{response.text[:120]!r}", url=url, page=page) from None
    records = lookup(body, records_path)
    if records is _MISSING:
        keys = sorted(body) if isinstance(body, Mapping) else type(body).__name__
        raise MalformedPageError(f"page {page} of GET {url} has no records at {records_path!r} "
                                 f"(found: {keys}); check records_path", url=url, page=page)
    if not isinstance(records, list) or not all(isinstance(r, Mapping) for r in records):
        raise MalformedPageError(f"page {page} of GET {url}: {records_path!r} is not a list of "
                                 f"objects but {type(records).__name__}", url=url, page=page)
    return body, records


def _same_origin(first: httpx.URL, other: httpx.URL) -> bool:
    return (first.scheme, first.host, first.port) == (other.scheme, other.host, other.port)


@dataclass
class _Paging:
    """Where a paginator stands: the state each style needs to build its next request."""

    client: httpx.Client
    source: RestSource
    query: dict[str, Any]  # fixed params plus the date range
    page_number: int
    offset: int = 0
    seen: set[str] = field(default_factory=set)  # cursors and links already followed

    def request(self, extra: Mapping[str, Any]) -> httpx.Request:
        return self.client.build_request("GET", self.source.path, params={**self.query, **extra})

    def first(self) -> httpx.Request:
        paging = self.source.pagination
        if paging.style == "page":
            return self.request({paging.page_param: self.page_number,
                                 paging.size_param: paging.page_size})
        if paging.style == "offset":
            return self.request({paging.offset_param: 0, paging.limit_param: paging.page_size})
        if paging.style in ("cursor", "link"):
            return self.request({paging.size_param: paging.page_size})
        return self.request({})

    def next(self, response: httpx.Response, body: Any, records: list[dict[str, Any]],
             page: int) -> httpx.Request | None:
        """The request for the page after `page`, or None when the paginator says it is done."""
        paging = self.source.pagination
        if paging.style == "page":
            total_pages = body.get(TOTAL_PAGES_KEY) if isinstance(body, Mapping) else None
            pages_read = self.page_number - paging.first_page + 1
            if isinstance(total_pages, int) and pages_read >= total_pages:
                return None
            self.page_number += 1
            return self.request({paging.page_param: self.page_number,
                                 paging.size_param: paging.page_size})
        if paging.style == "offset":
            self.offset += len(records)
            total_rows = body.get(TOTAL_ROWS_KEY) if isinstance(body, Mapping) else None
            if isinstance(total_rows, int) and self.offset >= total_rows:
                return None
            return self.request({paging.offset_param: self.offset,
                                 paging.limit_param: paging.page_size})
        if paging.style == "cursor":
            cursor = lookup(body, paging.cursor_path)
            if cursor is _MISSING or cursor is None or cursor == "":
                return None
            if str(cursor) in self.seen:
                url = str(response.request.url)
                raise PaginationError(f"GET {url} (page {page}) returned cursor {cursor!r} "
                                      "again; stopping instead of looping", url=url, page=page)
            self.seen.add(str(cursor))
            return self.request({paging.size_param: paging.page_size, paging.cursor_param: cursor})
        if paging.style == "link":
            return self._follow_link(response, page)
        return None  # 'none': one request holds everything

    def _follow_link(self, response: httpx.Response, page: int) -> httpx.Request | None:
        next_link = response.links.get("next", {}).get("url")
        if not next_link:
            return None
        here = response.request.url
        next_url = here.join(next_link)
        if str(next_url) in self.seen or next_url == here:
            raise PaginationError(f"GET {here} (page {page}): next link {next_url} was already "
                                  "followed; stopping instead of looping", url=str(here), page=page)
        if not _same_origin(here, next_url):
            # The client's credentials must not travel to a host the config never named.
            raise PaginationError(f"next link {next_url} leaves {here.host}; refusing to send "
                                  "credentials there", url=str(here), page=page)
        self.seen.add(str(next_url))
        return self.client.build_request("GET", next_url)


def iter_pages(client: httpx.Client, source: RestSource, start: datetime | None,
               end: datetime | None, *, sleep: Callable[[float], None] = time.sleep,
               max_attempts: int = 5,
               backoff_seconds: float = 0.5) -> Iterator[list[dict[str, Any]]]:
    """Yield the records of each page until the paginator says it is done or a page is empty.

    More than `pagination.max_pages` non-empty pages is an error, never a silent truncation;
    a cursor or next link seen before is an error, never an endless loop.
    """
    if max_attempts < 1:
        raise ValueError("max_attempts must be at least 1")
    query: dict[str, Any] = dict(source.params)
    for bound, value in (("start", start), ("end", end)):
        if value is not None and source.date_params.get(bound):
            query[source.date_params[bound]] = format_instant(value)
    paging = _Paging(client, source, query, page_number=source.pagination.first_page)
    max_pages = source.pagination.max_pages
    request: httpx.Request | None = paging.first()
    page = 0
    while request is not None:
        page += 1
        response = _send(client, request, page, sleep=sleep, max_attempts=max_attempts,
                         backoff_seconds=backoff_seconds)
        body, records = _page_records(response, source.records_path, page)
        logger.debug("GET %s (page %d): %d records", request.url, page, len(records))
        if not records:
            return
        if page > max_pages:
            raise PaginationError(
                f"GET {request.url}: more than pagination.max_pages={max_pages} pages; "
                "refusing to truncate silently (raise max_pages or narrow the date range)",
                url=str(request.url), page=page)
        yield records
        request = paging.next(response, body, records, page)


def to_frame(records: Sequence[Mapping[str, Any]], column_map: Mapping[str, str],
             fields: Sequence[str] | None = None) -> pd.DataFrame:
    """Records as a frame with canonical names (column_map: canonical -> API field).

    Values stay as the API gave them. An API field that carries a canonical name which the
    map assigns to another field is dropped (the map wins); `fields`, when given, are
    guaranteed to exist (null when absent) and come first.
    """
    frame = pd.DataFrame.from_records(list(records)) if records else pd.DataFrame()
    rename = {api: canonical for canonical, api in column_map.items()}
    absent = [api for api in rename if api not in frame.columns]
    if records and absent:
        logger.warning("column_map names API fields absent from every record: %s", absent)
    shadowed = [c for c in frame.columns if c in column_map and c not in rename]
    frame = frame.drop(columns=shadowed).rename(columns=rename)
    if fields is not None:
        for name in fields:
            if name not in frame.columns:
                frame[name] = pd.Series([None] * len(frame), dtype=object)
        frame = frame[[*fields, *(c for c in frame.columns if c not in fields)]]
    return frame


def fetch_records(client: httpx.Client, source: RestSource, start: datetime | None,
                  end: datetime | None, *, sleep: Callable[[float], None] = time.sleep,
                  max_attempts: int = 5, backoff_seconds: float = 0.5,
                  fields: Sequence[str] | None = None) -> pd.DataFrame:
    """Every record of `source` in [start, end), as one frame with canonical column names.

    The date range is pushed down through `source.date_params`; the period filter still
    applies the full condition afterwards, so an API that ignores it stays correct.
    """
    records: list[dict[str, Any]] = []
    for page in iter_pages(client, source, start, end, sleep=sleep, max_attempts=max_attempts,
                           backoff_seconds=backoff_seconds):
        records.extend(page)
    logger.info("GET %s: %d records", source.path, len(records))
    return to_frame(records, source.column_map, fields)
