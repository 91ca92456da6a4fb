"""The panel's uncertainty map and "Other enhancing lesions" segment on a real MRML scene (slicer-core):
from a result made of phantom truth (fast), and through SceneLogic and the real worker with a network
model run with options ``tta`` and ``other_lesions`` (slow). Only "Tumor" counts as the tumor."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from slicer_scene import scene, slicer_context  # noqa: F401  (fixtures)
from test_lesions import BENIGN_BESIDE_CANCER

from BreastDCESegLib import mrml, synth
from BreastDCESegLib.lesions import OTHER_SEGMENT
from BreastDCESegLib.mrml.dicomseg import segmentation_labelmap
from BreastDCESegLib.results import SegmentationResult
from BreastDCESegLib.scene_logic import SceneLogic
from BreastDCESegLib.synth import TISSUE_LABELS as L

slicer = pytest.importorskip("slicer")
OTHER = OTHER_SEGMENT["name"]


@pytest.fixture
def logic(scene, tmp_path):
    return SceneLogic(scene, temp_root=str(tmp_path))


def _truth(ph):
    labels = sitk.GetArrayFromImage(ph.labels)
    return ph.tumor_array() > 0, labels == L["benign"]


def _names(segmentation) -> list:
    return [segmentation.GetSegmentation().GetSegment(s).GetName() for s in mrml.segment_ids(segmentation)]


def test_run_options_ask_tta_of_every_model(logic):  # the kinetic method's: its spread over cut levels
    assert logic.runOptions(uncertainty=True, otherLesions=True) == {"tta": True, "other_lesions": True}
    assert logic.runOptions(uncertainty=True, otherLesions=False) == {"tta": True}
    assert logic.runOptions(uncertainty=False, otherLesions=False) == {}


def test_other_lesions_segment_and_uncertainty_map_from_a_result(logic, scene):
    ph = synth.make_phantom(seed=40, **BENIGN_BESIDE_CANCER)
    tumor, benign = _truth(ph)
    spread = np.zeros(ph.study.shape, np.float32)
    spread[ndimage.binary_dilation(tumor) & ~tumor] = 0.25  # a ring at the border
    result = SegmentationResult(tumor=ph.study.image_like(tumor.astype(np.uint8), np.uint8),
                                probability=ph.study.image_like(tumor.astype(np.float32) * 0.9, np.float32),
                                uncertainty=ph.study.image_like(spread, np.float32),
                                other_lesions=ph.study.image_like(benign.astype(np.uint8), np.uint8),
                                model_id="resunet-demo")
    nodes = mrml.add_study(scene, ph.study, sequence=False)
    segmentation = mrml.result_to_segmentation(result, nodes.pre, case_id=ph.study.case_id)
    assert _names(segmentation) == ["Tumor", OTHER]
    other_id = segmentation.GetSegmentation().GetSegmentIdBySegmentName(OTHER)
    segment = segmentation.GetSegmentation().GetSegment(other_id)
    assert segment.GetColor() == pytest.approx(OTHER_SEGMENT["color"])
    (cv, cs, cm), (tv, ts, tm), (rv, rs, rm) = (OTHER_SEGMENT["terminology"][k] for k in ("category", "type", "region"))
    assert segment.GetTerminology() == slicer.vtkSlicerTerminologiesModuleLogic.SerializeTerminologyEntry(
        "Segmentation category and type - DICOM master list", cv, cs, cm, tv, ts, tm, "", "", "",
        "Anatomic codes - DICOM master list", rv, rs, rm, "", "", "")
    other = mrml.segment_array(segmentation, other_id)
    assert int(other.sum()) == int(benign.sum()) == 22 and not (other.astype(bool) & tumor).any()

    nodes_kept = logic.keepProbability(ph.study, segmentation, result)
    volume = logic.uncertaintyNode(segmentation)
    assert volume is nodes_kept["uncertainty"] and volume.GetName() == f"{ph.study.case_id} uncertainty"
    assert volume.GetDisplayNode().GetColorNodeID() == "vtkMRMLColorTableNodeOcean"
    assert (volume.GetDisplayNode().GetWindowLevelMin(), volume.GetDisplayNode().GetWindowLevelMax()) == (0.0, 1.0)
    assert np.array_equal(slicer.util.arrayFromVolume(volume), spread)

    voxel = ph.study.voxel_volume_mm3  # measures, lesion table and re-threshold read only "Tumor"
    stats = logic.statistics(segmentation)
    assert stats["volume_mm3"] == pytest.approx(tumor.sum() * voxel, rel=1e-6) and stats["lesion_count"] == 1
    table = logic.lesionTable(segmentation)
    assert table.GetNumberOfRows() == 1
    assert table.GetTable().GetValueByName(0, "Volume (mm3)").ToDouble() == pytest.approx(tumor.sum() * voxel, rel=1e-3)
    assert logic.rethreshold(segmentation, 0.5) == pytest.approx(tumor.sum() * voxel, rel=1e-6)
    assert np.array_equal(mrml.segment_array(segmentation, other_id), other)

    label, segments = segmentation_labelmap(segmentation)  # DICOM SEG: its own segment, label 3
    array = sitk.GetArrayFromImage(label)
    assert [s["name"] for s in segments] == ["Tumor", OTHER] and segments[1]["label"] == 3
    assert int((array == 1).sum()) == int(tumor.sum()) and int((array == 3).sum()) == 22


def test_empty_other_lesions_make_no_segment(scene):
    ph = synth.make_phantom(seed=3, size=(32, 32, 12), n_post=2, p_no_lesion=0.0)
    result = SegmentationResult(tumor=ph.tumor, other_lesions=ph.study.image_like(np.zeros(ph.study.shape), np.uint8))
    nodes = mrml.add_study(scene, ph.study, sequence=False)
    assert _names(mrml.result_to_segmentation(result, nodes.pre, case_id=ph.study.case_id)) == ["Tumor"]


@pytest.mark.slow
def test_panel_run_with_uncertainty_and_other_lesions_through_the_worker(logic, scene):
    """resunet-demo (demo weights) through SceneLogic and the real worker, asked for both options."""
    ph = synth.make_phantom(seed=47, **BENIGN_BESIDE_CANCER)
    tumor_truth, benign = _truth(ph)
    nodes = mrml.add_study(scene, ph.study, sequence=False)
    study, reference = logic.buildStudy("Phase volumes", None, logic.detectPhases("Phase volumes", None, nodes.volumes))
    job = logic.start(study, reference, "resunet-demo", "cpu",
                      options={**logic.runOptions(True, True), "threads": 2})
    final = job.runner.wait(timeout=300)
    assert final is not None and final["event"] == "done", final
    assert {"uncertainty", "other_lesions"} <= set(final["outputs"])
    segmentation = logic.finish(job, final)
    logic.cleanup(job)
    assert _names(segmentation) == ["Tumor", "Breast", OTHER]
    ids = segmentation.GetSegmentation()
    tumor = mrml.segment_array(segmentation, ids.GetSegmentIdBySegmentName("Tumor")).astype(bool)
    other = mrml.segment_array(segmentation, ids.GetSegmentIdBySegmentName(OTHER)).astype(bool)
    assert int(other.sum()) >= 12 and int((other & benign).sum()) >= 0.9 * other.sum()  # measured 20 of 20
    assert not (other & tumor_truth).any() and not (other & tumor).any()
    assert not (tumor & benign).any()

    u = slicer.util.arrayFromVolume(logic.uncertaintyNode(segmentation))
    assert u.shape == ph.study.shape and 0.0 <= float(u.min()) and float(u.max()) <= 0.5  # measured max 0.370
    border = ndimage.binary_dilation(tumor_truth) & ~ndimage.binary_erosion(tumor_truth)
    assert float(u[border].mean()) > 0.03                             # measured 0.055
    labels = sitk.GetArrayFromImage(ph.labels)  # far outside the breast: air, lung, heart
    assert float(u[ndimage.binary_erosion(labels == L["background"], iterations=2)].max()) < 1e-4  # measured 3.5e-6
    assert float(u[(labels == L["lung"]) | (labels == L["heart"])].max()) < 1e-3          # measured 6.0e-5
    far = ~ndimage.binary_dilation(tumor_truth | benign, iterations=8)
    assert float(np.percentile(u[far], 99)) < 1e-3                    # measured 4.9e-6

    stats = logic.statistics(segmentation)  # only "Tumor" is the tumor
    assert stats["voxels"] == int(tumor.sum())
    assert stats["volume_mm3"] == pytest.approx(tumor.sum() * ph.study.voxel_volume_mm3, rel=1e-6)
