"""The report e-mail through a real SMTP server (aiosmtpd) on 127.0.0.1.

The server records what it received, so each test checks the envelope and the bytes as
they arrived, not what our code believed it sent. Failures are provoked for real: a closed
port, a server that never greets, a recipient the server refuses, a wrong password.
"""

from __future__ import annotations

import datetime as dt
import email
import socket
import ssl
import traceback
from collections.abc import Iterator
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from aiosmtpd.controller import Controller
from prefect_email import EmailServerCredentials

from tasks.export_csv import write_csv
from tasks.notify import compose_report_email, summary_body
from tasks.smtp_delivery import EmailDeliveryError, send_email
from tests.fixtures import smtp as loopback_smtp
from tests.fixtures.pipeline import free_port
from tests.fixtures.smtp import RecordingHandler, echoing_authenticator

pytestmark = pytest.mark.integration

PASSWORD = "s3cret-Pa55-never-shown"
USERNAME = "reporter"
REFUSED_ADDRESS = "gone@example.com"


@pytest.fixture
def smtp_server() -> Iterator[tuple[int, RecordingHandler]]:
    """A plain SMTP server without authentication, as on an internal relay."""
    with loopback_smtp.smtp_server(refuse=frozenset({REFUSED_ADDRESS})) as server:
        yield server


