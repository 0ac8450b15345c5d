"""Concurrency guard for the analytics load: one load per (schema, period) at a time.

Two runs of the same period at once (a manual rerun while the nightly run is loading, two
workers picking up the same retry) must not interleave their loads: each load drops and
recreates the period's views and tables, and two transactions doing that together fail
half-way ("duplicate key value violates unique constraint pg_type_typname_nsp_index") or
race on the views. The guard serialises them: the second load waits for the first one's
commit, then replaces the period in full (the last load wins, never a mix).

How, per dialect:
- PostgreSQL: `pg_advisory_xact_lock(key)` as the first statement of the load transaction.
  The lock is released by the commit or rollback itself, so a crashed worker never leaves
  it behind. The key is a hash of (schema, period): the tables the load writes, whichever
  pipeline or run writes them.
- SQLite (the demo): nothing to do. SQLite has one writer at a time: a second load cannot
  write until the first commits, so two loads never interleave; at worst the second one
  fails with "database is locked" and its transaction rolls back untouched.
- Other dialects: no advisory lock is taken; a warning says so. MySQL's GET_LOCK is held by
  the session, not the transaction, and its DDL commits implicitly, so it could not give
  the one-transaction swap this guard protects anyway.
"""

from __future__ import annotations

import hashlib
import logging

import sqlalchemy as sa

from tasks.period import Period

log = logging.getLogger(__name__)

LOCK_NAMESPACE = "customer-performance/analytics-load"
# A load that waits longer than this fails with PostgreSQL's "lock timeout" error, which
# tasks.retry counts as transient: the task retries later instead of hanging the worker.
DEFAULT_TIMEOUT_SECONDS = 600.0


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for `name` (pg advisory locks take a bigint).

    blake2b rather than hash(): Python's str hash changes per process, and two workers must
    agree on the key.
    """
    digest = hashlib.blake2b(f"{LOCK_NAMESPACE}:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def period_lock_name(period: Period | str, schema: str | None = None) -> str:
    """What one load owns: the period's tables in one schema ('public' when none is given)."""
    return f"{schema or 'public'}/{period}"


def lock_period(
    connection: sa.Connection,
    period: Period | str,
    *,
    schema: str | None = None,
    timeout_seconds: float | None = DEFAULT_TIMEOUT_SECONDS,
) -> bool:
    """Hold the period's load lock until this transaction ends; True if a lock was taken.

    Call it first thing inside the load transaction (`with engine.begin() as connection:`).
    `timeout_seconds=None` waits as long as it takes.
    """
    dialect = connection.dialect.name
    if dialect == "sqlite":
        return False  # single writer already: see the module docstring
    if dialect != "postgresql":
        log.warning("no load lock on %s: run one load of period %s at a time", dialect, period)
        return False
    key = lock_key(period_lock_name(period, schema))
    if timeout_seconds is None:
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
        return True
    # lock_timeout applies to this wait only: the previous value is restored afterwards,
    # so the rest of the load keeps the session's own setting.
    previous = connection.execute(sa.text("SELECT current_setting('lock_timeout')")).scalar_one()
    connection.execute(
        sa.text("SELECT set_config('lock_timeout', :value, true)"),
        {"value": f"{max(1, round(timeout_seconds * 1000))}ms"},
    )
    connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
    connection.execute(
        sa.text("SELECT set_config('lock_timeout', :value, true)"), {"value": previous}
    )
    return True
