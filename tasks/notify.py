"""The report e-mail (SPEC §8.3): compose it, keep a copy as .eml, send it over SMTP.

Composition and the summary text are pure; `write_eml` and `send_email` are the only I/O.
The demo has no SMTP server, so it writes the message to an outbox folder; production
sends it with the SMTP settings of a prefect-email `EmailServerCredentials` block.

Sending is all-or-nothing per message: every recipient is offered to the server before
the message body is, and if the server refuses any of them the transaction is reset and
nobody gets it. A rerun after fixing the address list then mails everyone exactly once.
Every failure surfaces as one `EmailDeliveryError` that names host:port and what went
wrong, never a credential, and says whether retrying can help (`transient`).
"""

from __future__ import annotations

import base64
import copy
import io
import logging
import mimetypes
import re
import smtplib
import socket
import ssl
import zipfile
from email.generator import BytesGenerator
from email.message import EmailMessage
from email.utils import formatdate, getaddresses, make_msgid, parseaddr
from html import escape
from pathlib import Path
from typing import Any

from prefect_email import EmailServerCredentials
from prefect_email.credentials import SMTPServer, SMTPType

from tasks.export_csv import atomic_write_bytes

logger = logging.getLogger(__name__)

# Fixed timestamp inside zip archives, so the same files always zip to the same bytes.
_ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)
NOT_AVAILABLE = "n/a"

# What `summary_body` reads from the insights dict of `tasks.insights.business_insights`
# (paths into it). Fractions are 0–1; *_pct values are already percentages.
INSIGHT_PATHS = {
    "revenue": ("totals", "revenue"),  # in the reporting currency (USD)
    "revenue_growth_pct": ("totals", "revenue_growth_pct"),  # versus the previous period
    "customers": ("totals", "customers"),
    "active_customers": ("totals", "active_customers"),  # ≥ 1 transaction in the period
    "top20_share": ("pareto", "revenue_share"),  # fraction of revenue from the top 20 %
    "at_risk": ("at_risk", "count"),
}
# Growth by segment: insights["segments"][segment]["revenue_growth_pct"], in dict order.
QUALITY_KEYS = ("completeness", "accuracy", "quarantined")  # fraction, fraction, int


class EmailDeliveryError(RuntimeError):
    """The report e-mail could not be delivered; the message says where and why.

    `transient` is True when a retry may succeed (refused or dropped connection, time-out,
    a 4xx reply), False when only a configuration change will (5xx reply, bad login,
    unknown host, bad certificate).
    """

    def __init__(self, message: str, *, transient: bool):
        super().__init__(message)
        self.transient = transient


# ---------------------------------------------------------------- composition (pure)


def _slug(text: str, fallback: str = "report") -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:80].strip("-")
    return slug or fallback


