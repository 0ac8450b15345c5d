"""The report e-mail (SPEC §8.3): compose it and keep a copy as .eml.

Composition and the summary text are pure; `write_eml` is the only I/O here. The demo
has no SMTP server, so it writes the message to an outbox folder; production also sends
it (tasks/smtp_delivery.py) with the SMTP settings of a prefect-email
`EmailServerCredentials` block.
"""

from __future__ import annotations

import io
import logging
import mimetypes
import re
import zipfile
from email.message import EmailMessage
from email.utils import formatdate, getaddresses, make_msgid, parseaddr
from html import escape
from pathlib import Path
from typing import Any

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
    logger.info("wrote %s (%d recipients)", path, len(envelope_recipients(message)))
    return path


def envelope_recipients(message: EmailMessage) -> list[str]:
    fields = [str(value) for key in ("To", "Cc", "Bcc") for value in message.get_all(key, [])]
    return [address for _, address in getaddresses(fields) if address]
