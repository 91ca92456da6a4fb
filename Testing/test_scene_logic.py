"""The panel's logic (SceneLogic) on a real MRML scene from the slicer-core wheel.

Phase volumes added in shuffled order are put back in acquisition order, the study goes
through the real background worker, the result becomes a new segmentation node on the
pre-contrast grid (Dice against phantom truth), statistics carry the T-stage, and a timing
session on each mode counts edits and writes its log.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from slicer_scene import scene, slicer_context  # noqa: F401  (fixtures)

from BreastDCESegLib import metrics, mrml, synth
from BreastDCESegLib.errors import BadInputError
from BreastDCESegLib.scene_logic import SceneLogic

slicer = pytest.importorskip("slicer")


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture(scope="module")
def phantom():
    return synth.make_phantom(seed=1002, size=(96, 96, 32), p_no_lesion=0.0, lesion_diameter_mm=(20.0, 35.0),
                               n_post=3)


@pytest.fixture
def logic(scene, tmp_path):
    return SceneLogic(scene, temp_root=str(tmp_path))


def _run(logic, study, reference, model="kinetic"):
    job = logic.start(study, reference, model, "cpu")
    final = job.runner.wait(timeout=300)
    assert final is not None and final["event"] == "done", final
    return job, logic.finish(job, final)


def test_models_and_default(logic):
    ids = [entry["id"] for entry in logic.models(task="tumor")]
    assert "kinetic" in ids and logic.defaultModelId() in ids
    assert not logic.needsTorch("kinetic")
    assert logic.needsTorch(logic.defaultModelId()) == (logic.modelInfo(logic.defaultModelId())["family"] != "kinetic")
    assert logic.modelInfo("no-such-model") == {}


def test_phase_volumes_ordered_and_run_end_to_end(logic, scene, phantom, tmp_path):
    nodes = mrml.add_study(scene, phantom.study, sequence=False)
    shuffled = [nodes.volumes[i] for i in (2, 0, 3, 1)]
    rows = logic.detectPhases("Phase volumes", None, shuffled)
    assert [row[0] for row in rows] == [node.GetID() for node in nodes.volumes]
    known = [t for t in phantom.study.times]
    if known[0] is not None:
        assert [row[2] for row in rows] == pytest.approx(known, abs=0.01)

    study, reference = logic.buildStudy("Phase volumes", None, rows)
    assert reference.GetID() == nodes.volumes[0].GetID()
    assert study.n_phases == phantom.study.n_phases and study.size == phantom.study.size

    job, segmentation = _run(logic, study, reference)
    assert job.runner.returncode == 0
    logic.cleanup(job)
    assert not (tmp_path / job.folder).exists()
    assert segmentation.GetAttribute(mrml.ATTR + "AI") == "1"
    predicted = mrml.segment_array(segmentation, mrml.tumor_segment_id(segmentation))
    assert predicted.shape == phantom.tumor_array().shape
    dice = metrics.dice(predicted, phantom.tumor_array())
    assert dice > 0.6, dice
    assert logic.studyOf(segmentation) is study

    stats = logic.statistics(segmentation)
    truth_ml = phantom.tumor_array().sum() * phantom.study.voxel_volume_mm3 / 1000.0
    assert stats["volume_ml"] == pytest.approx(truth_ml, rel=0.5)
    assert stats["t_stage"] in ("T1", "T2") and stats["model"] == "kinetic"
    assert float(stats["seconds"]) > 0

    # a second run is a new node: the first (perhaps edited) one is kept as it is
    job2, second = _run(logic, study, reference)
    logic.cleanup(job2)
    assert second.GetID() != segmentation.GetID()
    assert np.array_equal(mrml.segment_array(segmentation, mrml.tumor_segment_id(segmentation)), predicted)


def test_sequence_rows_with_corrected_order(logic, scene, phantom):
    nodes = mrml.add_study(scene, phantom.study, sequence=True)
    rows = logic.detectPhases("Sequence", nodes.sequence, [])
    assert [row[0] for row in rows] == list(range(phantom.study.n_phases))
    rows[1], rows[2] = rows[2], rows[1]                 # the reader swaps two phases in the table...
    with pytest.raises(BadInputError, match="must increase"):
        logic.buildStudy("Sequence", nodes.sequence, rows)
    rows[1][2], rows[2][2] = rows[2][2], rows[1][2]     # ...and corrects their times too
    study, reference = logic.buildStudy("Sequence", nodes.sequence, rows)
    assert study.times == sorted(study.times)
    assert np.array_equal(study.arrays()[1], phantom.study.arrays()[2])
    assert reference.GetAttribute(mrml.ATTR + "Phase") == "0"
    assert logic.referenceVolume(study) is reference   # found again, not made twice


def test_bad_selections_are_clear(logic, scene, phantom):
    with pytest.raises(BadInputError, match="at least one post-contrast"):
        logic.buildStudy("Phase volumes", None, [["vtkMRMLScalarVolumeNode1", "pre", None]])
    with pytest.raises(BadInputError, match="Select a DCE sequence"):
        logic.buildStudy("Sequence", None, [[0, "a", None], [1, "b", None]])
    with pytest.raises(BadInputError, match="no longer in the scene"):
        logic.buildStudy("Phase volumes", None, [["vtkMRMLScalarVolumeNode999", "gone", None],
                                                 ["vtkMRMLScalarVolumeNode998", "gone too", None]])
    assert logic.detectPhases("Sequence", None, []) == []


def test_misaligned_phase_refused_unless_resampling_is_allowed(logic, scene, phantom):
    """A phase volume moved 20 mm off the pre-contrast grid is refused with a message naming it; with
    resampling allowed the study is built on the pre-contrast grid, the panel gets the warning, and
    the study rebuilt for the segmentation later keeps that choice."""
    nodes = mrml.add_study(scene, phantom.study, sequence=False)
    rows = logic.detectPhases("Phase volumes", None, nodes.volumes)
    moved = scene.GetNodeByID(rows[1][0])
    origin = list(moved.GetOrigin())
    moved.SetOrigin(origin[0] + 20.0, origin[1], origin[2])
    with pytest.raises(BadInputError, match="allow-resample|resampl"):
        logic.buildStudy("Phase volumes", None, rows)
    study, reference = logic.buildStudy("Phase volumes", None, rows, allowResample=True)
    assert study.shape == phantom.study.shape
    assert np.allclose(study.origin, phantom.study.origin)
    warnings = logic.studyWarnings(study)
    assert len(warnings) == 1 and "resampl" in warnings[0]
    assert study.metadata["scene_source"][3] is True
    again = logic._rebuildStudy(study.metadata["scene_source"])
    assert logic.studyWarnings(again) == warnings


def test_subtractions_made_once_and_editor_source(logic, scene, phantom):
    nodes = mrml.add_study(scene, phantom.study, sequence=False)
    study, reference = logic.buildStudy("Phase volumes", None,
                                        logic.detectPhases("Phase volumes", None, nodes.volumes))
    first = logic.subtractionVolumes(study)
    assert len(first) == study.n_post + 1                # each post - pre and their maximum
    assert logic.subtractionVolumes(study) == first
    sub = slicer.util.arrayFromVolume(first[0])
    assert np.allclose(sub, study.arrays()[1] - study.arrays()[0], atol=1e-3)
    seg = logic.newManualSegmentation(reference, study.case_id)
    assert logic.editorSourceVolume(seg) is first[0]
    scene.RemoveNode(first[0])
    assert logic.editorSourceVolume(seg) is None
    assert len(logic.subtractionVolumes(study)) == len(first)   # made again when one was deleted


def test_manual_timing_counts_edits_and_logs(logic, scene, phantom, tmp_path):
    nodes = mrml.add_study(scene, phantom.study, sequence=False)
    study, _ = logic.buildStudy("Phase volumes", None, logic.detectPhases("Phase volumes", None, nodes.volumes))
    clock = FakeClock()
    with pytest.raises(BadInputError, match="needs a study"):
        logic.startTiming("manual", study=None)
    with pytest.raises(BadInputError, match="Unknown timing mode"):
        logic.startTiming("stopwatch", study=study)
    state = logic.startTiming("manual", study=study, reader="R1", idleThreshold=15.0, clock=clock)
    assert state.segmentation.GetName() == f"{study.case_id} manual"
    assert mrml.segment_array(state.segmentation, mrml.tumor_segment_id(state.segmentation)).sum() == 0
    truth = phantom.tumor_array().astype(np.uint8)
    clock.now += 20
    mrml.set_segment(state.segmentation, "Tumor", truth)           # the reader paints the lesion
    clock.now += 10
    with pytest.raises(BadInputError, match="folder for the timing"):
        logic.stopTiming(state, None, "")
    record, summary = logic.stopTiming(state, None, tmp_path / "log")
    assert record.mode == "manual" and record.edits == 1 and record.reader == "R1"
    assert record.active_seconds == pytest.approx(15.0 + 10.0)  # the 20 s pause before the first edit counts 15 s
    assert record.capped_gaps == 1 and record.idle_seconds == pytest.approx(5.0)
    assert record.idle_threshold_s == 15.0 and record.wall_seconds == pytest.approx(30.0)
    rows = [json.loads(line) for line in (tmp_path / "log" / "timing.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["case_id"] == study.case_id
    assert "manual" in summary


def test_ai_refine_timing_compares_masks(logic, scene, phantom, tmp_path):
    nodes = mrml.add_study(scene, phantom.study, sequence=False)
    study, reference = logic.buildStudy("Phase volumes", None,
                                        logic.detectPhases("Phase volumes", None, nodes.volumes))
    with pytest.raises(BadInputError, match="run the model"):
        logic.startTiming("ai_refine", logic.newManualSegmentation(reference, study.case_id))
    job, ai = _run(logic, study, reference)
    logic.cleanup(job)
    ai_mask = mrml.segment_array(ai, mrml.tumor_segment_id(ai))
    truth = phantom.tumor_array().astype(np.uint8)
    reference_seg = logic.newManualSegmentation(reference, "truth")
    mrml.set_segment(reference_seg, "Tumor", truth)

    clock = FakeClock()
    state = logic.startTiming("ai_refine", ai, clock=clock)
    assert state.session.ai_seconds > 0
    clock.now += 12
    mrml.set_segment(ai, "Tumor", truth)                             # refined to the truth
    clock.now += 3
    record, _ = logic.stopTiming(state, reference_seg, tmp_path)
    assert record.edits == 1 and record.active_seconds == pytest.approx(15.0)
    assert record.dice_refined_reference == pytest.approx(1.0)
    assert record.dice_ai_reference == pytest.approx(metrics.dice(ai_mask, truth), abs=1e-6)
    assert record.dice_ai_refined == pytest.approx(record.dice_ai_reference, abs=1e-6)
    assert record.total_seconds == pytest.approx(15.0 + state.session.ai_seconds, abs=1e-6)


def test_one_click_refinements_are_undoable(logic, scene, phantom):
    nodes = mrml.add_study(scene, phantom.study, sequence=False)
    study, reference = logic.buildStudy("Phase volumes", None,
                                        logic.detectPhases("Phase volumes", None, nodes.volumes))
    seg = logic.newManualSegmentation(reference, study.case_id)
    mask = np.zeros(phantom.tumor_array().shape, np.uint8)
    mask[10:16, 30:40, 30:40] = 1                                # a 6 x 10 x 10 box with a cavity
    mask[12:14, 34:36, 34:36] = 0
    mask[20, 70, 70] = 1                                         # and a one-voxel island
    mrml.set_segment(seg, "Tumor", mask)
    voxel = study.voxel_volume_mm3
    assert logic.refine(seg, "fill_holes") == pytest.approx((600 + 1) * voxel)
    assert logic.refine(seg, "keep_largest") == pytest.approx(600 * voxel)
    grown = logic.refine(seg, "grow")
    assert grown > 600 * voxel
    assert logic.undoRefinement(seg) == pytest.approx(600 * voxel)
    assert logic.undoRefinement(seg) == pytest.approx(601 * voxel)
    assert logic.refine(seg, "remove_small") == pytest.approx(600 * voxel)   # 50 mm3 > one voxel
    assert 0 < logic.refine(seg, "shrink") < 600 * voxel
    with pytest.raises(BadInputError, match="Unknown refinement"):
        logic.refine(seg, "smooth")
    with pytest.raises(BadInputError, match="Select the segmentation"):
        logic.refine(None, "grow")
