"""Cohort page of a batch run: one row per case with a thumbnail of its axial view, for
quality control of a whole run at a glance.

``<out>/report.html`` is self-contained like the case reports (thumbnails embedded as PNG
data URIs); each row links to the case's own ``<case>_report.html`` next to it.

Usage::

    rows = batch.run(args)                           # the summary rows
    write_cohort_report("pred", rows)                # pred/report.html
"""

from __future__ import annotations

import html
import os
import sys
import uuid
from pathlib import Path
from typing import Any, Optional, Sequence

from .report import REPORT_SUFFIXES, _fmt, _table, data_uri, page_head, png_bytes

COHORT_PAGE = "report.html"
THUMBNAIL_PX = 128


def _case_file(out_dir: Path, case_id: str, suffix: str) -> Optional[Path]:
    """A case's report file: in its case folder (``<out>/<case>/``) or directly in ``out_dir``."""
    for path in (out_dir / case_id / f"{case_id}{suffix}", out_dir / f"{case_id}{suffix}"):
        if path.is_file():
            return path
    return None


def thumbnail(views_png: Path, size: int = THUMBNAIL_PX) -> bytes:
    """The axial (left-most, square) panel of a ``<case>_views.png``, scaled to ``size`` pixels."""
    from PIL import Image

    with Image.open(views_png) as sheet:
        side = sheet.height
        panel = sheet.convert("RGB").crop((0, 0, side, side))
        panel.thumbnail((size, size))
        return png_bytes(panel)


def cohort_html(out_dir: str | Path, rows: Sequence[dict[str, Any]], title: str = "BreastDCESeg batch") -> str:
    """The cohort page's HTML for the summary ``rows`` (``case``, ``status``, ``volume_ml``,
    ``longest_diameter_mm``, ``t_stage``, ``seconds``, ``error``)."""
    out = Path(out_dir)
    table_rows = []
    for row in rows:
        case = str(row.get("case", ""))
        views = _case_file(out, case, REPORT_SUFFIXES["views"])
        page = _case_file(out, case, REPORT_SUFFIXES["html"])
        image = (f'<img alt="{html.escape(case)} axial" src="{data_uri(thumbnail(views))}">' if views else "–")
        link = (f'<a href="{html.escape(page.relative_to(out).as_posix())}">{html.escape(case)}</a>'
                if page else html.escape(case))
        table_rows.append([image, link, html.escape(str(row.get("status", ""))), _fmt(_number(row.get("volume_ml")), 2),
                           _fmt(_number(row.get("longest_diameter_mm"))), _fmt(row.get("t_stage") or None),
                           _fmt(_number(row.get("seconds"))), html.escape(str(row.get("error") or ""))])
    counts = {s: sum(str(r.get("status")) == s for r in rows) for s in ("ok", "skipped", "failed")}
    return "\n".join([
        *page_head(title, f'{len(rows)} case(s): {counts["ok"]} ok, {counts["skipped"]} skipped, '
                          f'{counts["failed"]} failed; page'),
        _table(["axial view", "case", "status", "volume (mL)", "longest diameter (mm)", "T-stage", "seconds",
                "note"], table_rows),
        '<p class="muted">Axial view through each case\'s largest lesion (first subtraction, AI tumor in '
        'colour). BreastDCESeg research software — not a medical device.</p>', "</body></html>"])


def _number(value: Any) -> Optional[float]:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def write_cohort_report(out_dir: str | Path, rows: Sequence[dict[str, Any]], title: str = "BreastDCESeg batch") -> Path:
    """Write ``<out>/report.html`` (replaced by each run, under a temporary name then renamed)."""
    path = Path(out_dir) / COHORT_PAGE
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_text(cohort_html(out_dir, rows, title), encoding="utf-8")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


# ----------------------------------------------------------------------------- batch --report
def check_batch(args: Any) -> None:
    """``batch --report``: fail before any case when Slicer's views cannot be rendered here."""
    if getattr(args, "report", False):
        from .mrml.render_offscreen import require_rendering

        require_rendering()


def batch_extra_files(args: Any, study: Any, result: Any, case_id: str, others: Any = None) -> Optional[dict]:
    """The case's extra output writers: ``others(args, study, result, case_id)`` (e.g. the DICOM SEG's)
    plus, with ``--report``, its report and views PNG; None when there are none."""
    extra = others(args, study, result, case_id) if others is not None else None
    if not getattr(args, "report", False):
        return extra
    from .report import report_files

    return {**(extra or {}), **report_files(study, result, case_id)}


def batch_page(args: Any, rows: list) -> list:
    """With ``--report``: write ``<output>/report.html`` for ``rows`` (the batch's summary rows); returns them."""
    if getattr(args, "report", False) and rows:
        path = write_cohort_report(args.output, rows)
        print(f"batch: cohort report {path}", file=sys.stderr, flush=True)
    return rows
