"""Which failures are worth a retry (SPEC §9): transient I/O only, never config or data."""

from __future__ import annotations

import httpx
import sqlalchemy.exc

from tasks.config import ConfigError

TRANSIENT_TYPES: tuple[type[BaseException], ...] = (
    ConnectionError,
    TimeoutError,
    httpx.TransportError,
)
# Driver messages that mean "try again": dropped connections, deadlocks, lock waits.
TRANSIENT_DB_HINTS = (
    "server closed the connection", "connection reset", "lost connection", "gone away",
    "terminating connection", "deadlock", "lock wait timeout", "could not connect",
    "connection refused", "timeout", "canceling statement due to statement timeout",
)


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, ConfigError):
        return False
    if isinstance(exc, httpx.HTTPStatusError):
        return exc.response.status_code in (408, 429) or exc.response.status_code >= 500
    from tasks.extract_api import ApiError, TransientApiError

    if isinstance(exc, ApiError):  # the REST client already retried what was transient
        return isinstance(exc, TransientApiError)
    if getattr(exc, "transient", None) is not None:  # e.g. EmailDeliveryError says itself
        return bool(exc.transient)
    if isinstance(exc, TRANSIENT_TYPES):
        return True
    if isinstance(exc, sqlalchemy.exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        text = str(exc.orig).lower()
        return any(hint in text for hint in TRANSIENT_DB_HINTS)
    return False


def retry_on_transient(task, task_run, state) -> bool:  # type: ignore[no-untyped-def]
    """Prefect retry_condition_fn: retry only when the failure is transient."""
    try:
        state.result()
    except Exception as exc:  # the task's own exception, re-raised by result()
        return is_transient(exc)
    return False
