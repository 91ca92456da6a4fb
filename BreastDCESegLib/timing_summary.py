"""Session summary of the timing study, per reader and mode, like Zhang et al. (Patterns 2023)
Table 4: mean ± SD minutes per case for manual annotation and for AI + refinement, the time
saved, and the Dice between the AI mask and the refined mask; as text, as table rows and as a
bar chart PNG (Pillow; a Slicer plot is made by :mod:`BreastDCESegLib.mrml.timingplot`).

Minutes per case are the record's ``total_seconds`` / 60: active time (the rule in the log)
plus, for AI + refinement, the model's inference time. SD is the sample standard deviation
(n - 1; None for a single case).

Usage::

    from BreastDCESegLib import timing, timing_summary
    summary = timing_summary.summarize(timing.TimingLog("timing/").read())
    print(timing_summary.format_summary(summary))
    timing_summary.plot_png(summary, "timing/summary.png")
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional, Sequence

from .timing import MODES, TimingRecord

MODE_TITLES = {"manual": "manual", "ai_refine": "AI + refinement"}
UNNAMED = "(no reader name)"
BAR_COLORS = {"manual": (150, 150, 150), "ai_refine": (40, 110, 200)}


def _values(values: Sequence[Optional[float]]) -> list[float]:
    return [float(v) for v in values if v is not None]


def mean_sd(values: Sequence[Optional[float]]) -> tuple[Optional[float], Optional[float]]:
    """(mean, sample SD) of the values that are not None; SD None below two values."""
    values = _values(values)
    if not values:
        return None, None
    mean = sum(values) / len(values)
    if len(values) < 2:
        return round(mean, 4), None
    return round(mean, 4), round(math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)), 4)


def _group(rows: list[TimingRecord]) -> dict[str, Any]:
    out: dict[str, Any] = {"cases": len(rows)}
    for name, values in (("total_min", [r.total_seconds / 60.0 for r in rows]),
                         ("active_min", [r.active_seconds / 60.0 for r in rows]),
                         ("wall_min", [r.wall_seconds / 60.0 for r in rows]),
                         ("ai_min", [r.ai_seconds / 60.0 for r in rows]),
                         ("edits", [float(r.edits) for r in rows]),
                         ("dice_ai_refined", [r.dice_ai_refined for r in rows]),
                         ("dice_refined_reference", [r.dice_refined_reference for r in rows])):
        out[f"{name}_mean"], out[f"{name}_sd"] = mean_sd(values)
    return out


def _saved(manual: Optional[float], assisted: Optional[float]) -> dict[str, Optional[float]]:
    if manual is None or assisted is None:
        return {"time_saved_min": None, "time_saved_percent": None, "speedup": None}
    return {"time_saved_min": round(manual - assisted, 4),
            "time_saved_percent": round(100.0 * (manual - assisted) / manual, 2) if manual > 0 else None,
            "speedup": round(manual / assisted, 3) if assisted > 0 else None}


def summarize(records: Sequence[TimingRecord]) -> dict[str, Any]:
    """``{"groups": [per reader and mode], "readers": {reader: time saved}, "modes": {mode: all
    readers}, "time_saved_min", "time_saved_percent", "speedup"}`` (time saved = mean manual
    minutes - mean AI + refinement minutes)."""
    readers = sorted({r.reader or UNNAMED for r in records})
    groups, per_reader = [], {}
    for reader in readers:
        means = {}
        for mode in MODES:
            rows = [r for r in records if (r.reader or UNNAMED) == reader and r.mode == mode]
            if rows:
                groups.append({"reader": reader, "mode": mode, **_group(rows)})
                means[mode] = groups[-1]["total_min_mean"]
        per_reader[reader] = {"manual_min": means.get("manual"), "ai_refine_min": means.get("ai_refine"),
                              **_saved(means.get("manual"), means.get("ai_refine"))}
    modes = {mode: _group([r for r in records if r.mode == mode]) for mode in MODES}
    return {"groups": groups, "readers": per_reader, "modes": modes,
            **_saved(modes["manual"]["total_min_mean"], modes["ai_refine"]["total_min_mean"])}


def _pm(mean: Optional[float], sd: Optional[float], digits: int = 2) -> str:
    if mean is None:
        return "-"
    return f"{mean:.{digits}f}" + ("" if sd is None else f" ± {sd:.{digits}f}")


def table_rows(summary: dict[str, Any]) -> list[dict[str, str]]:
    """One row per reader and mode (then an "all readers" row per mode), as text cells."""
    rows = []
    for g in summary["groups"] + [{"reader": "all readers", "mode": m, **s}
                                  for m, s in summary["modes"].items() if s["cases"]]:
        saved = summary["readers"].get(g["reader"], summary) if g["mode"] == "ai_refine" else {}
        rows.append({"Reader": g["reader"], "Mode": MODE_TITLES[g["mode"]], "Cases": str(g["cases"]),
                     "Minutes per case": _pm(g["total_min_mean"], g["total_min_sd"]),
                     "Active min": _pm(g["active_min_mean"], g["active_min_sd"]),
                     "Wall min": _pm(g["wall_min_mean"], g["wall_min_sd"]),
                     "Edits": _pm(g["edits_mean"], None, 1),
                     "Time saved min": _pm(saved.get("time_saved_min"), None),
                     "Dice AI-refined": _pm(g["dice_ai_refined_mean"], g["dice_ai_refined_sd"], 3)})
    return rows


def format_summary(summary: dict[str, Any]) -> str:
    """The summary as a fixed-width text table (mean ± SD minutes per case)."""
    rows = table_rows(summary)
    if not rows:
        return "no timed case yet"
    names = list(rows[0])
    widths = [max(len(n), *(len(r[n]) for r in rows)) for n in names]
    lines = ["  ".join(n.ljust(w) for n, w in zip(names, widths))]
    lines += ["  ".join(r[n].ljust(w) for n, w in zip(names, widths)) for r in rows]
    if summary.get("time_saved_min") is not None:
        lines.append(f"time saved: {summary['time_saved_min']:.2f} min per case "
                     f"({summary['time_saved_percent']:.1f} %), all readers")
    return "\n".join(lines)


def plot_png(summary: dict[str, Any], path: str | Path, size: tuple[int, int] = (720, 420)) -> dict[tuple, tuple]:
    """A grouped bar chart (per reader: manual grey, AI + refinement blue; whiskers ± SD) written to
    ``path``; returns the bar rectangles ``{(reader, mode): (x0, y0, x1, y1)}`` in pixels."""
    from PIL import Image, ImageDraw

    width, height = size
    left, right, top, bottom = 60, 20, 40, 60
    groups = summary["groups"]
    tops = [(g["total_min_mean"] or 0.0) + (g["total_min_sd"] or 0.0) for g in groups]
    y_max = max(tops + [1e-9]) * 1.1
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    scale = (height - top - bottom) / y_max
    base = height - bottom
    draw.line([(left, top), (left, base), (width - right, base)], fill="black")
    for k in range(5):
        value = y_max * k / 4
        y = base - value * scale
        draw.line([(left - 4, y), (left, y)], fill="black")
        draw.text((4, y - 6), f"{value:.1f}", fill="black")
    draw.text((left, 8), "Minutes per case (mean ± SD)", fill="black")
    readers = list(dict.fromkeys(g["reader"] for g in groups))
    slot = (width - left - right) / max(1, len(readers))
    bar = slot / 3.0
    bars: dict[tuple, tuple] = {}
    for i, reader in enumerate(readers):
        x = left + i * slot + slot / 6.0
        for j, mode in enumerate(MODES):
            g = next((g for g in groups if g["reader"] == reader and g["mode"] == mode), None)
            if g is None or g["total_min_mean"] is None:
                continue
            x0, x1 = round(x + j * bar), round(x + (j + 1) * bar) - 2
            y0 = round(base - g["total_min_mean"] * scale)
            draw.rectangle([x0, y0, x1, base - 1], fill=BAR_COLORS[mode])
            if g["total_min_sd"]:
                mid, half = (x0 + x1) / 2, g["total_min_sd"] * scale
                draw.line([(mid, y0 - half), (mid, y0 + half)], fill="black", width=2)
                draw.line([(mid - 5, y0 - half), (mid + 5, y0 - half)], fill="black", width=2)
            draw.text((x0, y0 - 14), f"{g['total_min_mean']:.2f}", fill="black")
            bars[(reader, mode)] = (x0, y0, x1, base - 1)
        draw.text((x, base + 8), reader[:24], fill="black")
    for j, mode in enumerate(MODES):
        draw.rectangle([width - 200, 8 + 16 * j, width - 188, 20 + 16 * j], fill=BAR_COLORS[mode])
        draw.text((width - 182, 8 + 16 * j), MODE_TITLES[mode], fill="black")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    image.save(tmp)
    tmp.replace(path)
    return bars
