"""The report e-mail, without a server: composition, attachments, zipping, body, outbox."""

from __future__ import annotations

import email
import io
import zipfile
from email import policy
from email.message import EmailMessage
from pathlib import Path

import pandas as pd
import pytest

from tasks.notify import compose_report_email, summary_body, write_eml

pytestmark = pytest.mark.unit

# Attachment bytes chosen to break naive handling: non-ASCII, CRLF inside a quoted cell,
# and a trailing line without newline in the second file.
PERFORMANCE_CSV = 'customer_id,name\nc1,Zoë\nc2,"two\r\nlines"\n'.encode()
REGIONAL_CSV = b"region,revenue\nnorth,12.5\nsouth,-3"


@pytest.fixture
def csv_files(tmp_path: Path) -> list[Path]:
    first = tmp_path / "customer_performance_july2025.csv"
    second = tmp_path / "regional_summary_july2025.csv"
    first.write_bytes(PERFORMANCE_CSV)
    second.write_bytes(REGIONAL_CSV)
    return [first, second]


def reparse(message: EmailMessage) -> EmailMessage:
    """The message as a recipient's mail client reads it: serialised, then parsed."""
    return email.message_from_bytes(message.as_bytes(), policy=policy.default)  # type: ignore[return-value]


def attachments_of(message: EmailMessage) -> dict[str, tuple[str, bytes]]:
    return {
        part.get_filename(): (part.get_content_type(), part.get_payload(decode=True))
        for part in message.iter_attachments()
    }


def compose(files: list[Path], zip_above_bytes: int = 10_000_000) -> EmailMessage:
    return compose_report_email(
        sender="Reports <reports@example.com>",
        recipients=["ana@example.com", "bo@example.org"],
        subject="Customer performance report: july2025",
        body_text="Revenue: USD 12.50\n",
        body_html="<p>Revenue: <b>USD 12.50</b></p>",
        attachments=files,
        zip_above_bytes=zip_above_bytes,
    )


def test_headers_and_both_bodies(csv_files: list[Path]) -> None:
    message = reparse(compose(csv_files))
    assert message["From"] == "Reports <reports@example.com>"
    assert message["To"] == "ana@example.com, bo@example.org"
    assert message["Subject"] == "Customer performance report: july2025"
    assert message["Message-ID"].endswith("@example.com>")
    assert message.get_body(("plain",)).get_content() == "Revenue: USD 12.50\n"
    assert "<b>USD 12.50</b>" in message.get_body(("html",)).get_content()


def test_attachments_are_csv_parts_byte_identical_to_the_files(csv_files: list[Path]) -> None:
    # A few dozen bytes in all, far below the 10 MB default: no zipping.
    found = attachments_of(reparse(compose(csv_files)))
    assert found == {
        "customer_performance_july2025.csv": ("text/csv", PERFORMANCE_CSV),
        "regional_summary_july2025.csv": ("text/csv", REGIONAL_CSV),
    }


def test_attachments_above_the_threshold_travel_as_one_zip(csv_files: list[Path]) -> None:
    total = len(PERFORMANCE_CSV) + len(REGIONAL_CSV)
    found = attachments_of(reparse(compose(csv_files, zip_above_bytes=total - 1)))

    assert list(found) == ["customer-performance-report-july2025.zip"]
    content_type, data = found["customer-performance-report-july2025.zip"]
    assert content_type == "application/zip"
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.namelist() == [p.name for p in csv_files]
        assert archive.read(csv_files[0].name) == PERFORMANCE_CSV
        assert archive.read(csv_files[1].name) == REGIONAL_CSV


def test_attachments_exactly_at_the_threshold_are_not_zipped(csv_files: list[Path]) -> None:
    # "Above" means strictly more: a total equal to the limit still goes as CSVs.
    total = len(PERFORMANCE_CSV) + len(REGIONAL_CSV)
    found = attachments_of(reparse(compose(csv_files, zip_above_bytes=total)))
    assert sorted(found) == sorted(p.name for p in csv_files)


def test_the_zip_is_the_same_bytes_on_a_rerun(csv_files: list[Path]) -> None:
    # A fixed timestamp inside the archive: the rerun's attachment is identical.
    first = attachments_of(compose(csv_files, zip_above_bytes=0))
    second = attachments_of(compose(csv_files, zip_above_bytes=0))
    assert first == second


