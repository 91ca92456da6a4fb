"""The annotation-timing study: manual-from-scratch vs AI + refinement, per case.

A :class:`TimingSession` counts *active* editing time from edit events: the time between
two consecutive activity marks (start, each edit, stop) is counted when it is at most
``idle_threshold_s`` (default 30 s) and dropped entirely when longer (the reader was away).
Events closer together than ``merge_window_s`` belong to one edit (one Segment Editor
operation fires several modified events). In ``"ai_refine"`` mode the model's inference
time is added to the total, as in Zhang et al. (Patterns 2023, Table 4: 14.28 min manual
vs 2.09 min AI + refinement). At stop, Dice and HD95 between the AI mask, the refined mask
and an optional reference mask are computed with :mod:`BreastDCESegLib.metrics`.

The core is pure Python (the clock is injectable); :class:`SegmentationObserver` connects
it to a ``vtkMRMLSegmentationNode``'s modified events inside Slicer or the slicer-core wheel.
:class:`TimingLog` appends one row per case to CSV and JSON lines, flushed and fsynced.

Usage::

    session = TimingSession("case01", "ai_refine", ai_seconds=result.seconds.get("total", 0.0))
    observer = SegmentationObserver(session, segmentation_node).attach()
    session.start()
    ...                                   # the radiologist edits in the Segment Editor
    record = session.stop(refined=refined_mask, ai=ai_mask, reference=None, spacing=(0.7, 0.7, 1.5))
    observer.detach()
    TimingLog("timing/").append(record)
    print(format_summary(summarize(TimingLog("timing/").read())))
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import time
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

MODES = ("manual", "ai_refine")
Clock = Callable[[], float]


@dataclass
class TimingRecord:
    """One case of the study (one row of the log); times in seconds, NaN-free (None = not measured)."""

    case_id: str
    mode: str
    started_at: str
    active_seconds: float
    wall_seconds: float
    ai_seconds: float
    total_seconds: float
    edits: int
    idle_threshold_s: float
    model_id: str = ""
    reader: str = ""
    dice_ai_refined: Optional[float] = None
    hd95_ai_refined: Optional[float] = None
    dice_ai_reference: Optional[float] = None
    hd95_ai_reference: Optional[float] = None
    dice_refined_reference: Optional[float] = None
    hd95_refined_reference: Optional[float] = None

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


class TimingSession:
    """Active-time and edit counter of one case in one mode."""

    def __init__(self, case_id: str, mode: str, idle_threshold_s: float = 30.0, clock: Clock = time.monotonic,
                 merge_window_s: float = 0.5, ai_seconds: float = 0.0, model_id: str = "", reader: str = ""):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        if idle_threshold_s <= 0:
            raise ValueError("idle_threshold_s must be positive")
        self.case_id, self.mode, self.model_id, self.reader = case_id, mode, model_id, reader
        self.idle_threshold_s = float(idle_threshold_s)
        self.merge_window_s = float(merge_window_s)
        self.ai_seconds = float(ai_seconds) if mode == "ai_refine" else 0.0
        self.clock = clock
        self.edits = 0
        self._active = 0.0
        self._start: Optional[float] = None
        self._last_mark: Optional[float] = None
        self._last_edit: Optional[float] = None
        self._stopped_at: Optional[float] = None
        self._started_wall = ""
        self.record: Optional[TimingRecord] = None

    # ------------------------------------------------------------------ state
    @property
    def running(self) -> bool:
        return self._start is not None and self._stopped_at is None

    def start(self) -> "TimingSession":
        if self._start is not None:
            raise RuntimeError(f"timing of {self.case_id} was already started")
        self._start = self._last_mark = self.clock()
        self._started_wall = datetime.now(timezone.utc).isoformat(timespec="seconds")
        return self

    def _mark(self, now: float) -> None:
        gap = now - self._last_mark
        if 0 <= gap <= self.idle_threshold_s:
            self._active += gap
        self._last_mark = now

    def record_activity(self) -> None:
        """Activity that is not an edit (scrolling, window/level): keeps the clock running."""
        if self.running:
            self._mark(self.clock())

    def record_edit(self) -> None:
        """One modification of the segmentation (events within the merge window are one edit)."""
        if not self.running:
            return
        now = self.clock()
        if self._last_edit is None or now - self._last_edit > self.merge_window_s:
            self.edits += 1
        self._last_edit = now
        self._mark(now)

    def set_ai_seconds(self, seconds: float) -> None:
        if self.mode == "ai_refine":
            self.ai_seconds = float(seconds)

    @property
    def active_seconds(self) -> float:
        """Active editing time so far (up to the last activity mark, or the stop)."""
        return self._active

    # ------------------------------------------------------------------ stop
    def stop(self, refined: Any = None, ai: Any = None, reference: Any = None,
             spacing: Optional[Sequence[float]] = None) -> TimingRecord:
        """End the session; masks (numpy (z, y, x) with ``spacing`` x, y, z, or SimpleITK
        images) give the agreement measures. Returns (and keeps) the :class:`TimingRecord`."""
        if not self.running:
            raise RuntimeError(f"timing of {self.case_id} is not running")
        now = self.clock()
        self._mark(now)
        self._stopped_at = now
        self.record = TimingRecord(
            case_id=self.case_id, mode=self.mode, started_at=self._started_wall,
            active_seconds=round(self._active, 3), wall_seconds=round(now - self._start, 3),
            ai_seconds=round(self.ai_seconds, 3), total_seconds=round(self._active + self.ai_seconds, 3),
            edits=self.edits, idle_threshold_s=self.idle_threshold_s, model_id=self.model_id, reader=self.reader,
            **agreement(ai=ai, refined=refined, reference=reference, spacing=spacing))
        return self.record


def _finite(value: float) -> Optional[float]:
    return None if value is None or not math.isfinite(value) else round(float(value), 6)


def agreement(ai: Any = None, refined: Any = None, reference: Any = None,
              spacing: Optional[Sequence[float]] = None) -> dict[str, Optional[float]]:
    """Dice and HD95 (mm) for every pair of the given masks (None where a mask is missing)."""
    from . import metrics

    masks = {"ai": ai, "refined": refined, "reference": reference}
    out: dict[str, Optional[float]] = {}
    for a, b in (("ai", "refined"), ("ai", "reference"), ("refined", "reference")):
        have = masks[a] is not None and masks[b] is not None
        out[f"dice_{a}_{b}"] = _finite(metrics.dice(masks[a], masks[b], spacing)) if have else None
        out[f"hd95_{a}_{b}"] = _finite(metrics.hd95(masks[a], masks[b], spacing)) if have else None
    return out


# ----------------------------------------------------------------------------- MRML adapter
class SegmentationObserver:
    """Feeds a session with a segmentation node's modified events (segments added, removed,
    modified, source representation modified)."""

    EVENT_NAMES = ("SourceRepresentationModified", "SegmentAdded", "SegmentRemoved", "SegmentModified")

    def __init__(self, session: TimingSession, segmentation_node: Any):
        self.session = session
        self.node = segmentation_node
        self._tags: list[int] = []
        self._ignore = 0

    def attach(self) -> "SegmentationObserver":
        import slicer

        for name in self.EVENT_NAMES:
            event = getattr(slicer.vtkSegmentation, name, None)
            if event is not None:
                self._tags.append(self.node.AddObserver(event, self._on_event))
        return self

    def detach(self) -> None:
        for tag in self._tags:
            self.node.RemoveObserver(tag)
        self._tags = []

    @contextlib.contextmanager
    def ignoring(self) -> Iterator[None]:
        """Changes made inside (loading the AI result) are not edits."""
        self._ignore += 1
        try:
            yield
        finally:
            self._ignore -= 1

    def _on_event(self, caller: Any, event: Any) -> None:
        if not self._ignore:
            self.session.record_edit()


# ----------------------------------------------------------------------------- log
class TimingLog:
    """``<folder>/<name>.csv`` and ``<name>.jsonl``, one row per case, durable after each case."""

    def __init__(self, folder: Any, name: str = "timing"):
        self.folder = Path(folder)
        self.csv_path = self.folder / f"{name}.csv"
        self.jsonl_path = self.folder / f"{name}.jsonl"

    def append(self, record: TimingRecord) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        row = asdict(record)
        new_csv = not self.csv_path.exists() or self.csv_path.stat().st_size == 0
        with open(self.csv_path, "a", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=TimingRecord.field_names())
            if new_csv:
                writer.writeheader()
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
            _durable(fh)
        with open(self.jsonl_path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")
            _durable(fh)
        if new_csv:
            _sync_dir(self.folder)

    def read(self) -> list[TimingRecord]:
        """Records from the JSON-lines file (a half-written last line after a crash is skipped)."""
        if not self.jsonl_path.exists():
            return []
        records = []
        known = set(TimingRecord.field_names())
        for line in self.jsonl_path.read_text(encoding="utf-8").splitlines():
            try:
                data = json.loads(line)
            except json.JSONDecodeError:
                continue
            records.append(TimingRecord(**{k: v for k, v in data.items() if k in known}))
        return records


def _durable(fh: Any) -> None:
    fh.flush()
    os.fsync(fh.fileno())


def _sync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory descriptors
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------- summary
def _mean(values: list[float]) -> Optional[float]:
    values = [v for v in values if v is not None]
    return round(sum(values) / len(values), 4) if values else None


def summarize(records: Sequence[TimingRecord]) -> dict[str, Any]:
    """Mean minutes per mode (total = active editing + AI inference), edits, agreement, and
    the time saved by AI + refinement relative to manual annotation."""
    out: dict[str, Any] = {"modes": {}}
    for mode in MODES:
        rows = [r for r in records if r.mode == mode]
        out["modes"][mode] = {
            "cases": len(rows),
            "mean_total_min": _mean([r.total_seconds / 60.0 for r in rows]),
            "mean_active_min": _mean([r.active_seconds / 60.0 for r in rows]),
            "mean_ai_min": _mean([r.ai_seconds / 60.0 for r in rows]),
            "mean_edits": _mean([float(r.edits) for r in rows]),
            "mean_dice_ai_refined": _mean([r.dice_ai_refined for r in rows]),
            "mean_dice_refined_reference": _mean([r.dice_refined_reference for r in rows]),
        }
    manual, assisted = out["modes"]["manual"]["mean_total_min"], out["modes"]["ai_refine"]["mean_total_min"]
    if manual is not None and assisted is not None:
        out["time_saved_min"] = round(manual - assisted, 4)
        out["time_saved_percent"] = round(100.0 * (manual - assisted) / manual, 2) if manual > 0 else None
        out["speedup"] = round(manual / assisted, 3) if assisted > 0 else None
    else:
        out["time_saved_min"] = out["time_saved_percent"] = out["speedup"] = None
    return out


def format_summary(summary: dict[str, Any]) -> str:
    """A short text table like Zhang et al.'s Table 4."""
    lines = [f"{'mode':<12}{'cases':>6}{'total min':>11}{'editing min':>13}{'AI min':>8}{'edits':>7}"]
    for mode, s in summary["modes"].items():
        cells = [s["mean_total_min"], s["mean_active_min"], s["mean_ai_min"], s["mean_edits"]]
        txt = ["-" if c is None else f"{c:.2f}" for c in cells]
        lines.append(f"{mode:<12}{s['cases']:>6}{txt[0]:>11}{txt[1]:>13}{txt[2]:>8}{txt[3]:>7}")
    if summary.get("time_saved_min") is not None:
        lines.append(f"time saved: {summary['time_saved_min']:.2f} min per case ({summary['time_saved_percent']:.1f} %)")
    return "\n".join(lines)