@pytest.fixture(scope="module")
def tls_context(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    """A self-signed certificate for 127.0.0.1, made on the spot (nothing checked in)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    (folder / "cert.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    return context


@pytest.fixture
def starttls_server(tls_context: ssl.SSLContext) -> Iterator[tuple[int, RecordingHandler]]:
    """An SMTP server that requires STARTTLS and a login, as a production relay does."""
    handler = RecordingHandler(refuse=frozenset({REFUSED_ADDRESS}))
    port = free_port()
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=port,
        tls_context=tls_context,
        require_starttls=True,
        auth_required=True,
        authenticator=echoing_authenticator(USERNAME, PASSWORD),
    )
    controller.start()
    try:
        yield port, handler
    finally:
        controller.stop()


def insecure_block(port: int, **extra: Any) -> EmailServerCredentials:
    return EmailServerCredentials(
        smtp_server="127.0.0.1", smtp_port=port, smtp_type="INSECURE", **extra
    )


@pytest.fixture
def report_files(tmp_path: Path) -> list[Path]:
    """Two CSVs written by the real exporter; one carries a formula payload in a name."""
    performance = pd.DataFrame(
        {
            "customer_id": ["c1", "c2"],
            "name": ["Zoë", '=HYPERLINK("http://x","y")'],
            "total_revenue": [120.5, -0.0],
        }
    )
    regional = pd.DataFrame({"region": ["north"], "revenue": [120.5]})
    return [
        write_csv(
            performance,
            tmp_path / "customer_performance_july2025.csv",
            ["customer_id", "name", "total_revenue"],
        ),
        write_csv(regional, tmp_path / "regional_summary_july2025.csv", ["region", "revenue"]),
    ]


def report(files: list[Path], recipients: list[str]) -> EmailMessage:
    text, html = summary_body(
        "july2025",
        {  # the shape of tasks.insights.business_insights
            "totals": {"revenue": 120.5, "customers": 2, "active_customers": 1},
            "pareto": {"revenue_share": 1.0},
            "segments": {"vip": {"revenue_growth_pct": 50.0}},
            "at_risk": {"count": 1},
        },
        {"completeness": 0.99, "accuracy": 0.95, "quarantined": 3},
        [{"severity": "warning", "kind": "quality", "message": "accuracy below 96 %"}],
        [p.name for p in files],
    )
    return compose_report_email(
        sender="reports@example.com",
        recipients=recipients,
        subject="Customer performance report: july2025",
        body_text=text,
        body_html=html,
        attachments=files,
        zip_above_bytes=10_000_000,
    )


def test_the_server_receives_envelope_subject_body_and_identical_attachments(
    smtp_server: tuple[int, RecordingHandler], report_files: list[Path]
) -> None:
    port, handler = smtp_server
    recipients = ["ana@example.com", "bo@example.org"]
    send_email(report(report_files, recipients), insecure_block(port))

    assert len(handler.received) == 1
    got = handler.received[0]
    assert got.mail_from == "reports@example.com"
    assert got.rcpt_tos == recipients
    arrived = email.message_from_bytes(got.content, policy=policy.default)
    assert arrived["Subject"] == "Customer performance report: july2025"
    body = arrived.get_body(("plain",)).get_content()
    # The figures given to summary_body above, as a reader sees them.
    for figure in (
        "USD 120.50",
        "100.0 %",
        "vip: +50.0 %",
        "99.0 %",
        "95.0 %",
        "[warning] accuracy below 96 %",
    ):
        assert figure in body, figure
    attachments = {
        part.get_filename(): part.get_payload(decode=True) for part in arrived.iter_attachments()
    }
    assert attachments == {path.name: path.read_bytes() for path in report_files}
    # The formula payload travelled inert.
    assert b"'=HYPERLINK" in attachments["customer_performance_july2025.csv"]


def test_a_closed_port_raises_a_readable_error_without_the_password() -> None:
    port = free_port()  # bound, then released: nothing listens there
    block = insecure_block(port, username=USERNAME, password=PASSWORD)
    message = report([], ["ana@example.com"])
    with pytest.raises(EmailDeliveryError) as caught:
        send_email(message, block, timeout_seconds=5)
    text = str(caught.value)
    assert f"127.0.0.1:{port}" in text and "refused the connection" in text
    assert caught.value.transient is True  # a restarted server would take it: retry
    assert PASSWORD not in "".join(traceback.format_exception(caught.value))


def test_a_server_that_never_answers_times_out() -> None:
    # A socket that listens but never accepts: the TCP connect succeeds (kernel backlog),
    # the SMTP greeting never comes.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = silent.getsockname()[1]
        with pytest.raises(EmailDeliveryError) as caught:
            send_email(report([], ["ana@example.com"]), insecure_block(port), timeout_seconds=0.5)
    assert f"127.0.0.1:{port}" in str(caught.value) and "time-out" in str(caught.value)
    assert caught.value.transient is True


def test_a_refused_recipient_names_the_address_and_nobody_gets_a_copy(
    smtp_server: tuple[int, RecordingHandler], report_files: list[Path]
) -> None:
    port, handler = smtp_server
    message = report(report_files, ["ana@example.com", REFUSED_ADDRESS])
    with pytest.raises(EmailDeliveryError) as caught:
        send_email(message, insecure_block(port))
    text = str(caught.value)
    assert REFUSED_ADDRESS in text and "550" in text and f"127.0.0.1:{port}" in text
    assert "ana@example.com" not in text  # only the refused address is named
    assert caught.value.transient is False  # 5xx: fix the address list, do not retry
    # All or nothing: the accepted recipient did not get a partial mailing either.
    assert handler.received == []


def test_starttls_with_login_delivers(
    starttls_server: tuple[int, RecordingHandler], report_files: list[Path]
) -> None:
    port, handler = starttls_server
    block = EmailServerCredentials(
        smtp_server="127.0.0.1",
        smtp_port=port,
        smtp_type="STARTTLS",
        username=USERNAME,
        password=PASSWORD,
        verify=False,  # self-signed test certificate
    )
    send_email(report(report_files, ["ana@example.com"]), block)
    assert [r.rcpt_tos for r in handler.received] == [["ana@example.com"]]


def test_a_wrong_password_is_reported_without_any_secret(
    starttls_server: tuple[int, RecordingHandler], report_files: list[Path]
) -> None:
    port, handler = starttls_server
    wrong = "wrong-" + PASSWORD
    block = EmailServerCredentials(
        smtp_server="127.0.0.1",
        smtp_port=port,
        smtp_type="STARTTLS",
        username=USERNAME,
        password=wrong,
        verify=False,
    )
    with pytest.raises(EmailDeliveryError) as caught:
        send_email(report(report_files, ["ana@example.com"]), block)
    text = str(caught.value)
    # The server's reply is kept (it says why), with the echoed password masked.
    assert f"127.0.0.1:{port}" in text and "rejected the login (535" in text and "***" in text
    assert caught.value.transient is False
    assert wrong not in "".join(traceback.format_exception(caught.value))
    assert handler.received == []


def test_verification_of_a_self_signed_certificate_fails_clearly(
    starttls_server: tuple[int, RecordingHandler],
) -> None:
    # verify left at its default (True): the untrusted certificate must stop the send.
    port, _ = starttls_server
    block = EmailServerCredentials(
        smtp_server="127.0.0.1",
        smtp_port=port,
        smtp_type="STARTTLS",
        username=USERNAME,
        password=PASSWORD,
    )
    with pytest.raises(EmailDeliveryError) as caught:
        send_email(report([], ["ana@example.com"]), block)
    assert "certificate" in str(caught.value) and caught.value.transient is False