def test_no_recipients_is_an_error(csv_files: list[Path]) -> None:
    with pytest.raises(ValueError, match="recipient"):
        compose_report_email(
            sender="reports@example.com",
            recipients=[],
            subject="s",
            body_text="b",
            body_html=None,
            attachments=csv_files,
            zip_above_bytes=0,
        )


def test_a_subject_with_a_newline_cannot_inject_headers(csv_files: list[Path]) -> None:
    with pytest.raises(ValueError):
        compose_report_email(
            sender="reports@example.com",
            recipients=["a@example.com"],
            subject="report\nBcc: attacker@example.com",
            body_text="b",
            body_html=None,
            attachments=[],
            zip_above_bytes=0,
        )


# --- summary body ---------------------------------------------------------------------------

# The shape tasks.insights.business_insights returns (only the parts the e-mail reads).
INSIGHTS = {
    # 12,345.5 is shown with a thousands separator and cents: USD 12,345.50; growth +3.2 %
    "totals": {
        "revenue": 12345.5,
        "revenue_growth_pct": 3.21,
        "customers": 1234,
        "active_customers": 567,
    },
    "pareto": {"revenue_share": 0.784},  # a fraction: 78.4 %
    # Percentages already: +12.3 %, -4.0 %; None (no revenue last period) shows as n/a.
    # Listed in the order given (business order), not alphabetically.
    "segments": {
        "vip": {"revenue_growth_pct": 12.34},
        "regular": {"revenue_growth_pct": -4.0},
        "new": {"revenue_growth_pct": None},
    },
    "at_risk": {"count": 12, "customers": []},
}
QUALITY = {"completeness": 0.987, "accuracy": 0.961, "quarantined": 14}
ALERTS = [{"kind": "revenue_drop", "severity": "warning", "message": "revenue fell 25.0 %"}]
FILES = ["customer_performance_july2025.csv", "data_quality_report_july2025.csv"]


def figure_line(text: str, label: str) -> str:
    """The value printed after `label:` in the plain body."""
    line = next(line for line in text.splitlines() if line.strip().startswith(label + ":"))
    return line.split(":", 1)[1].strip()


