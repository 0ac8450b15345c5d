"""Inline SVG charts for the offline dashboard, drawn in Python (no JavaScript, no library).

Each chart is one `<svg>` with a stable id and data-* attributes that tell a test (or a
curious reader) what it holds: `data-points`, `data-bars`, `data-rows`/`data-cols`.
Every mark carries a `<title>`, which browsers show as a tooltip. Sizes are in viewBox
units; the SVG scales to its card's width.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tasks.dashboard_html import attrs, esc

ACCENT = "#2563eb"
ACCENT_FILL = "#dbeafe"
BAR = "#3b82f6"
HEAT_LOW = (239, 246, 255)  # #eff6ff
HEAT_HIGH = (30, 64, 175)  # #1e40af

Formatter = Callable[[float], str]


@dataclass(frozen=True)
class Point:
    """One x position of a chart: its axis label, its value and a full label for tooltips."""

    label: str
    value: float
    key: str  # e.g. the ISO day; written to data-key
    tooltip: str = ""
    flagged: bool = False  # drawn in the alert colour (a day with an anomaly alert)


def nice_ticks(maximum: float, count: int = 5) -> list[float]:
    """0 … a round number ≥ maximum, in steps of 1, 2, 2.5 or 5 × 10^k."""
    if maximum <= 0 or not math.isfinite(maximum):
        return [0.0, 1.0]
    raw_step = maximum / count
    magnitude = 10 ** math.floor(math.log10(raw_step))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw_step)
    top = math.ceil(maximum / step - 1e-9) * step
    return [round(i * step, 10) for i in range(int(round(top / step)) + 1)]


def _empty(chart_id: str, data: dict[str, int], width: int, height: int) -> str:
    return (
        f'<svg class="chart" id="{esc(chart_id)}"{attrs(**data)} viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="no data"><text x="{width / 2}" y="{height / 2}" '
        'text-anchor="middle">No data for this period</text></svg>'
    )


def _y_axis(
    ticks: list[float], y_of: Callable[[float], float], left: int, right: int, fmt: Formatter
) -> str:
    lines = []
    for tick in ticks:
        y = y_of(tick)
        lines.append(
            f'<line class="grid" x1="{left}" x2="{right}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end">{esc(fmt(tick))}</text>'
        )
    return "".join(lines)


def _axis_titles(x_title: str, y_title: str, width: int, height: int, top: int, bottom: int) -> str:
    middle_y = top + (height - top - bottom) / 2
    return (
        f'<text class="axis-title" x="{width / 2:.0f}" y="{height - 6}" text-anchor="middle">{esc(x_title)}</text>'
        f'<text class="axis-title" transform="translate(14 {middle_y:.0f}) rotate(-90)" '
        f'text-anchor="middle">{esc(y_title)}</text>'
    )


def line_chart(
    chart_id: str,
    points: Sequence[Point],
    *,
    x_title: str,
    y_title: str,
    fmt: Formatter,
    width: int = 1200,
    height: int = 300,
) -> str:
    """A line with a soft area under it and a dot per point; data-points = len(points)."""
    if not points:
        return _empty(chart_id, {"data_points": 0}, width, height)
    left, right, top, bottom = 76, 18, 14, 52
    ticks = nice_ticks(max(p.value for p in points))
    span = ticks[-1] or 1.0
    plot_w, plot_h = width - left - right, height - top - bottom

    def x_of(index: int) -> float:
        return left + (plot_w * index / (len(points) - 1) if len(points) > 1 else plot_w / 2)

    def y_of(value: float) -> float:
        return top + plot_h * (1 - max(value, 0.0) / span)

    coords = [(x_of(i), y_of(p.value)) for i, p in enumerate(points)]
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
    base = top + plot_h
    area = f"M{coords[0][0]:.1f},{base} L" + " L".join(f"{x:.1f},{y:.1f}" for x, y in coords)
    area += f" L{coords[-1][0]:.1f},{base} Z"
    label_every = max(1, math.ceil(len(points) / 12))
    x_labels = "".join(
        f'<text x="{x:.1f}" y="{base + 18}" text-anchor="middle">{esc(p.label)}</text>'
        for i, (p, (x, _)) in enumerate(zip(points, coords, strict=True))
        if i % label_every == 0 or i == len(points) - 1
    )
    dots = "".join(
        f'<circle class="point{" flagged" if p.flagged else ""}" cx="{x:.1f}" cy="{y:.1f}" '
        f'r="{5 if p.flagged else 3.2}" fill="#fff" stroke="{ACCENT}" stroke-width="2"'
        f"{attrs(data_key=p.key, data_value=f'{p.value:.2f}', data_flagged='true' if p.flagged else None)}>"
        f"<title>{esc(p.tooltip or p.label)}: {esc(fmt(p.value))}</title></circle>"
        for p, (x, y) in zip(points, coords, strict=True)
    )
    return (
        f'<svg class="chart" id="{esc(chart_id)}" data-points="{len(points)}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{esc(y_title)} by {esc(x_title)}">'
        + _y_axis(ticks, y_of, left, width - right, fmt)
        + f'<line class="axis" x1="{left}" x2="{width - right}" y1="{base}" y2="{base}"/>'
        + f'<path d="{area}" fill="{ACCENT_FILL}" fill-opacity="0.6"/>'
        + f'<polyline points="{line}" fill="none" stroke="{ACCENT}" stroke-width="2.2" stroke-linejoin="round"/>'
        + dots
        + x_labels
        + _axis_titles(x_title, y_title, width, height, top, bottom)
        + "</svg>"
    )


def column_chart(
    chart_id: str,
    points: Sequence[Point],
    *,
    x_title: str,
    y_title: str,
    fmt: Formatter,
    width: int = 600,
    height: int = 300,
) -> str:
    """Vertical bars with their value on top; data-bars = len(points)."""
    if not points:
        return _empty(chart_id, {"data_bars": 0}, width, height)
    left, right, top, bottom = 76, 14, 22, 52
    ticks = nice_ticks(max(p.value for p in points))
    span = ticks[-1] or 1.0
    plot_w, plot_h = width - left - right, height - top - bottom
    slot = plot_w / len(points)
    bar_w = min(slot * 0.62, 90)
    base = top + plot_h

    def y_of(value: float) -> float:
        return top + plot_h * (1 - max(value, 0.0) / span)

    bars = []
    for i, p in enumerate(points):
        x = left + slot * i + (slot - bar_w) / 2
        y = y_of(p.value)
        bars.append(
            f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" height="{base - y:.1f}" '
            f'rx="3" fill="{BAR}"{attrs(data_key=p.key, data_value=f"{p.value:.2f}")}>'
            f"<title>{esc(p.tooltip or p.label)}: {esc(fmt(p.value))}</title></rect>"
            f'<text class="value" x="{x + bar_w / 2:.1f}" y="{y - 6:.1f}" text-anchor="middle">{esc(fmt(p.value))}</text>'
            f'<text x="{x + bar_w / 2:.1f}" y="{base + 18}" text-anchor="middle">{esc(p.label)}</text>'
        )
    return (
        f'<svg class="chart" id="{esc(chart_id)}" data-bars="{len(points)}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{esc(y_title)} by {esc(x_title)}">'
        + _y_axis(ticks, y_of, left, width - right, fmt)
        + f'<line class="axis" x1="{left}" x2="{width - right}" y1="{base}" y2="{base}"/>'
        + "".join(bars)
        + _axis_titles(x_title, y_title, width, height, top, bottom)
        + "</svg>"
    )


def bar_chart(
    chart_id: str,
    points: Sequence[Point],
    *,
    value_title: str,
    fmt: Formatter,
    width: int = 600,
) -> str:
    """Horizontal bars, largest first as given, labels on the left; data-bars = len(points)."""
    row_h, top, bottom, left, right = 30, 8, 40, 150, 90
    height = top + bottom + row_h * max(len(points), 1)
    if not points:
        return _empty(chart_id, {"data_bars": 0}, width, height)
    ticks = nice_ticks(max(p.value for p in points), count=4)
    span = ticks[-1] or 1.0
    plot_w = width - left - right
    base = top + row_h * len(points)

    def x_of(value: float) -> float:
        return left + plot_w * max(value, 0.0) / span

    grid = "".join(
        f'<line class="grid" x1="{x_of(t):.1f}" x2="{x_of(t):.1f}" y1="{top}" y2="{base}"/>'
        f'<text x="{x_of(t):.1f}" y="{base + 16}" text-anchor="middle">{esc(fmt(t))}</text>'
        for t in ticks
    )
    bars = []
    for i, p in enumerate(points):
        y = top + row_h * i + 5
        bar_w = x_of(p.value) - left
        bars.append(
            f'<text x="{left - 8}" y="{y + 14}" text-anchor="end">{esc(p.label)}</text>'
            f'<rect class="bar" x="{left}" y="{y}" width="{bar_w:.1f}" height="{row_h - 10}" rx="3" '
            f'fill="{BAR}"{attrs(data_key=p.key, data_value=f"{p.value:.2f}")}>'
            f"<title>{esc(p.tooltip or p.label)}: {esc(fmt(p.value))}</title></rect>"
            f'<text class="value" x="{left + bar_w + 6:.1f}" y="{y + 14}">{esc(fmt(p.value))}</text>'
        )
    return (
        f'<svg class="chart" id="{esc(chart_id)}" data-bars="{len(points)}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{esc(value_title)}">'
        + grid
        + "".join(bars)
        + f'<text class="axis-title" x="{left + plot_w / 2:.0f}" y="{height - 6}" text-anchor="middle">{esc(value_title)}</text>'
        + "</svg>"
    )


def _heat_colour(share: float) -> str:
    r, g, b = (round(lo + (hi - lo) * share) for lo, hi in zip(HEAT_LOW, HEAT_HIGH, strict=True))
    return f"#{r:02x}{g:02x}{b:02x}"


def heatmap(
    chart_id: str,
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    values: Sequence[Sequence[float]],
    *,
    fmt: Formatter,
    legend_title: str,
    row_title: str,
    col_title: str,
    width: int = 600,
) -> str:
    """A grid of cells shaded by value (light = low, dark = high), value written in each cell."""
    cell_h, top, left, right, bottom = 34, 40, 130, 12, 46
    height = top + bottom + cell_h * max(len(row_labels), 1)
    if not row_labels or not col_labels:
        return _empty(chart_id, {"data_rows": 0, "data_cols": 0}, width, height)
    cell_w = (width - left - right) / len(col_labels)
    peak = max((v for row in values for v in row), default=0.0) or 1.0
    header = "".join(
        f'<text x="{left + cell_w * (j + 0.5):.1f}" y="{top - 10}" text-anchor="middle">{esc(label)}</text>'
        for j, label in enumerate(col_labels)
    )
    cells = []
    for i, row_label in enumerate(row_labels):
        y = top + cell_h * i
        cells.append(
            f'<text x="{left - 8}" y="{y + cell_h / 2 + 4:.1f}" text-anchor="end">{esc(row_label)}</text>'
        )
        for j, col_label in enumerate(col_labels):
            value = values[i][j]
            share = max(value, 0.0) / peak
            x = left + cell_w * j
            ink = "#ffffff" if share > 0.55 else "#1f2937"
            cells.append(
                f'<rect class="cell" x="{x + 1:.1f}" y="{y + 1}" width="{cell_w - 2:.1f}" height="{cell_h - 2}" '
                f'rx="3" fill="{_heat_colour(share)}"{attrs(data_row=row_label, data_col=col_label, data_value=f"{value:g}")}>'
                f"<title>{esc(row_label)} · {esc(col_label)}: {esc(fmt(value))}</title></rect>"
                f'<text x="{x + cell_w / 2:.1f}" y="{y + cell_h / 2 + 4:.1f}" text-anchor="middle" '
                f'style="fill:{ink}">{esc(fmt(value))}</text>'
            )
    legend_y = top + cell_h * len(row_labels) + 14
    gradient_id = f"{chart_id}-scale"
    legend = (
        f'<defs><linearGradient id="{esc(gradient_id)}"><stop offset="0" stop-color="{_heat_colour(0)}"/>'
        f'<stop offset="1" stop-color="{_heat_colour(1)}"/></linearGradient></defs>'
        f'<text x="{left - 8}" y="{legend_y + 10}" text-anchor="end">{esc(legend_title)}</text>'
        f'<text x="{left}" y="{legend_y + 10}">0</text>'
        f'<rect x="{left + 16}" y="{legend_y}" width="160" height="12" rx="2" fill="url(#{esc(gradient_id)})"/>'
        f'<text x="{left + 182}" y="{legend_y + 10}">{esc(fmt(peak))}</text>'
    )
    return (
        f'<svg class="chart heatmap" id="{esc(chart_id)}" data-rows="{len(row_labels)}" '
        f'data-cols="{len(col_labels)}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{esc(legend_title)} by {esc(row_title)} and {esc(col_title)}">'
        + header
        + "".join(cells)
        + legend
        + "</svg>"
    )
