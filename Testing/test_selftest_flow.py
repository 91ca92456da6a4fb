"""The flow Slicer's self-test (BreastDCESegTest) runs, on the slicer-core scene: load a DICOM
phantom, run the kinetic model in the worker, re-threshold, open the editor (a recording hook),
time one refinement, fill the lesion table, export DICOM SEG; every step's number checked."""

from __future__ import annotations

import pytest

from slicer_scene import scene, slicer_context  # noqa: F401  (fixtures)

from BreastDCESegLib import mrml
from BreastDCESegLib.scene_logic import SceneLogic
from BreastDCESegLib.selftest_flow import run_phantom_flow

pytest.importorskip("slicer")


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        self.now += 0.1            # every reading of the clock is 0.1 s later: one operation's events merge
        return self.now


@pytest.mark.slow
def test_phantom_flow_end_to_end(scene, tmp_path):
    logic = SceneLogic(scene, temp_root=str(tmp_path))
    opened = []
    try:
        outcome = run_phantom_flow(logic, tmp_path / "flow", open_editor=opened.append, clock=Clock())
    finally:
        getattr(logic, "closeWorker", lambda: None)()
    assert outcome.steps == ["load", "run kinetic", "threshold", "editor", "refine", "timing", "export"]
    assert opened == [outcome.segmentation]
    assert outcome.dice > 0.6, outcome.dice
    assert outcome.rethresholded_mm3 == pytest.approx(outcome.tumor_mm3)   # 0.5 reproduces the model's mask
    assert 0 < outcome.refined_mm3 <= outcome.tumor_mm3 + 1e-6            # keep the largest lesion
    assert outcome.t_stage in ("T1", "T2")
    # timing: start, one refinement (several events, one edit), stop
    assert outcome.timing.edits == 1 and outcome.timing.mode == "ai_refine" and outcome.timing.reader == "self-test"
    assert outcome.timing.wall_seconds == pytest.approx(outcome.timing.active_seconds) and outcome.timing.wall_seconds > 0
    assert outcome.timing.dice_ai_refined == pytest.approx(1.0, abs=0.05)
    assert outcome.lesion_rows >= 1
    assert outcome.referenced_series == outcome.source_series and outcome.dicom_seg.exists()
    assert outcome.dicom_seg_frames == 2 * 32                  # Tumor and Breast: one frame per source slice each
    assert mrml.segment_array(outcome.segmentation, mrml.tumor_segment_id(outcome.segmentation)).sum() > 0
