"""Sending the report e-mail over SMTP (SPEC §8.3), with the settings of a prefect-email
`EmailServerCredentials` block.

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
import smtplib
import socket
import ssl
from email.generator import BytesGenerator
from email.message import EmailMessage
from email.utils import parseaddr

from prefect_email import EmailServerCredentials
from prefect_email.credentials import SMTPServer, SMTPType

from tasks.notify import envelope_recipients

logger = logging.getLogger(__name__)


class EmailDeliveryError(RuntimeError):
    """The report e-mail could not be delivered; the message says where and why.

    `transient` is True when a retry may succeed (refused or dropped connection, time-out,
    a 4xx reply), False when only a configuration change will (5xx reply, bad login,
    unknown host, bad certificate).
    """

    def __init__(self, message: str, *, transient: bool):
        super().__init__(message)
        self.transient = transient


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
    recipients = envelope_recipients(message)
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
