"""Medians over the repeats, the ratios the issue asks for, and the Markdown table.

Pure functions on the JSON that the probes write: nothing here touches a database.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

DATA_STAGES = ("extract", "filter_period", "validate_data", "calculate_metrics", "aggregate", "load", "export")
MOVEMENT_STAGES = ("extract", "load")  # compared with the floor


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def stage_medians(runs: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """stage -> median seconds, rows (of the first run), median peak RSS over the runs."""
    names: list[str] = []
    for run in runs:
        names += [s["stage"] for s in run["stages"] if s["stage"] not in names]
    table = {}
    for name in names:
        picked = [s for run in runs for s in run["stages"] if s["stage"] == name]
        table[name] = {
            "seconds": median([s["seconds"] for s in picked]) or 0.0,
            "rows": picked[0]["rows"],
            "peak_rss_mb": median([s["peak_rss_mb"] for s in picked]) or 0.0,
        }
    return table


def summarise(pipeline: Sequence[dict[str, Any]], naive: Sequence[dict[str, Any]],
              floor: Sequence[dict[str, Any]], scaled: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """Medians of each side and the ratios: naive / pipeline and pipeline / floor."""
    summary: dict[str, Any] = {"pipeline": stage_medians(pipeline)}
    summary["pipeline_totals"] = {
        key: median([run[key] for run in pipeline])
        for key in ("data_work_s", "other_tasks_s", "startup_s", "orchestration_s", "total_wall_s", "peak_rss_mb")
    }
    summary["pipeline_totals"]["data_work_overlap_s"] = median(
        [run.get("data_work_overlap_s", 0.0) for run in pipeline]
    )
    if scaled:
        summary["scale_out"] = stage_medians(scaled)
        summary["scale_out_totals"] = {
            key: median([run[key] for run in scaled])
            for key in ("data_work_s", "startup_s", "orchestration_s", "total_wall_s", "peak_rss_mb")
        }
    if naive:
        summary["naive"] = stage_medians(naive)
        summary["naive_totals"] = {
            key: median([run[key] for run in naive]) for key in ("data_work_s", "peak_rss_mb")
        }
        summary["speedup_data_work"] = summary["naive_totals"]["data_work_s"] / summary["pipeline_totals"]["data_work_s"]
    if floor:
        summary["floor"] = stage_medians(floor)
        summary["vs_floor"] = {
            stage: summary["pipeline"][stage]["seconds"] / summary["floor"][stage]["seconds"]
            for stage in MOVEMENT_STAGES
            if stage in summary["floor"] and stage in summary["pipeline"] and summary["floor"][stage]["seconds"] > 0
        }
    return summary


def _num(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def _rate(rows: float | None, seconds: float | None) -> str:
    if not rows or not seconds:
        return "–"
    return f"{rows / seconds:,.0f}"


def markdown(summary: dict[str, Any], context: dict[str, Any]) -> str:
    """The README table: one row per stage, then the whole-run lines."""
    pipe, naive, floor = summary["pipeline"], summary.get("naive", {}), summary.get("floor", {})
    lines = [
        f"### S = {context['scale']:,} ({context['rows']['customers']:,} customers, "
        f"{context['rows']['transactions']:,} transactions, {context['rows']['interactions']:,} interactions)",
        "",
        f"{context['machine']}; medians of {context['repeat']} run(s), {context['date']}; "
        f"load average before/after: {context['loadavg']}.",
        "",
        "| stage | pipeline s | rows | rows/s | peak RSS MB | naive s | naive peak RSS MB | naive / pipeline | floor s | pipeline / floor |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for stage in (*DATA_STAGES, *(s for s in pipe if s not in DATA_STAGES)):
        if stage not in pipe:
            continue
        p = pipe[stage]
        n = naive.get(stage)
        f = floor.get(stage)
        speedup = f"{n['seconds'] / p['seconds']:.1f}×" if n and p["seconds"] else "–"
        vs_floor = f"{p['seconds'] / f['seconds']:.1f}×" if f and f["seconds"] else "–"
        lines.append(
            f"| {stage} | {_num(p['seconds'])} | {p['rows']:,} | {_rate(p['rows'], p['seconds'])} | "
            f"{_num(p['peak_rss_mb'], 0)} | {_num(n['seconds'] if n else None)} | "
            f"{_num(n['peak_rss_mb'] if n else None, 0)} | {speedup} | {_num(f['seconds'] if f else None)} | {vs_floor} |"
        )
    totals = summary["pipeline_totals"]
    naive_totals = summary.get("naive_totals", {})
    speedup = summary.get("speedup_data_work")
    lines += [
        f"| **data work (extract → export)** | **{_num(totals['data_work_s'])}** | | | "
        f"{_num(totals['peak_rss_mb'], 0)} | **{_num(naive_totals.get('data_work_s'))}** | "
        f"{_num(naive_totals.get('peak_rss_mb'), 0)} | **{f'{speedup:.1f}×' if speedup else '–'}** | | |",
        "",
        *(
            [f"- load and export run side by side: the stage rows add up to "
             f"{_num(totals['data_work_overlap_s'])} s more than the data work, which counts that time once"]
            if totals.get("data_work_overlap_s", 0) >= 0.005 else []
        ),
        f"- orchestrator start-up (cold interpreter → first task: imports, ephemeral Prefect API, flow run): "
        f"{_num(totals['startup_s'])} s",
        f"- orchestration between tasks (sub-flow runs, state changes, results): {_num(totals['orchestration_s'])} s; "
        f"dashboard + BI push + e-mail + summary tasks: {_num(totals['other_tasks_s'])} s",
        f"- whole flow, start-up included: {_num(totals['total_wall_s'])} s; pipeline peak RSS "
        f"{_num(totals['peak_rss_mb'], 0)} MB",
    ]
    if "floor" in summary:
        extras = [f"{stage} {ratio:.1f}×" for stage, ratio in summary["vs_floor"].items()]
        revenue = floor.get("revenue_sql")
        lines.append(f"- pipeline / floor, data-movement stages: {', '.join(extras)}"
                     + (f"; per-customer revenue in SQL (MariaDB): {_num(revenue['seconds'])} s" if revenue else ""))
    if "scale_out" in summary:
        scaled = summary["scale_out_totals"]
        lines.append(
            f"- scale-out ({context.get('partitions')} partitions, Dask LocalCluster): data work "
            f"{_num(scaled['data_work_s'])} s, whole flow {_num(scaled['total_wall_s'])} s, peak RSS "
            f"(driver + workers) {_num(scaled['peak_rss_mb'], 0)} MB; CSVs identical to single-process: "
            f"{context.get('scale_out_identical')}"
        )
    if context.get("naive_failures"):
        lines.append(f"- naive baseline failed in {len(context['naive_failures'])} run(s): "
                     + "; ".join(context["naive_failures"]))
    if context.get("naive_identical") is not None:
        lines.append("- naive baseline's three CSVs (customer performance, regional summary, quality "
                     f"report) byte-identical to the pipeline's, last repeat: {context['naive_identical']}")
    return "\n".join(lines) + "\n"
