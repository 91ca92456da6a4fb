"""The annotation-timing study: manual-from-scratch vs AI + refinement, per case.

What is measured, per case (the rule is written into every log row, ``rule``):

* **wall time**: from Start to Stop;
* **active time**: the sum of the gaps between consecutive activity marks (Start, every edit,
  slice-view interaction, window/level change, Segment Editor effect use, Stop), each gap
  capped at ``idle_threshold_s`` (default 30 s): a pause longer than the threshold counts as
  the threshold (the reader may have been reading), the rest of it is idle time
  (``idle_seconds``, in ``capped_gaps`` gaps);
* **edits**: modifications of the segmentation, events closer than ``merge_window_s`` being
  one edit (one Segment Editor operation fires several modified events);
* in ``"ai_refine"`` mode the model's inference time is added to the total, as in Zhang et
  al. (Patterns 2023, Table 4: 14.28 min manual vs 2.09 min AI + refinement); at Stop, Dice
  and HD95 between the AI mask, the refined mask and an optional reference mask.

The core is pure Python with an injectable clock; :mod:`BreastDCESegLib.mrml.activity`
feeds it from MRML nodes (segmentation edits, slice nodes, window/level, the Segment
Editor node). :class:`TimingLog` appends one row per case to CSV and JSON lines, flushed
and fsynced; :mod:`BreastDCESegLib.timing_summary` makes the per-reader table and plot.

Usage::

    session = TimingSession("case01", "ai_refine", ai_seconds=result.seconds.get("total", 0.0))
    session.start()
    session.record_activity("slice_view")   # the reader scrolls
    session.record_edit()                   # ... and edits
    record = session.stop(refined=refined_mask, ai=ai_mask, reference=None, spacing=(0.7, 0.7, 1.5))
    TimingLog("timing/").append(record)
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

MODES = ("manual", "ai_refine")
ACTIVITY_KINDS = ("slice_view", "window_level", "editor_effect", "other")
Clock = Callable[[], float]
RULE = ("active = sum of the gaps between consecutive activity marks (start, edits, slice-view interaction, "
        "window/level, Segment Editor effect use, stop), each gap capped at the idle threshold of {threshold:g} s; "
        "total = active + AI inference seconds (ai_refine)")


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
    view_events: int = 0
    window_level_events: int = 0
    effect_events: int = 0
    capped_gaps: int = 0
    idle_seconds: float = 0.0
    stopped_by: str = "reader"
    notes: str = ""
    rule: str = ""

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


class TimingSession:
    """Wall time, active time and edit counter of one case in one mode (see the module rule)."""

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
        self.activity = {kind: 0 for kind in ACTIVITY_KINDS}
        self.capped_gaps = 0
        self._active = 0.0
        self._idle = 0.0
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
        gap = max(0.0, now - self._last_mark)
        if gap > self.idle_threshold_s:
            self.capped_gaps += 1
            self._idle += gap - self.idle_threshold_s
        self._active += min(gap, self.idle_threshold_s)
        self._last_mark = now

    def record_activity(self, kind: str = "other") -> None:
        """Activity that is not an edit (``kind`` of :data:`ACTIVITY_KINDS`: scrolling or panning a
        slice view, window/level, choosing or tuning a Segment Editor effect)."""
        if self.running:
            self.activity[kind if kind in self.activity else "other"] += 1
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

    @property
    def active_seconds(self) -> float:
        """Active time so far (up to the last activity mark, or the stop)."""
        return self._active

    # ------------------------------------------------------------------ stop
    def stop(self, refined: Any = None, ai: Any = None, reference: Any = None,
             spacing: Optional[Sequence[float]] = None, stopped_by: str = "reader") -> TimingRecord:
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
            view_events=self.activity["slice_view"], window_level_events=self.activity["window_level"],
            effect_events=self.activity["editor_effect"], capped_gaps=self.capped_gaps,
            idle_seconds=round(self._idle, 3), stopped_by=stopped_by,
            rule=RULE.format(threshold=self.idle_threshold_s))
        set_agreement(self.record, ai=ai, refined=refined, reference=reference, spacing=spacing)
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


def set_agreement(record: TimingRecord, ai: Any = None, refined: Any = None, reference: Any = None,
                  spacing: Optional[Sequence[float]] = None) -> TimingRecord:
    """Fill ``record``'s Dice/HD95 fields from the masks (left None where a mask is missing)."""
    for key, value in agreement(ai=ai, refined=refined, reference=reference, spacing=spacing).items():
        setattr(record, key, value)
    return record


# ----------------------------------------------------------------------------- log
class TimingLog:
    """``<folder>/<name>.csv`` and ``<name>.jsonl``, one row per case, durable after each case."""

    def __init__(self, folder: Any, name: str = "timing"):
        self.folder = Path(folder)
        self.csv_path = self.folder / f"{name}.csv"
        self.jsonl_path = self.folder / f"{name}.jsonl"

    def append(self, record: TimingRecord) -> None:
        """Append one case: the JSON-lines file first (the source of truth), then the CSV. A CSV
        written by an older version with other columns is rewritten from the JSON lines."""
        self.folder.mkdir(parents=True, exist_ok=True)
        row = asdict(record)
        with open(self.jsonl_path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(row) + "\n")
            _durable(fh)
        names = TimingRecord.field_names()
        header = ""
        if self.csv_path.exists():
            with open(self.csv_path, encoding="utf-8") as fh:
                header = fh.readline().strip()
        if header and header != ",".join(names):
            self._rewrite_csv(names)
        else:
            with open(self.csv_path, "a", newline="", encoding="utf-8") as fh:
                writer = csv.DictWriter(fh, fieldnames=names)
                if not header:
                    writer.writeheader()
                writer.writerow({k: "" if v is None else v for k, v in row.items()})
                _durable(fh)
        _sync_dir(self.folder)

    def _rewrite_csv(self, names: list[str]) -> None:
        tmp = self.csv_path.with_name(f".{self.csv_path.name}.tmp")
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=names)
            writer.writeheader()
            for record in self.read():
                writer.writerow({k: "" if v is None else v for k, v in asdict(record).items()})
            _durable(fh)
        os.replace(tmp, self.csv_path)

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


def __getattr__(name: str) -> Any:
    """``timing.SegmentationObserver`` lives in :mod:`BreastDCESegLib.mrml.activity` (MRML side)."""
    if name == "SegmentationObserver":
        from .mrml.activity import SegmentationObserver

        return SegmentationObserver
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
