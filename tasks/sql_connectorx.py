"""The lifetime history's rows from MariaDB / MySQL through ConnectorX, where that is safe.

The history is the run's largest read (9 M order rows at 10^6 customers). mysqlclient
builds a Python object for every value it fetches (54 M there), on this process's one GIL;
ConnectorX reads the same rows in Rust, over the binary protocol, straight into Arrow. In
whole flows at 10^6 (bench/README.md, "MariaDB client, fourth look") the extract stage took
16.5-17.4 s with it against 17.7-19.3 s without, the folded history identical.

ConnectorX opens its own connection from a URL, so it is used only where that connection
sees exactly what ours does; otherwise `connectorx_table` returns None and the caller
streams the rows with mysqlclient as before:

- the package is installed (it is an optional speed-up, not a requirement);
- our session is TCP without TLS and the engine URL carries no options (TLS, a socket,
  a charset): a second connection without them would be a downgrade or a different one;
- the server's default time zone is UTC: our session sets UTC for the extract, and
  ConnectorX's session has the default, which decides how TIMESTAMP values compare and
  arrive;
- every column is text, an integer, a DECIMAL that ConnectorX's decimal128(38, 10) holds
  exactly (at most 10 decimals and 28 integer digits) or a date/time, as the server
  describes the query's columns (a `LIMIT 0` of it): a FLOAT or DOUBLE arrives as a binary
  float where the server's text (what the other reader parses) may be shorter, and a
  BIGINT UNSIGNED may not fit.

Values are handed on so that the typing after it gives what it gives the streaming
reader's text: a DECIMAL (which always arrives as a "float" kind, extract_sql.read_expression)
as the double its text parses to, text as text, integers and date/times typed (which the
same casts accept unchanged). The query's parameters are inlined by mysqlclient's own
quoting, the text it sends the server itself.
"""

from __future__ import annotations

import importlib.util
import logging
from urllib.parse import quote

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

log = logging.getLogger(__name__)

# MySQL column type codes (cursor.description) ConnectorX hands over exactly.
_TEXT_TYPES = {15, 253, 254}  # VARCHAR, VAR_STRING, STRING
_INT_TYPES = {1, 2, 3, 8, 9}  # TINY, SHORT, LONG, LONGLONG, INT24
_DECIMAL_TYPES = {0, 246}
_TIME_TYPES = {7, 10, 12, 14}  # TIMESTAMP, DATE, DATETIME, NEWDATE
_UNSIGNED_FLAG = 32
_UTC_NAMES = {"+00:00", "UTC", "GMT", "Etc/UTC", "Coordinated Universal Time"}


class ConnectorXFailed(RuntimeError):
    """ConnectorX's own read failed (its connection, its driver, a value it cannot take);
    the caller reads with mysqlclient. A failure of *our* session while checking whether
    ConnectorX is safe is not this: it is raised as it is, for the retry policy to judge."""


class ConnectorXPanic(ConnectorXFailed):
    """ConnectorX gave up on a value (a Rust panic)."""


def connectorx_table(connection: sa.Connection, sql: str, params: tuple, names: list[str]) -> pa.Table | None:
    """The rows of `sql` (mysqlclient's paramstyle, with `params`) as Arrow columns named
    `names`, or None where ConnectorX is not installed or not safe here (logged why).

    Raises ConnectorXFailed where ConnectorX's read fails; any other error came from our
    own session (the checks run on it) and is the database's to report."""
    raw = connection.connection.dbapi_connection
    text = sql % tuple(raw.literal(value).decode("utf-8") for value in params)
    reason = _why_not(connection, text)
    if reason is not None:
        log.info("history read with mysqlclient: %s", reason)
        return None
    try:
        import connectorx  # inside: a wheel that will not load is ConnectorX's failure too

        table = connectorx.read_sql(_url(connection.engine.url), text, return_type="arrow")
        return pa.table([_as_streamed(column) for column in table.columns], names=names)
    except BaseException as exc:
        # A Rust panic arrives as pyo3's PanicException, a BaseException (it panics on a
        # zero day such as '2025-02-00', which MariaDB stores without strict mode).
        if type(exc).__name__ == "PanicException":
            raise ConnectorXPanic(str(exc).splitlines()[0] if str(exc) else "panic") from None
        if not isinstance(exc, Exception):
            raise  # KeyboardInterrupt, SystemExit: not ConnectorX's failure
        raise ConnectorXFailed(str(exc)) from exc


