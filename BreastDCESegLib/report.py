"""Case report a radiologist opens in a browser: ``<case>_report.html`` and ``<case>_views.png``.

The page is self-contained (no network, no sibling file): the axial, sagittal and coronal
views through the largest lesion and the 3-D view, rendered by Slicer's own views
(:mod:`BreastDCESegLib.mrml.render`), are embedded as PNG data URIs; the enhancement curve
is an inline SVG. It lists the lesions (volume, longest diameter, T-stage, curve type, SER),
the model and whether its weights are demo weights, and the timings. ``<case>_views.png``
is the four views side by side. The cohort page (:mod:`.report_cohort`) links the cases.

Usage::

    result = inference.segment(study, "kinetic")
    paths = write_case_report(study, result, "out")     # out/<case>_report.html, out/<case>_views.png
    html = case_report_html(study, result, views)       # from views rendered elsewhere (the panel)
"""

from __future__ import annotations

import base64
import datetime
import html
import io
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from .results import SegmentationResult
from .study import DCEStudy

REPORT_SUFFIXES = {"html": "_report.html", "views": "_views.png"}
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1500px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:22px 0 8px;border-bottom:1px solid #ddd}
.note{background:#fff4d6;border:1px solid #e8c66a;padding:8px 12px;border-radius:4px;margin:10px 0}
.views{display:flex;flex-wrap:wrap;gap:8px} figure{margin:0} figcaption{font-size:12px;color:#555;text-align:center}
img{display:block;border:1px solid #333}
table{border-collapse:collapse;font-size:14px} td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f3f3f3} td:first-child,th:first-child{text-align:left}
.muted{color:#777;font-size:12px}
"""


def report_paths(out_dir: str | Path, case_id: str) -> dict[str, Path]:
    """``{"html": <out>/<case>_report.html, "views": <out>/<case>_views.png}``."""
    return {key: Path(out_dir) / f"{case_id}{suffix}" for key, suffix in REPORT_SUFFIXES.items()}


def png_bytes(image: Any) -> bytes:
    """PNG bytes of an RGB array or a PIL image."""
    from PIL import Image

    if isinstance(image, np.ndarray):
        image = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def model_status(model_id: str) -> dict[str, Any]:
    """Title and status of a registry model: demo weights, weight-free, shipped or imported (user registry)."""
    from .errors import BreastDCESegError
    from .models import registry
    from .models.importer import origin

    try:
        spec = registry.load_registry().get(model_id)
    except (BreastDCESegError, KeyError, OSError, ValueError):
        return {"id": model_id, "title": model_id, "status": "not in this machine's model registry", "demo": False}
    if spec.demo:
        status = "demo weights — trained on synthetic phantoms, not for clinical use"
    elif spec.is_kinetic:
        status = "weight-free kinetic method — research use only"
    elif not spec.weights:
        status = "no weights here — import the published checkpoint (breastdceseg models import)"
    elif origin(spec) == "shipped":
        status = "shipped weights"
    else:
        status = f"{origin(spec)} weights (user registry {spec.source})"
    return {"id": spec.id, "title": spec.title, "status": status, "demo": bool(spec.demo),
            "licence": spec.licence, "intended_use": spec.intended_use}


def curve_svg(times: Sequence[Optional[float]], percent: Sequence[Optional[float]], width: int = 420,
              height: int = 240) -> str:
    """An inline SVG line plot of percent enhancement per phase (x: seconds, or phase number); HTML5
    needs no namespace declaration for inline SVG, so the page names no URL at all."""
    values = [float("nan") if v is None else float(v) for v in percent]
    use_time = all(t is not None for t in times)
    xs = [float(t) for t in times] if use_time else list(range(len(values)))
    left, right, top, bottom = 52, 12, 14, 36
    x_lo, x_hi = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1.0
    finite = [v for v in values if np.isfinite(v)] or [0.0]
    y_lo, y_hi = min(0.0, min(finite)), max(10.0, max(finite)) * 1.1

    def px(x: float, y: float) -> tuple[float, float]:
        return (left + (x - x_lo) / (x_hi - x_lo) * (width - left - right),
                height - bottom - (y - y_lo) / (y_hi - y_lo) * (height - top - bottom))

    points = [px(x, y) for x, y in zip(xs, values) if np.isfinite(y)]
    parts = [f'<svg width="{width}" height="{height}" role="img" '
             f'aria-label="enhancement curve">', f'<rect width="{width}" height="{height}" fill="#fff"/>']
    for frac in np.linspace(0.0, 1.0, 5):
        y = y_lo + frac * (y_hi - y_lo)
        _, py = px(x_lo, y)
        parts.append(f'<line x1="{left}" y1="{py:.1f}" x2="{width - right}" y2="{py:.1f}" stroke="#e5e5e5"/>'
                     f'<text x="{left - 6}" y="{py + 4:.1f}" font-size="11" text-anchor="end">{y:.0f}</text>')
    for x in xs:
        qx, _ = px(x, y_lo)
        parts.append(f'<text x="{qx:.1f}" y="{height - bottom + 15}" font-size="11" text-anchor="middle">{x:g}</text>')
    parts.append(f'<text x="{(left + width - right) / 2}" y="{height - 6}" font-size="12" text-anchor="middle">'
                 f'{"time after the first phase (s)" if use_time else "phase"}</text>')
    parts.append(f'<text x="12" y="{(top + height - bottom) / 2}" font-size="12" text-anchor="middle" '
                 f'transform="rotate(-90 12 {(top + height - bottom) / 2})">enhancement (%)</text>')
    if points:
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        parts.append(f'<polyline points="{path}" fill="none" stroke="#d93333" stroke-width="2"/>')
        parts += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="#d93333"/>' for x, y in points]
    parts.append("</svg>")
    return "".join(parts)


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "–"
    if isinstance(value, (int, float, np.floating, np.integer)):
        return f"{float(value):.{digits}f}"
    return html.escape(str(value))


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def case_report_data(study: DCEStudy, result: SegmentationResult) -> dict[str, Any]:
    """Numbers of the report: the JSON case report plus the tumor's enhancement curve."""
    from .kinetics import time_intensity_curve
    from .outputs import case_report

    data = case_report(study, result)
    data["curve"] = time_intensity_curve(study, result.tumor_array() != 0)
    return data


def page_head(title: str, summary: str) -> list[str]:
    """Opening lines of a self-contained page: ``title`` (escaped here), the inline style, the
    heading and a muted ``summary`` line that ends with "made <time>"."""
    title = html.escape(title)
    created = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    return ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', f"<title>{title}</title>",
            f"<style>{_CSS}</style></head><body>", f"<h1>{title}</h1>",
            f'<div class="muted">{summary} made {created}</div>']


def case_report_html(study: DCEStudy, result: SegmentationResult, views: Any,
                     data: Optional[dict[str, Any]] = None) -> str:
    """The self-contained HTML page of one case; ``views`` is a :class:`~.mrml.render.RenderedViews`."""
    from .mrml.render import VIEW_TITLES

    data = data or case_report_data(study, result)
    tumor, model = data["tumor"], model_status(result.model_id)
    lesions = tumor.get("lesions", [])
    largest = lesions[0] if lesions else {}
    title = f"BreastDCESeg — {study.case_id}"
    notes = []
    if study.metadata.get("synthetic") or data.get("note"):
        notes.append("Synthetic phantom study: the images are simulated, not of a patient.")
    if model["demo"]:
        notes.append(f"Model {html.escape(model['id'])}: {html.escape(model['status'])}.")
    notes += [html.escape(w) for w in dict.fromkeys(list(data.get("warnings", [])) + list(tumor.get("warnings", [])))]
    figures = "".join(
        f'<figure><img alt="{VIEW_TITLES.get(n, n)} view" src="{data_uri(png_bytes(rgb))}" '
        f'width="{rgb.shape[1]}" height="{rgb.shape[0]}"><figcaption>{VIEW_TITLES.get(n, n)}'
        f'{"" if n == "3D" else f" ({n})"}</figcaption></figure>' for n, rgb in views.images.items())
    summary = _table(["measure", "value"], [
        ["tumor volume (mL)", _fmt(tumor.get("volume_ml"), 2)],
        ["largest lesion: longest 3-D diameter (mm)", _fmt(largest.get("longest_diameter_mm"))],
        ["T-stage", f"{_fmt(tumor.get('t_stage'))} <span class='muted'>({_fmt(tumor.get('t_stage_basis'))})</span>"],
        ["lesions", _fmt(tumor.get("lesion_count"), 0)],
        ["largest lesion: curve type", _fmt(largest.get("dominant_curve_type"))],
        ["largest lesion: SER", _fmt(largest.get("mean_ser"), 2)],
    ])
    lesion_rows = [[_fmt(r.get("index"), 0), _fmt(r.get("volume_ml"), 2), _fmt(r.get("longest_diameter_mm")),
                    _fmt(r.get("mean_percent_enhancement"), 0), _fmt(r.get("mean_ser"), 2),
                    _fmt(r.get("dominant_curve_type")),
                    ", ".join(_fmt(v) for v in r.get("centroid_ras_mm", []))] for r in lesions]
    lesion_table = _table(["lesion", "volume (mL)", "longest diameter (mm)", "enhancement (%)", "SER",
                           "curve type", "centre RAS (mm)"], lesion_rows) if lesions else "<p>No lesion found.</p>"
    curve = data["curve"]
    seconds = data.get("seconds", {})
    timing = _table(["stage", "seconds"], [[html.escape(k), _fmt(v, 2)] for k, v in seconds.items()]
                    + [[f"render {k}", _fmt(v, 2)] for k, v in views.seconds.items()])
    phases = _table(["phase", "time (s)"], [[str(k), _fmt(t, 0)] for k, t in enumerate(study.times)])
    return "\n".join([
        *page_head(title, f'{study.n_phases} phases, {" × ".join(str(s) for s in study.size)} voxels of '
                          f'{" × ".join(f"{s:.2f}" for s in study.spacing)} mm; report'),
        *[f'<div class="note">{n}</div>' for n in notes],
        "<h2>Views through the largest lesion</h2>",
        f'<div class="views">{figures}</div>',
        f'<p class="muted">First subtraction (post-contrast 1 − pre-contrast) with its window/level; AI tumor '
        f'segment filled with its outline; centre RAS {", ".join(f"{v:.1f}" for v in views.centre_ras)} mm.</p>',
        "<h2>Tumor</h2>", summary, "<h2>Lesions</h2>", lesion_table,
        f"<h2>Enhancement curve of the tumor ({curve['n_voxels']} voxels)</h2>",
        curve_svg(curve["times"], curve["percent_enhancement"]),
        "<h2>Model</h2>", _table(["", ""], [["model", f"{html.escape(model['id'])} — {html.escape(model['title'])}"],
                                            ["status", html.escape(model["status"])],
                                            ["device", html.escape(str(data.get("device", "")))]]),
        "<h2>Timings</h2>", timing, "<h2>Phases</h2>", phases,
        '<p class="muted">BreastDCESeg research software — not a medical device.</p>',
        "</body></html>"])


def report_files(study: DCEStudy, result: SegmentationResult, case_id: Optional[str] = None, views: Any = None,
                 reference: Any = None) -> dict[str, Any]:
    """``{"<case>_report.html": writer, "<case>_views.png": writer}``: the views are rendered now
    (own offscreen scene unless ``views`` is given), each writer(path) writes one file. This is the
    form :func:`BreastDCESegLib.outputs.write_case_outputs` takes as ``extra_files``, so the report
    is committed with the case's other files, all or nothing."""
    from .mrml.render import compose

    case_id = case_id or study.case_id
    if views is None:
        from .mrml.render_case import render_result

        views = render_result(study, result, reference=reference)
    page = case_report_html(study, result, views)
    sheet = compose(views)
    names = {key: path.name for key, path in report_paths(".", case_id).items()}
    return {names["html"]: lambda path: Path(path).write_text(page, encoding="utf-8"),
            names["views"]: lambda path: sheet.save(path, format="PNG")}


def write_case_report(study: DCEStudy, result: SegmentationResult, out_dir: str | Path,
                      case_id: Optional[str] = None, overwrite: bool = False, views: Any = None,
                      reference: Any = None) -> dict[str, Path]:
    """Write ``<case>_report.html`` and ``<case>_views.png`` into ``out_dir`` (the panel's *Save
    report*), both or neither; an existing report is replaced only with ``overwrite``."""
    import contextlib

    from .io.atomic import atomic_path, check_writable

    case_id = case_id or study.case_id
    paths = report_paths(out_dir, case_id)
    for path in paths.values():
        check_writable(path, overwrite)
    writers = report_files(study, result, case_id, views=views, reference=reference)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        staged = {key: stack.enter_context(atomic_path(path, overwrite=overwrite)) for key, path in paths.items()}
        for key, path in paths.items():
            writers[path.name](staged[key])
    return paths


def save_scene_report(logic: Any, segmentation: Any, out_dir: str | Path, overwrite: bool = False) -> dict[str, Path]:
    """The panel's *Save report*: the segmentation as it is now (refinements included) over the
    case's first subtraction, rendered in the scene's views (in Slicer: the application's own)."""
    from .errors import BadInputError
    from .mrml.render import render_views
    from .mrml.render_case import result_from_segmentation

    study = logic.studyOf(segmentation) if segmentation is not None else None
    if study is None:
        raise BadInputError("Save report needs an AI segmentation computed in this session: select it under "
                            "Results (or run the model again).")
    views = render_views(logic.scene, logic.subtractionVolumes(study)[0], segmentation, zoom=1.5)
    return write_case_report(study, result_from_segmentation(segmentation), out_dir, overwrite=overwrite,
                             views=views)
