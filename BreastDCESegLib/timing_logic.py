"""The panel's timing study on a scene: start, stop, stop on scene close, and the session summary.

:class:`TimingLogic` is a mixin of :class:`BreastDCESegLib.scene_logic.SceneLogic` (it uses its
``scene``, ``referenceVolume`` and ``newManualSegmentation``). The rules it keeps:

* one case is timed at a time; its state (:class:`TimingState`) lives in the logic, so the
  Segment Editor's toolbar, the panel and a scene close all reach the same case;
* a case is written to the log **before** any state is cleared: when the agreement measures
  fail (the "Tumor" segment was renamed or deleted), the case is logged with a note and empty
  measures; when writing fails (no log folder, a read-only disk), the state is kept, the
  error is raised, and Stop can be pressed again (the times were frozen at the first Stop);
* closing the scene stops the running case and writes it (``stopped_by = "scene-close"``),
  to the folder given at Start, else to :attr:`TimingLogic.timingFallbackFolder`.

Usage::

    state = logic.startTiming("ai_refine", aiSegmentation, reader="R1", logFolder="timing/")
    ...                                              # the reader reads and edits
    record, text = logic.stopTiming()
    summary, table, chart, png = logic.timingSummary("timing/")
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from .errors import BadInputError

TIMING_MODES = ("manual", "ai_refine")
log = logging.getLogger(__name__)


@dataclass
class TimingState:
    """The case being timed: its session, the activity observer and what Stop compares."""

    session: Any
    observer: Any
    segmentation: Any
    reference_volume: Any = None
    ai_mask: Any = None
    log_folder: str = ""
    notes: list = field(default_factory=list)


class TimingLogic:
    """Timing study operations (mixin; see the module docstring)."""

    timingState: Optional[TimingState] = None
    timingFallbackFolder: str = str(Path(tempfile.gettempdir()) / "BreastDCESeg-timing")
    timingClosedRecord: Optional[Any] = None  # the case a scene close stopped and wrote (for the panel)
    _closeObserver: Optional[int] = None

    def startTiming(self, mode: str, aiSegmentation: Any = None, study: Any = None, reader: str = "",
                    idleThreshold: float = 30.0, clock: Any = None, logFolder: str | Path = "") -> TimingState:
        """Start timing a case: ``ai_refine`` edits of ``aiSegmentation``, or ``manual`` annotation of a
        new empty "Tumor" segment on ``study``'s grid. Activity (edits, slice views, window/level,
        Segment Editor effects) keeps the clock running; pauses count at most ``idleThreshold`` s."""
        from . import mrml, timing
        from .mrml.activity import ActivityObserver

        if mode not in TIMING_MODES:
            raise BadInputError(f"Unknown timing mode {mode!r}: use one of {', '.join(TIMING_MODES)}.")
        if self.timingState is not None:
            raise BadInputError(f"Timing of case {self.timingState.session.case_id} is still running: stop it first.")
        ai_mask, ai_seconds = None, 0.0
        if mode == "manual":
            if study is None:
                raise BadInputError("Manual timing needs a study: select the DCE sequence or phase volumes first.")
            reference = self.referenceVolume(study)
            segmentation = self.newManualSegmentation(reference, study.case_id)
        else:
            segmentation = aiSegmentation
            if segmentation is None or segmentation.GetAttribute(mrml.ATTR + "AI") != "1":
                raise BadInputError("AI + refinement timing needs an AI segmentation: run the model (Apply) first.")
            reference = segmentation.GetNodeReference(segmentation.GetReferenceImageGeometryReferenceRole())
            ai_mask = mrml.segment_array(segmentation, mrml.tumor_segment_id(segmentation))
            ai_seconds = float(segmentation.GetAttribute(mrml.ATTR + "Seconds") or 0.0)
        options = {"clock": clock} if clock is not None else {}
        session = timing.TimingSession(segmentation.GetAttribute(mrml.ATTR + "Case") or segmentation.GetName(), mode,
                                       ai_seconds=ai_seconds, reader=reader, idle_threshold_s=idleThreshold,
                                       model_id=segmentation.GetAttribute(mrml.ATTR + "Model") or "", **options)
        observer = ActivityObserver(session, segmentation).attach()
        session.start()
        self.timingState = TimingState(session, observer, segmentation, reference, ai_mask, str(logFolder or ""))
        if self._closeObserver is None:
            self._closeObserver = self.scene.AddObserver(self.scene.StartCloseEvent, self._stopTimingOnClose)
        return self.timingState

    @staticmethod
    def _referenceMask(referenceSegmentation: Any, shape: tuple, notes: list) -> Any:
        """The reference's "Tumor" (else first) segment, when it lies on the same grid."""
        from . import mrml
        if referenceSegmentation is None:
            return None
        ids = mrml.segment_ids(referenceSegmentation)
        sid = referenceSegmentation.GetSegmentation().GetSegmentIdBySegmentName("Tumor") or (ids[0] if ids else "")
        mask = mrml.segment_array(referenceSegmentation, sid) if sid else None
        if mask is not None and mask.shape != shape:
            notes.append(f"The reference segmentation {referenceSegmentation.GetName()} is on another grid "
                         f"({mask.shape} voxels, the case has {shape}): it is not compared.")
            return None
        return mask

    def _measureAgreement(self, state: TimingState, record: Any, referenceSegmentation: Any) -> None:
        from . import mrml, timing
        try:
            refined = mrml.segment_array(state.segmentation, mrml.tumor_segment_id(state.segmentation))
            spacing = state.reference_volume.GetSpacing() if state.reference_volume is not None else None
            reference = self._referenceMask(referenceSegmentation, refined.shape, state.notes)
            timing.set_agreement(record, ai=state.ai_mask, refined=refined, reference=reference, spacing=spacing)
        except Exception as exc:  # noqa: BLE001 - the times are kept; the measures are left empty
            state.notes.append(f"agreement not measured: {exc}")

    def stopTiming(self, state: Optional[TimingState] = None, referenceSegmentation: Any = None,
                   logFolder: str | Path = "", stoppedBy: str = "reader") -> tuple:
        """Stop the case (``state`` defaults to the running one), measure Dice/HD95 between the AI,
        refined and reference masks, append the case to the log in ``logFolder`` (or the folder given
        at Start) and only then clear the state. Returns (TimingRecord, summary text)."""
        from . import timing, timing_summary
        state = state or self.timingState
        if state is None:
            raise BadInputError("No case is being timed: press Start timing first.")
        folder = str(logFolder or state.log_folder or "")
        if not folder:
            raise BadInputError("Choose a folder for the timing session log before stopping the timing.")
        state.log_folder = folder
        if state.session.running:  # a retry after a failed write keeps the record frozen at the first Stop
            record = state.session.stop(stopped_by=stoppedBy)
            self._measureAgreement(state, record, referenceSegmentation)
        record = state.session.record
        record.notes = "; ".join(dict.fromkeys(state.notes))
        log_file = timing.TimingLog(folder)
        log_file.append(record)  # raises on a bad folder: the state stays, Stop can be pressed again
        self._clearTiming(state)
        return record, "\n".join(state.notes + [timing_summary.format_summary(timing_summary.summarize(log_file.read()))])

    def _clearTiming(self, state: TimingState) -> None:
        state.observer.detach()
        if self.timingState is state:
            self.timingState = None
        if self.timingState is None and self._closeObserver is not None:
            self.scene.RemoveObserver(self._closeObserver)
            self._closeObserver = None

    def _stopTimingOnClose(self, caller: Any = None, event: Any = None) -> Optional[Any]:
        """Scene StartCloseEvent: stop and write the running case (never raises into VTK)."""
        state = self.timingState
        if state is None:
            return None
        if not state.log_folder:
            state.log_folder = self.timingFallbackFolder
            state.notes.append(f"no log folder was chosen: written to {self.timingFallbackFolder}")
        try:
            self.timingClosedRecord = self.stopTiming(state, stoppedBy="scene-close")[0]
            return self.timingClosedRecord
        except Exception:  # noqa: BLE001 - the scene closes anyway; say where the case went
            log.exception("The timed case %s could not be written when the scene closed", state.session.case_id)
            self._clearTiming(state)
            return None

    def timingSummary(self, logFolder: str | Path) -> tuple:
        """(summary dict, table node, plot chart node, PNG path) of every case in the log folder."""
        from . import timing, timing_summary
        from .mrml import timingplot
        records = timing.TimingLog(logFolder).read()
        if not records:
            raise BadInputError(f"The timing log in {logFolder} has no case yet: time a case first.")
        summary = timing_summary.summarize(records)
        png = Path(logFolder) / "timing_summary.png"
        timing_summary.plot_png(summary, png)
        return (summary, timingplot.summary_table_node(self.scene, summary),
                timingplot.summary_plot_chart(self.scene, summary), png)