def _why_not(connection: sa.Connection, text: str) -> str | None:
    if importlib.util.find_spec("connectorx") is None:
        return "connectorx is not installed"
    url = connection.engine.url
    if url.query:
        return f"the URL has options ({', '.join(sorted(url.query))})"
    raw = connection.connection.dbapi_connection
    if "TCP/IP" not in raw.get_host_info():
        return "not a TCP connection"
    if connection.exec_driver_sql("SHOW SESSION STATUS LIKE 'Ssl_cipher'").one()[1]:
        return "the session uses TLS"
    zone, system_zone = connection.exec_driver_sql("SELECT @@global.time_zone, @@system_time_zone").one()
    if zone not in _UTC_NAMES and not (zone == "SYSTEM" and system_zone in _UTC_NAMES):
        return f"the server's default time zone is {zone} ({system_zone}), not UTC"
    cursor = raw.cursor()
    try:
        cursor.execute(f"{text} LIMIT 0")
        columns = list(zip(cursor.description, cursor.description_flags, strict=True))
    finally:
        cursor.close()
    unsafe = [d[0] for d, flags in columns if not _exact(d, flags)]
    return f"columns ConnectorX would not hand over exactly: {unsafe}" if unsafe else None


def _exact(description: tuple, flags: int) -> bool:
    type_code, precision, scale = description[1], description[4], description[5]
    if type_code in _TEXT_TYPES or type_code in _TIME_TYPES:
        return True
    if type_code in _INT_TYPES:
        return not (type_code == 8 and flags & _UNSIGNED_FLAG)
    if type_code in _DECIMAL_TYPES:
        return scale <= 10 and precision - scale <= 28
    return False


def _url(url: sa.URL) -> str:
    user = quote(url.username or "", safe="")
    password = f":{quote(url.password, safe='')}" if url.password else ""
    database = quote(url.database or "", safe="")
    # prefer_socket=false: the driver would otherwise move a connection to 127.0.0.1 onto the
    # server's socket, where the same user can be a different account (root@localhost).
    host = f"{url.host or '127.0.0.1'}:{url.port or 3306}"
    return f"mysql://{user}{password}@{host}/{database}?prefer_socket=false"


def _as_streamed(values: pa.ChunkedArray) -> pa.ChunkedArray:
    """A ConnectorX column as the streaming reader's typing expects it."""
    kind = values.type
    if pa.types.is_decimal128(kind):
        return pa.chunked_array([decimal_as_float(chunk) for chunk in values.chunks], pa.float64())
    if pa.types.is_decimal(kind) or pa.types.is_large_string(kind):
        # text as the plain strings the streaming reader builds; a wider decimal as its digits
        return pc.cast(values, pa.string())
    return values


EXACT_INTEGER = 2**53  # every integer up to this magnitude is a double exactly


def decimal_as_float(values: pa.Array) -> pa.Array:
    """decimal128 values as the doubles their text parses to (the nearest double to each).

    Arrow's own decimal-to-float cast multiplies by 10^-scale and misses the nearest double
    for a quarter of the history's amounts (124.30 -> 124.30000000000001), so the readers
    would disagree. Here each value is its unscaled integer U divided by 10^scale: where
    both are exact doubles (|U| <= 2^53, scale <= 22) the one IEEE division is correctly
    rounded, as a parse is. Values beyond that (above ~900,000 at ConnectorX's scale 10)
    are parsed from their text. On 9 M amounts this takes 0.14-0.23 s against 0.51-0.55 s
    through text (the history's two columns at S = 10^6: 0.76 s through text).
    """
    scale = values.type.scale
    if not 0 <= scale <= 22:
        return pc.cast(pc.cast(values, pa.string()), pa.float64())
    # Each value is 16 bytes, little-endian two's complement: low word, then high word.
    words = np.frombuffer(values.buffers()[1], dtype="<i8")
    words = words[2 * values.offset : 2 * (values.offset + len(values))].reshape(-1, 2)
    low, high = words[:, 0], words[:, 1]
    exact = (high == (low >> 63)) & (low <= EXACT_INTEGER) & (low >= -EXACT_INTEGER)
    doubles = low.astype(np.float64) / float(10**scale)
    valid = values.is_valid().to_numpy(zero_copy_only=False)
    inexact = np.flatnonzero(valid & ~exact)
    if len(inexact):
        parsed = pc.cast(pc.cast(values.take(pa.array(inexact)), pa.string()), pa.float64())
        doubles[inexact] = parsed.to_numpy(zero_copy_only=False)
    return pa.array(doubles, pa.float64(), mask=~valid if values.null_count else None)