def _zip_files(files: list[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in files:
            info = zipfile.ZipInfo(name, date_time=_ZIP_DATE_TIME)
            info.external_attr = 0o644 << 16  # rw-r--r-- when unpacked
            archive.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
    return buffer.getvalue()


def _body_encoding(text: str) -> str | None:
    """None lets the email package choose (7bit for plain ASCII); QP for anything else."""
    return None if text.isascii() else "quoted-printable"


def compose_report_email(
    *,
    sender: str,
    recipients: list[str],
    subject: str,
    body_text: str,
    body_html: str | None,
    attachments: list[Path],
    zip_above_bytes: int,
) -> EmailMessage:
    """The report message: plain text (+ HTML alternative) and the files attached.

    Attachments go as base64 parts (text/csv for CSVs) and arrive byte-identical. When
    their total size exceeds `zip_above_bytes`, they travel as one .zip named after the
    subject instead, because mail servers commonly cap messages at 10–25 MB.
    """
    if not recipients:
        raise ValueError("the report e-mail needs at least one recipient")
    if not sender:
        raise ValueError("the report e-mail needs a sender address")
    files = [(Path(path).name, Path(path).read_bytes()) for path in attachments]
    names = [name for name, _ in files]
    if len(set(names)) != len(names):
        raise ValueError(f"two attachments share a file name: {sorted(names)}")

    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Subject"] = subject
    message["Date"] = formatdate(usegmt=True)
    domain = parseaddr(sender)[1].rpartition("@")[2] or "localhost"
    message["Message-ID"] = make_msgid(domain=domain)  # a domain avoids a slow FQDN lookup
    # Quoted-printable keeps a non-ASCII body 7-bit clean: not every relay takes 8BITMIME.
    message.set_content(body_text, cte=_body_encoding(body_text))
    if body_html is not None:
        message.add_alternative(body_html, subtype="html", cte=_body_encoding(body_html))

    total_bytes = sum(len(data) for _, data in files)
    if files and total_bytes > zip_above_bytes:
        files = [(f"{_slug(subject)}.zip", _zip_files(files))]
        logger.info(
            "attachments total %d bytes > %d: sent as one zip", total_bytes, zip_above_bytes
        )
    for name, data in files:
        content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        maintype, subtype = content_type.split("/")  # .csv -> text/csv, .zip -> application/zip
        message.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    return message


def _show(value: Any, template: str, scale: float = 1.0) -> str:
    """`template` filled with the number (times `scale`), or 'n/a' for a missing value."""
    return NOT_AVAILABLE if value is None else template.format(float(value) * scale)


COUNT, PERCENT, SIGNED_PCT = "{:,.0f}", "{:.1f} %", "{:+.1f} %"


def _alert_line(alert: dict[str, Any]) -> str:
    severity = alert.get("severity") or "alert"
    text = alert.get("message") or alert.get("kind") or alert.get("type") or str(alert)
    return f"[{severity}] {text}"


def _dig(tree: Any, path: tuple[str, ...]) -> Any:
    """tree[path[0]][path[1]]..., or None where a level is missing."""
    for key in path:
        tree = tree.get(key) if isinstance(tree, dict) else None
    return tree


def _key_figures(insights: dict[str, Any], quality: dict[str, Any]) -> list[tuple[str, str]]:
    figure = {name: _dig(insights, path) for name, path in INSIGHT_PATHS.items()}
    missing = [".".join(INSIGHT_PATHS[name]) for name, value in figure.items() if value is None]
    missing += [key for key in QUALITY_KEYS if quality.get(key) is None]
    if missing:
        logger.warning("report summary lacks %s; shown as %s", ", ".join(missing), NOT_AVAILABLE)
    money = str(insights.get("currency") or "USD") + " {:,.2f}"
    return [
        ("Revenue", _show(figure["revenue"], money)),
        ("Revenue growth", _show(figure["revenue_growth_pct"], SIGNED_PCT)),
        ("Customers", _show(figure["customers"], COUNT)),
        ("Active customers", _show(figure["active_customers"], COUNT)),
        ("Revenue share of the top 20 %", _show(figure["top20_share"], PERCENT, scale=100)),
        ("At-risk customers", _show(figure["at_risk"], COUNT)),
        ("Data completeness", _show(quality.get("completeness"), PERCENT, scale=100)),
        ("Data accuracy", _show(quality.get("accuracy"), PERCENT, scale=100)),
        ("Rows quarantined", _show(quality.get("quarantined"), COUNT)),
    ]


def summary_body(
    period_label: str,
    insights: dict[str, Any],
    quality_summary: dict[str, Any],
    alerts: list[dict[str, Any]],
    files: list[str],
) -> tuple[str, str]:
    """The e-mail body as (plain text, HTML): key figures, growth by segment, quality, alerts.

    Reads INSIGHT_PATHS (the shape `business_insights` returns) and QUALITY_KEYS; a missing
    figure shows as 'n/a' (and is logged) rather than failing the delivery of everything
    else. Every value is escaped in the HTML: segment names and alert texts come from data.
    """
    figures = _key_figures(insights, quality_summary)
    segments = insights.get("segments") or {}
    growth_rows = [
        (str(name), _show(_dig(segment_figures, ("revenue_growth_pct",)), SIGNED_PCT))
        for name, segment_figures in segments.items()
    ]
    alert_lines = [_alert_line(alert) for alert in alerts]

    width = max(len(label) for label, _ in figures) + 2
    plain = [f"Customer performance report: {period_label}", "", "Key figures"]
    plain += [f"  {label + ':':<{width}}{value}" for label, value in figures]
    plain += ["", "Revenue growth by segment (versus the previous period)"]
    plain += [f"  {segment}: {pct}" for segment, pct in growth_rows] or [f"  {NOT_AVAILABLE}"]
    plain += ["", f"Alerts ({len(alert_lines)})"]
    plain += [f"  - {line}" for line in alert_lines] or ["  none"]
    plain += ["", "Attached"]
    plain += [f"  - {name}" for name in files] or ["  nothing"]
    text = "\n".join(plain) + "\n"

    def rows(pairs: list[tuple[str, str]]) -> str:
        return "".join(
            f"<tr><th align='left'>{escape(a)}</th><td align='right'>{escape(b)}</td></tr>"
            for a, b in pairs
        )

    def items(lines: list[str], empty: str) -> str:
        return "".join(f"<li>{escape(line)}</li>" for line in lines) or f"<li>{empty}</li>"

    html = (
        "<!DOCTYPE html><html><body style='font-family:sans-serif'>"
        f"<h2>Customer performance report: {escape(period_label)}</h2>"
        f"<h3>Key figures</h3><table>{rows(figures)}</table>"
        "<h3>Revenue growth by segment (versus the previous period)</h3>"
        f"<table>{rows(growth_rows) or f'<tr><td>{NOT_AVAILABLE}</td></tr>'}</table>"
        f"<h3>Alerts ({len(alert_lines)})</h3><ul>{items(alert_lines, 'none')}</ul>"
        f"<h3>Attached</h3><ul>{items(files, 'nothing')}</ul>"
        "</body></html>\n"
    )
    return text, html


# ---------------------------------------------------------------- outbox (file I/O)


def write_eml(message: EmailMessage, outbox: Path) -> Path:
    """Save the message as `<outbox>/<subject-slug>.eml`, atomically.

    The name depends on the subject only, so a rerun of the same period replaces its
    earlier copy instead of piling up near-duplicates.
    """
    path = Path(outbox) / f"{_slug(str(message['Subject'] or ''))}.eml"
    atomic_write_bytes(path, message.as_bytes())
    logger.info("wrote %s (%d recipients)", path, len(_envelope_recipients(message)))
    return path


# ---------------------------------------------------------------- SMTP (network I/O)


def _smtp_type(credentials: EmailServerCredentials) -> SMTPType:
    value = credentials.smtp_type  # the block's validator has cast "starttls" to the enum
    return value if isinstance(value, SMTPType) else SMTPType[str(value).upper()]


def server_address(credentials: EmailServerCredentials) -> tuple[str, int]:
    """The host and port the block points at (the smtp_type's port unless one is given)."""
    server = credentials.smtp_server
    host = server.value if isinstance(server, SMTPServer) else str(server)
    return host, credentials.smtp_port or _smtp_type(credentials).value


def _secrets(credentials: EmailServerCredentials) -> list[str]:
    """The password and the encodings AUTH PLAIN / LOGIN put on the wire, to scrub."""
    password = credentials.password.get_secret_value()
    if not password:
        return []
    user = credentials.username or ""
    encoded = [f"\0{user}\0{password}", password]
    return [password] + [base64.b64encode(s.encode()).decode() for s in encoded]


def _scrub(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def _tls_context(verify: bool | None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if verify is False:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _connect(credentials: EmailServerCredentials, timeout_seconds: float) -> smtplib.SMTP:
    """An SMTP session set up exactly as the block's `get_server()` does, plus a time-out.

    `get_server()` opens its socket without one, so a server that accepts the connection
    and then stays silent would hang the task forever; everything else (SSL / STARTTLS /
    INSECURE, `verify`, login only when a username is set) follows the block.
    """
    host, port = server_address(credentials)
    smtp_type = _smtp_type(credentials)
    if smtp_type == SMTPType.SSL:
        context = _tls_context(credentials.verify)
        server: smtplib.SMTP = smtplib.SMTP_SSL(
            host, port, timeout=timeout_seconds, context=context
        )
    else:
        server = smtplib.SMTP(host, port, timeout=timeout_seconds)
    try:
        if smtp_type == SMTPType.STARTTLS:
            server.starttls(context=_tls_context(credentials.verify))
        server.ehlo_or_helo_if_needed()
        if credentials.username is not None:
            if smtp_type == SMTPType.INSECURE or credentials.verify is False:
                logger.warning("SMTP login to %s:%d without a verified TLS connection", host, port)
            server.login(credentials.username, credentials.password.get_secret_value())
    except BaseException:
        server.close()
        raise
    return server


def _envelope_recipients(message: EmailMessage) -> list[str]:
    fields = [str(value) for key in ("To", "Cc", "Bcc") for value in message.get_all(key, [])]
    return [address for _, address in getaddresses(fields) if address]


def _flatten(message: EmailMessage) -> bytes:
    """The message as sent: CRLF line ends, Bcc removed (as smtplib.send_message does)."""
    outgoing = copy.copy(message)
    del outgoing["Bcc"]
    del outgoing["Resent-Bcc"]
    buffer = io.BytesIO()
    BytesGenerator(buffer).flatten(outgoing, linesep="\r\n")
    return buffer.getvalue()


def _reply(code: int, response: bytes | str) -> str:
    text = response.decode("utf-8", "replace") if isinstance(response, bytes) else str(response)
    return f"{code} {text}".strip()


def _reset(server: smtplib.SMTP) -> None:
    try:
        server.rset()
    except (smtplib.SMTPException, OSError):
        pass  # the error being reported matters more; the session is closed next anyway


def _transact(
    server: smtplib.SMTP, where: str, sender: str, recipients: list[str], data: bytes
) -> None:
    """MAIL, then every RCPT, then DATA only if every recipient was accepted."""
    # Announcing the size lets a server refuse an oversized message before it is sent.
    options = [f"SIZE={len(data)}"] if server.has_extn("size") else []
    code, response = server.mail(sender, options)
    if code != 250:
        _reset(server)
        raise EmailDeliveryError(
            f"SMTP server {where} refused sender {sender} ({_reply(code, response)})",
            transient=400 <= code < 500,
        )
    refused = {}
    for recipient in recipients:
        code, response = server.rcpt(recipient)
        if code not in (250, 251):
            refused[recipient] = (code, response)
    if refused:
        _reset(server)  # abandon the transaction: nobody gets a copy
        details = "; ".join(f"{address} ({_reply(*reply)})" for address, reply in refused.items())
        raise EmailDeliveryError(
            f"SMTP server {where} refused recipient(s) {details}; nothing was sent",
            transient=all(400 <= code < 500 for code, _ in refused.values()),
        )
    server.data(data)  # raises SMTPDataError on a non-250 reply


def _describe(error: BaseException, timeout_seconds: float) -> tuple[str, bool]:
    """What happened, in words, and whether a retry may help."""
    if isinstance(error, smtplib.SMTPServerDisconnected) and isinstance(
        error.__context__, TimeoutError
    ):
        error = error.__context__  # smtplib reports a read time-out as a disconnect
    if isinstance(error, smtplib.SMTPAuthenticationError):
        return f"rejected the login ({_reply(error.smtp_code, error.smtp_error)})", False
    if isinstance(error, smtplib.SMTPNotSupportedError):
        return f"does not support a required feature ({error})", False
    if isinstance(error, smtplib.SMTPServerDisconnected):
        return f"closed the connection unexpectedly ({error})", True
    if isinstance(error, smtplib.SMTPResponseException):
        reply = _reply(error.smtp_code, error.smtp_error)
        return f"answered with an error ({reply})", 400 <= error.smtp_code < 500
    if isinstance(error, TimeoutError):  # socket.timeout is the same class since 3.10
        return f"did not answer within {timeout_seconds:g} s (time-out)", True
    if isinstance(error, ConnectionRefusedError):
        return "refused the connection (is the server running and the port right?)", True
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"presented a certificate that failed verification ({error.verify_message})", False
    if isinstance(error, ssl.SSLError):
        hint = "does smtp_type match the port?"
        return f"failed the TLS handshake ({error.reason or error}; {hint})", False
    if isinstance(error, socket.gaierror):
        return f"could not be resolved ({error.strerror})", error.errno == socket.EAI_AGAIN
    if isinstance(error, OSError):
        return f"could not be reached ({error.strerror or error})", True
    return f"failed ({type(error).__name__}: {error})", False


def send_email(
    message: EmailMessage,
    credentials: EmailServerCredentials,
    *,
    timeout_seconds: float = 30.0,
) -> None:
    """Deliver `message` to its To/Cc/Bcc over SMTP, as the credentials block describes.

    Raises EmailDeliveryError naming host:port and the cause for every failure: connection
    refused, time-out, TLS, login, a refused sender or recipient, a rejected message.
    """
    host, port = server_address(credentials)
    where = f"{host}:{port}"
    sender = parseaddr(str(message["From"] or ""))[1]
    recipients = _envelope_recipients(message)
    if not sender or not recipients:
        raise EmailDeliveryError(
            f"not sending to {where}: the message needs a From and at least one To/Cc/Bcc",
            transient=False,
        )
    non_ascii = [address for address in [sender, *recipients] if not address.isascii()]
    if non_ascii:  # would need SMTPUTF8, which few relays offer; say so instead of failing late
        raise EmailDeliveryError(
            f"not sending to {where}: non-ASCII address(es) {non_ascii} are not supported",
            transient=False,
        )
    secrets = _secrets(credentials)
    try:
        server = _connect(credentials, timeout_seconds)
        try:
            _transact(server, where, sender, recipients, _flatten(message))
        finally:
            try:
                server.quit()
            except (smtplib.SMTPException, OSError):
                server.close()  # the server already hung up; nothing left to say to it
    except EmailDeliveryError:
        raise
    except (smtplib.SMTPException, OSError) as error:
        what, transient = _describe(error, timeout_seconds)
        text = f"SMTP server {where} {what}"
        scrubbed = _scrub(text, secrets)
        # Keep the original exception for debugging unless its text carried a secret.
        cause = error if scrubbed == text and not any(s in repr(error) for s in secrets) else None
        raise EmailDeliveryError(scrubbed, transient=transient) from cause
    logger.info(
        "sent %r via %s to %d recipient(s)", str(message["Subject"]), where, len(recipients)
    )
