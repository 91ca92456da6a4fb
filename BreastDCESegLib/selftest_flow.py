"""The whole panel flow on a phantom: what Slicer's self-test ``BreastDCESegTest`` runs.

Load (a phantom written as DICOM and read back, its pre-contrast volume carrying the
``DICOM.instanceUIDs`` the DICOM module sets), order the phases, run the kinetic model in the
background worker, re-threshold the probability, open the editor (a hook: the Segment Editor
inside Slicer), time one AI + refinement case (start, one one-click refinement, stop), fill the
lesion table and export a DICOM SEG that references the source series. Every step is the
panel's logic (:class:`~BreastDCESegLib.scene_logic.SceneLogic`), so the same function runs
under pytest on a ``slicer-core`` scene and inside the Slicer application.

Usage::

    outcome = run_phantom_flow(logic, "/tmp/selftest", open_editor=views.open_segment_editor,
                               idle=slicer.app.processEvents)
    assert outcome.dice > 0.6 and outcome.timing.edits == 1
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional


@dataclass
class FlowOutcome:
    """What each step produced (for the self-test's assertions and its log)."""

    dice: float
    tumor_mm3: float
    rethresholded_mm3: float
    refined_mm3: float
    t_stage: str
    segmentation: Any
    timing: Any
    lesion_rows: int
    dicom_seg: Path
    dicom_seg_frames: int
    referenced_series: str
    source_series: str
    steps: list = field(default_factory=list)


def run_phantom_flow(logic: Any, workdir: str | Path, open_editor: Optional[Callable[[Any], Any]] = None,
                     idle: Optional[Callable[[], Any]] = None, timeout: float = 300.0,
                     clock: Optional[Callable[[], float]] = None) -> FlowOutcome:
    """Run the flow on ``logic.scene``; files go under ``workdir``. ``idle`` runs while the worker
    works (Slicer: ``slicer.app.processEvents``); ``clock`` is the timing clock (default: real)."""
    import pydicom

    from . import metrics, mrml, synth
    from .io.dicom import find_phases, read_dicom_study
    from .io.dicomwrite import write_dicom_study

    workdir = Path(workdir)
    steps: list = []
    phantom = synth.make_phantom(seed=1001, size=(96, 96, 32), p_no_lesion=0.0, lesion_diameter_mm=(20.0, 35.0))
    folder = write_dicom_study(phantom.study, workdir / "dicom", patient_id="SELFTEST", overwrite=True)
    pre_series = find_phases(folder)[0][0]
    files = {str(s.ds.SOPInstanceUID): str(s.path) for s in pre_series.slices}
    nodes = mrml.add_study(logic.scene, read_dicom_study(folder, case_id="selftest"), sequence=False)
    nodes.pre.SetAttribute("DICOM.instanceUIDs", " ".join(files))  # as Slicer's DICOM module sets it
    steps.append("load")

    rows = logic.detectPhases("Phase volumes", None, list(reversed(nodes.volumes)))
    if [row[0] for row in rows] != [node.GetID() for node in nodes.volumes]:
        raise AssertionError(f"phases not put back in acquisition order: {[row[1] for row in rows]}")
    study, reference = logic.buildStudy("Phase volumes", None, rows)
    job = logic.start(study, reference, "kinetic", "cpu")
    deadline = time.monotonic() + timeout
    while job.runner.is_running() and time.monotonic() < deadline:
        if idle is not None:
            idle()  # the GUI stays responsive while the worker runs
        time.sleep(0.05)
    final = job.runner.wait(timeout=max(1.0, deadline - time.monotonic()))
    if final is None or final.get("event") != "done":
        raise AssertionError(f"the kinetic run did not finish: {final}")
    segmentation = logic.finish(job, final)
    logic.cleanup(job)
    tumor = mrml.segment_array(segmentation, mrml.tumor_segment_id(segmentation))
    voxel_mm3 = study.voxel_volume_mm3
    steps.append("run kinetic")

    rethresholded = logic.rethreshold(segmentation, 0.5)  # the slider at the model's own threshold
    steps.append("threshold")
    if open_editor is not None:
        open_editor(segmentation)
    steps.append("editor")
    logic.startTiming("ai_refine", segmentation, reader="self-test", logFolder=workdir / "timing",
                      **({"clock": clock} if clock is not None else {}))
    refined = logic.refine(segmentation, "keep_largest")
    record, _ = logic.stopTiming()
    steps += ["refine", "timing"]
    table = logic.lesionTable(segmentation)
    stats = logic.statistics(segmentation)
    path = logic.exportDicomSeg(segmentation, workdir / "selftest.seg.dcm", files.get, overwrite=True)
    seg = pydicom.dcmread(str(path))
    steps.append("export")
    return FlowOutcome(
        dice=float(metrics.dice(tumor, phantom.tumor_array())), tumor_mm3=float(tumor.sum()) * voxel_mm3,
        rethresholded_mm3=rethresholded, refined_mm3=refined, t_stage=str(stats["t_stage"]),
        segmentation=segmentation, timing=record, lesion_rows=table.GetTable().GetNumberOfRows(), dicom_seg=path,
        dicom_seg_frames=int(seg.NumberOfFrames), referenced_series=str(seg.ReferencedSeriesSequence[0].SeriesInstanceUID),
        source_series=pre_series.series_uid, steps=steps)