def section(text: str, heading: str) -> list[str]:
    """The indented lines under the heading that starts with `heading`, up to a blank line."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(heading)) + 1
    end = lines.index("", start) if "" in lines[start:] else len(lines)
    return [line.strip() for line in lines[start:end]]


def test_plain_body_carries_every_key_figure() -> None:
    text, _ = summary_body("july2025", INSIGHTS, QUALITY, ALERTS, FILES)
    assert "july2025" in text.splitlines()[0]
    assert figure_line(text, "Revenue") == "USD 12,345.50"
    assert figure_line(text, "Revenue growth") == "+3.2 %"
    assert figure_line(text, "Customers") == "1,234"
    assert figure_line(text, "Active customers") == "567"
    assert figure_line(text, "Revenue share of the top 20 %") == "78.4 %"
    assert figure_line(text, "At-risk customers") == "12"
    assert figure_line(text, "Data completeness") == "98.7 %"
    assert figure_line(text, "Data accuracy") == "96.1 %"
    assert figure_line(text, "Rows quarantined") == "14"
    assert section(text, "Revenue growth by segment") == [
        "vip: +12.3 %",
        "regular: -4.0 %",
        "new: n/a",
    ]
    assert "Alerts (1)" in text and "[warning] revenue fell 25.0 %" in text
    assert all(name in text for name in FILES)


def test_html_body_carries_the_figures_and_escapes_data() -> None:
    # A segment name and an alert text come from data: they must not become markup.
    insights = {**INSIGHTS, "segments": {"<script>x</script>": {"revenue_growth_pct": 1.0}}}
    alerts = [{"severity": "critical", "message": "region <b>&</b> dropped"}]
    _, html = summary_body("july2025", insights, QUALITY, alerts, FILES)
    assert "USD 12,345.50" in html and "78.4 %" in html and "98.7 %" in html
    assert "<script>" not in html and "&lt;script&gt;x&lt;/script&gt;" in html
    assert "region &lt;b&gt;&amp;&lt;/b&gt; dropped" in html


def test_missing_figures_show_as_not_available_instead_of_failing() -> None:
    # An empty insight dict (e.g. an aggregate that produced nothing) still gives a body.
    text, html = summary_body("july2025", {}, {}, [], [])
    assert "Revenue:" in text and "n/a" in text and "Alerts (0)" in text and "none" in text
    assert "n/a" in html


def test_the_body_reads_what_business_insights_really_returns() -> None:
    """Contract with tasks.insights: its real output, not a hand-made dict, fills the body."""
    from tasks.insights import business_insights

    customers = pd.DataFrame(
        {
            "period": ["2025-07"] * 3,
            "customer_id": ["c1", "c2", "c3"],
            "name": ["Ada", "Bo", "Cy"],
            "region": ["north", "north", "south"],
            # c1 buys 90 (was 60), c2 buys 10 (was 40), c3 bought nothing and is at risk:
            # revenue 100.00 against 100.00 -> growth +0.0 %; the top 20 % of the two buyers
            # is ceil(0.4) = 1 buyer, c1, with 90 / 100 = 90.0 % of revenue.
            "total_revenue": [90.0, 10.0, 0.0],
            "revenue_prev_period": [60.0, 40.0, 0.0],
            "transaction_count": [3, 1, 0],
            "customer_segment": ["vip", "regular", "at_risk"],
            "clv": [900.0, 100.0, None],
            "engagement_score": [80.0, 40.0, 5.0],
            "churn_probability": [0.1, 0.3, 0.9],
            "days_since_last_purchase": [2, 20, None],
            "open_tickets": [0, 0, 1],
        }
    )
    regional = pd.DataFrame({"dimension": ["geography"], "region": ["north"], "revenue": [100.0]})
    interactions = pd.DataFrame(
        {"customer_id": ["c3"], "interaction_type": ["ticket"], "satisfaction_score": [2.0]}
    )
    insights = business_insights(customers, regional, interactions)

    text, _ = summary_body("july2025", insights, QUALITY, [], [])
    assert figure_line(text, "Revenue") == "USD 100.00"
    assert figure_line(text, "Revenue growth") == "+0.0 %"
    assert figure_line(text, "Customers") == "3"
    assert figure_line(text, "Active customers") == "2"  # c1 and c2 have transactions
    assert figure_line(text, "Revenue share of the top 20 %") == "90.0 %"
    assert figure_line(text, "At-risk customers") == "1"
    # vip 60 -> 90 is +50 %, regular 40 -> 10 is -75 %, at_risk had nothing to grow from;
    # in the business order business_insights gives (vip, at_risk, new, regular).
    assert section(text, "Revenue growth by segment") == [
        "vip: +50.0 %",
        "at_risk: n/a",
        "regular: -75.0 %",
    ]


# --- outbox -------------------------------------------------------------------------------------


def test_write_eml_saves_the_message_and_a_rerun_replaces_it(
    tmp_path: Path, csv_files: list[Path]
) -> None:
    outbox = tmp_path / "outbox"
    first = write_eml(compose(csv_files), outbox)
    second_message = compose(csv_files[:1])  # the rerun attaches one file only
    second = write_eml(second_message, outbox)

    assert first == second == outbox / "customer-performance-report-july2025.eml"
    assert [p.name for p in outbox.iterdir()] == [second.name]  # no temp file, no duplicate
    saved = email.message_from_bytes(second.read_bytes(), policy=policy.default)
    assert saved["Subject"] == "Customer performance report: july2025"
    assert list(attachments_of(saved)) == [csv_files[0].name]


def test_a_non_ascii_body_is_sent_7bit_clean_and_reads_back_intact() -> None:
    # A segment or customer name with an accent must not need 8BITMIME from the relay.
    message = compose_report_email(
        sender="reports@example.com",
        recipients=["a@example.com"],
        subject="Zoë's report",
        body_text="Segment Zoë: +5.0 %\n",
        body_html="<p>Zoë</p>",
        attachments=[],
        zip_above_bytes=0,
    )
    raw = message.as_bytes()
    assert raw.isascii()
    back = email.message_from_bytes(raw, policy=policy.default)
    assert back["Subject"] == "Zoë's report"
    assert back.get_body(("plain",)).get_content() == "Segment Zoë: +5.0 %\n"
    assert back.get_body(("html",)).get_content().strip() == "<p>Zoë</p>"
