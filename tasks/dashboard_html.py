"""HTML building blocks for the offline dashboard: escaping, number formats, tables, page.

Everything that reaches the page passes through `esc` (text and attribute values alike),
so a customer called `<script>` is shown as text. The page carries a Content-Security-
Policy that forbids scripts and every network fetch: even a missed escape could not run
code or phone home, and the file works the same with the network off.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd

CURRENCY_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥"}

# Scripts and fetches are off; styles are inline (one <style> element and style attributes).
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
    "base-uri 'none'; form-action 'none'"
)


def esc(value: Any) -> str:
    """Text or attribute value, HTML-escaped (quotes included); None and NaN become ''."""
    if is_missing(value):
        return ""
    return html.escape(str(value), quote=True)


def is_missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # lists, dicts: not a missing scalar
        return False


def attrs(**values: Any) -> str:
    """' name="value"' pairs, escaped; data_x becomes data-x; None values are left out."""
    parts = []
    for name, value in values.items():
        if value is None:
            continue
        parts.append(f' {name.rstrip("_").replace("_", "-")}="{esc(value)}"')
    return "".join(parts)


def money(value: Any, currency: str = "USD", decimals: int = 2) -> str:
    if is_missing(value):
        return "–"
    symbol = CURRENCY_SYMBOLS.get(currency)
    number = f"{abs(float(value)):,.{decimals}f}"
    sign = "−" if float(value) < 0 else ""
    return f"{sign}{symbol}{number}" if symbol else f"{sign}{number} {currency}"


def compact(value: float, currency: str | None = None) -> str:
    """Short axis label: 1.2K, 3.4M; with a currency symbol when given."""
    magnitude = abs(value)
    for limit, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if magnitude >= limit:
            text = f"{value / limit:.1f}".rstrip("0").rstrip(".") + suffix
            break
    else:
        text = f"{value:.2f}".rstrip("0").rstrip(".") if magnitude < 10 else f"{value:,.0f}"
    if currency is None:
        return text
    symbol = CURRENCY_SYMBOLS.get(currency, "")
    return f"−{symbol}{text[1:]}" if text.startswith("-") else f"{symbol}{text}"


def number(value: Any, decimals: int = 0) -> str:
    if is_missing(value):
        return "–"
    return f"{float(value):,.{decimals}f}"


def percent(fraction: Any, decimals: int = 1) -> str:
    """A share given as a fraction (0.25) shown as a percentage (25.0%)."""
    if is_missing(fraction):
        return "–"
    return f"{float(fraction) * 100:.{decimals}f}%"


def signed_percent(points: Any, decimals: int = 1) -> str:
    """A change already in percent (12.5) shown with its sign (+12.5%)."""
    if is_missing(points) or not math.isfinite(float(points)):
        return "–"
    return f"{float(points):+.{decimals}f}%"


def table(
    table_id: str,
    headers: Sequence[str],
    rows: Iterable[Sequence[str]],
    *,
    numeric: Sequence[bool] | None = None,
    caption: str | None = None,
    row_attrs: Sequence[str] | None = None,
) -> str:
    """A <table>; `rows` hold already-escaped cell HTML, `numeric` right-aligns columns."""
    numeric = numeric or [False] * len(headers)
    body = []
    materialised = list(rows)
    for index, row in enumerate(materialised):
        extra = row_attrs[index] if row_attrs else ""
        cells = "".join(
            f'<td class="num">{cell}</td>' if numeric[i] else f"<td>{cell}</td>"
            for i, cell in enumerate(row)
        )
        body.append(f"<tr{extra}>{cells}</tr>")
    head = "".join(
        f'<th class="num">{esc(h)}</th>' if numeric[i] else f"<th>{esc(h)}</th>"
        for i, h in enumerate(headers)
    )
    caption_html = f"<caption>{esc(caption)}</caption>" if caption else ""
    if not materialised:
        body.append(f'<tr><td class="empty" colspan="{len(headers)}">No rows</td></tr>')
    # The wrapper scrolls sideways instead of letting a wide table spill over its card.
    return (
        f'<div class="table-wrap"><table id="{esc(table_id)}" data-rows="{len(materialised)}">{caption_html}'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
    )


def section(
    section_id: str, title: str, body: str, *, subtitle: str | None = None, wide: bool = False
) -> str:
    classes = "card wide" if wide else "card"
    sub = f'<p class="subtitle">{esc(subtitle)}</p>' if subtitle else ""
    return (
        f'<section id="{esc(section_id)}" class="{classes}">'
        f"<h2>{esc(title)}</h2>{sub}{body}</section>"
    )


STYLE = """
:root {
  --ink: #1f2937; --muted: #6b7280; --line: #e5e7eb; --bg: #f4f6f9; --card: #ffffff;
  --accent: #2563eb; --accent-soft: #dbeafe;
  --critical: #b91c1c; --critical-bg: #fef2f2; --warning: #b45309; --warning-bg: #fffbeb;
  --info: #1d4ed8; --info-bg: #eff6ff; --good: #047857;
}
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body {
  margin: 0; background: var(--bg); color: var(--ink);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
  font-variant-numeric: tabular-nums;
}
header.page { background: #111827; color: #f9fafb; padding: 22px 32px; }
header.page h1 { margin: 0; font-size: 22px; font-weight: 600; letter-spacing: 0.2px; }
header.page p { margin: 4px 0 0; color: #9ca3af; font-size: 13px; }
main { max-width: 1360px; margin: 0 auto; padding: 20px 24px 40px;
  display: grid; grid-template-columns: repeat(2, minmax(0, 1fr)); gap: 18px; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 10px;
  padding: 16px 18px; box-shadow: 0 1px 2px rgba(17, 24, 39, 0.04); min-width: 0; }
.card.wide { grid-column: 1 / -1; }
.card h2 { margin: 0 0 2px; font-size: 15px; font-weight: 600; }
.card h3 { margin: 14px 0 6px; font-size: 13px; font-weight: 600; color: var(--muted);
  text-transform: uppercase; letter-spacing: 0.5px; }
.subtitle { margin: 0 0 10px; color: var(--muted); font-size: 12.5px; }
.kpis { display: grid; grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)); gap: 12px; }
.kpi { border: 1px solid var(--line); border-radius: 8px; padding: 10px 12px; background: #fbfcfe; }
.kpi .label { color: var(--muted); font-size: 12px; }
.kpi .value { font-size: 21px; font-weight: 600; margin-top: 2px; }
.kpi .note { font-size: 12px; color: var(--muted); }
.kpi .note.up { color: var(--good); } .kpi .note.down { color: var(--critical); }
.two-col { display: grid; grid-template-columns: repeat(2, minmax(0, 1fr)); gap: 18px; }
.table-wrap { overflow-x: auto; max-width: 100%; }
table { width: 100%; border-collapse: collapse; font-size: 12.5px; }
caption { text-align: left; color: var(--muted); font-size: 12px; padding-bottom: 4px; }
th, td { padding: 5px 7px; border-bottom: 1px solid var(--line); text-align: left;
  white-space: nowrap; overflow: hidden; text-overflow: ellipsis; max-width: 260px; }
th { color: var(--muted); font-weight: 600; font-size: 11px; text-transform: uppercase;
  letter-spacing: 0.3px; background: #f9fafb; white-space: normal; vertical-align: bottom; }
td.num, th.num { text-align: right; }
td.empty { color: var(--muted); text-align: center; font-style: italic; }
tbody tr:hover { background: #f9fafb; }
.tag { display: inline-block; padding: 1px 7px; border-radius: 999px; font-size: 11px;
  font-weight: 600; background: var(--accent-soft); color: var(--accent); }
.tag.vip { background: #ede9fe; color: #6d28d9; } .tag.at_risk { background: var(--critical-bg); color: var(--critical); }
.tag.new { background: #ecfdf5; color: var(--good); } .tag.regular { background: #f3f4f6; color: #374151; }
ul.alerts { list-style: none; margin: 0; padding: 0; display: grid; gap: 8px; }
ul.alerts li { border-left: 4px solid var(--info); background: var(--info-bg); padding: 8px 12px;
  border-radius: 0 6px 6px 0; }
ul.alerts li.critical { border-color: var(--critical); background: var(--critical-bg); }
ul.alerts li.warning { border-color: var(--warning); background: var(--warning-bg); }
ul.alerts .sev { font-size: 11px; font-weight: 700; text-transform: uppercase; letter-spacing: 0.5px; margin-right: 8px; }
ul.alerts li.critical .sev { color: var(--critical); } ul.alerts li.warning .sev { color: var(--warning); }
.none { color: var(--muted); font-style: italic; margin: 4px 0; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 6px 18px; margin: 0; }
dl.facts dt { color: var(--muted); } dl.facts dd { margin: 0; font-weight: 600; }
svg.chart { display: block; width: 100%; height: auto; }
svg.chart text { font-family: inherit; fill: #4b5563; font-size: 11px; }
svg.chart .axis-title { font-size: 11.5px; fill: #374151; font-weight: 600; }
svg.chart .grid { stroke: #eef0f3; } svg.chart .axis { stroke: #9ca3af; }
svg.chart .value { fill: #1f2937; font-weight: 600; }
svg.chart circle.flagged { fill: #dc2626; stroke: #fff; }
footer { grid-column: 1 / -1; color: var(--muted); font-size: 12px; text-align: center; }
@media (max-width: 900px) { main, .two-col { grid-template-columns: minmax(0, 1fr); } }
@media print { body { background: #fff; } .card { break-inside: avoid; box-shadow: none; } }
"""


def page(*, title: str, subtitle: str, body: str) -> str:
    """The whole document: head with CSP and styles, a header bar, the cards."""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{esc(CONTENT_SECURITY_POLICY)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="referrer" content="no-referrer">'
        # An empty icon: otherwise a browser asks for /favicon.ico.
        '<link rel="icon" href="data:,">'
        f"<title>{esc(title)}</title><style>{STYLE}</style></head>"
        f'<body><header class="page"><h1>{esc(title)}</h1><p>{esc(subtitle)}</p></header>'
        f"<main>{body}</main></body></html>\n"
    )
