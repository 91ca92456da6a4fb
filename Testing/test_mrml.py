"""mrml.py against the real MRML libraries of the slicer-core wheel (no mocks).

Studies are small (32 x 32 x 12) with anisotropic spacing, a non-zero origin and axial,
oblique and sagittal directions, so that LPS <-> RAS mistakes show up as wrong numbers.
"""

import math

import numpy as np
import pytest
import SimpleITK as sitk

from slicer_scene import scene, slicer_context  # noqa: F401  (fixtures)

from BreastDCESegLib import mrml
from BreastDCESegLib.results import SegmentationResult
from BreastDCESegLib.study import DCEStudy

slicer = pytest.importorskip("slicer")

SPACING = (0.8, 0.7, 2.5)
ORIGIN = (-10.0, 20.0, 30.0)
C, S = math.cos(0.5), math.sin(0.5)
DIRECTIONS = {
    "axial": (1, 0, 0, 0, 1, 0, 0, 0, 1),
    "oblique": (C, -S, 0, S, C, 0, 0, 0, 1),
    "sagittal": (0, 0, -1, 1, 0, 0, 0, -1, 0),
}
SHAPE = (12, 32, 32)  # z, y, x
VOXEL_MM3 = 0.8 * 0.7 * 2.5
TUMOR_BOX = (slice(3, 7), slice(8, 14), slice(10, 20))      # 4 x 6 x 10 = 240 voxels
BREAST_BOX = (slice(1, 11), slice(2, 30), slice(2, 30))


def make_study(direction="oblique", times=(0.0, 60.0, 120.0), case_id="c1"):
    rng = np.random.default_rng(1)
    pre = 100.0 + rng.random(SHAPE).astype(np.float32)
    post1, post2 = pre + 5.0, pre + 3.0
    post1[TUMOR_BOX] = pre[TUMOR_BOX] * 1.5
    post2[TUMOR_BOX] = pre[TUMOR_BOX] * 1.3
    return DCEStudy.from_arrays([pre, post1, post2], spacing=SPACING, origin=ORIGIN,
                                direction=DIRECTIONS[direction], times=list(times), case_id=case_id)


def box_mask(*boxes):
    mask = np.zeros(SHAPE, np.uint8)
    for box in boxes:
        mask[box] = 1
    return mask


def make_result(study, tumor, breast=None):
    return SegmentationResult(tumor=study.image_like(tumor, np.uint8),
                              breast=None if breast is None else study.image_like(breast, np.uint8),
                              model_id="kinetic")


# ----------------------------------------------------------------------------- scene set-up
def test_scene_fixture_registers_logics(slicer_context):
    scene = slicer_context.scene
    assert slicer.mrmlScene is scene
    assert scene.GetNumberOfNodesByClass("vtkMRMLColorTableNode") > 10
    for name in ("Volumes", "Segmentations", "Sequences", "SubjectHierarchy"):
        assert mrml.module_logic(scene, name) is slicer_context.logics[name]
    assert slicer.modules.segmentations.logic() is slicer_context.logics["Segmentations"]
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "probe")
    assert slicer.util.getNode("probe") is node


# ----------------------------------------------------------------------------- geometry
@pytest.mark.parametrize("direction", sorted(DIRECTIONS))
def test_geometry_round_trip_and_ras(scene, direction):
    study = make_study(direction)
    nodes = mrml.add_study(scene, study)
    m = mrml.volume_ijk_to_ras(nodes.pre)
    # voxel (i, j, k) -> LPS by SimpleITK, RAS by MRML: x and y flip sign, z is kept
    for ijk in [(0, 0, 0), (31, 0, 0), (5, 17, 9), (31, 31, 11)]:
        lps = np.array(study.reference.TransformIndexToPhysicalPoint(ijk))
        ras = m @ np.array([*ijk, 1.0])
        np.testing.assert_allclose(ras[:3], lps * [-1, -1, 1], atol=1e-9)
    np.testing.assert_allclose(nodes.pre.GetSpacing(), SPACING, atol=1e-12)
    np.testing.assert_allclose(nodes.pre.GetOrigin(), (10.0, -20.0, 30.0), atol=1e-12)
    back = mrml.study_from_sequence(nodes.sequence)
    assert back.case_id == "c1"
    assert back.times == [0.0, 60.0, 120.0]
    np.testing.assert_allclose(back.spacing, SPACING, atol=1e-9)
    np.testing.assert_allclose(back.origin, ORIGIN, atol=1e-9)
    np.testing.assert_allclose(back.direction, DIRECTIONS[direction], atol=1e-9)
    np.testing.assert_array_equal(back.arrays(), study.arrays())


def test_sequence_and_browser(scene):
    nodes = mrml.add_study(scene, make_study())
    seq = nodes.sequence
    assert (seq.GetIndexName(), seq.GetIndexUnit(), seq.GetNumberOfDataNodes()) == ("time", "s", 3)
    assert [seq.GetNthIndexValue(i) for i in range(3)] == ["0", "60", "120"]
    assert nodes.browser.GetMasterSequenceNode() is seq
    proxy = nodes.browser.GetProxyNode(seq)
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(proxy), slicer.util.arrayFromVolume(nodes.pre))
    sh = scene.GetSubjectHierarchyNode()
    for node in (nodes.volumes[2], seq, nodes.browser, proxy):
        assert sh.GetItemParent(sh.GetItemByDataNode(node)) == nodes.folder_item
    assert sh.GetItemName(nodes.folder_item) == "c1"
    assert sh.GetItemLevel(nodes.folder_item) == "Study"
    assert [v.GetName() for v in nodes.volumes] == ["c1 pre", "c1 post1", "c1 post2"]


def test_phase_detection_from_volumes_and_overrides(scene):
    study = make_study()
    images = {name: study.phases[k] for k, name in enumerate(["pre", "post1", "post2"])}
    picked = [mrml.image_to_volume(scene, images[n], f"Pat7 {n}") for n in ("post2", "pre", "post1")]
    found = mrml.study_from_volumes(picked)
    assert found.case_id == "Pat7"
    np.testing.assert_array_equal(found.arrays(), study.arrays())
    assert found.times == [None, None, None]
    explicit = mrml.study_from_volumes(picked, order=[1, 2, 0], times=[0, 75, 150], case_id="x")
    np.testing.assert_array_equal(explicit.arrays()[1], study.arrays()[1])
    assert explicit.times == [0.0, 75.0, 150.0] and explicit.case_id == "x"
    for node, t in zip(picked, (240.0, 30.0, 120.0)):
        node.SetAttribute("DCE.Time", str(t))
    timed = mrml.study_from_volumes(picked)
    assert timed.times == [0.0, 90.0, 210.0]  # absolute times made relative to the pre phase
    assert [mrml.phase_rank_from_name(n) for n in ("Pre-contrast", "post 3", "PHASE_2", "case_0001", "T1 sub1")] \
        == [0, 3, 2, 1, None]


def test_sequence_in_milliseconds_detected_and_reordered(scene):
    study = make_study()
    seq = scene.AddNewNodeByClass("vtkMRMLSequenceNode", "dce")
    seq.SetIndexName("TriggerTime")
    seq.SetIndexUnit("ms")
    for k, value in ((2, "150000"), (0, "30000"), (1, "90000")):
        seq.SetDataNodeAtValue(mrml.image_to_volume(scene, study.phases[k], f"f{k}"), value)
    back = mrml.study_from_sequence(seq, case_id="ms")
    assert back.times == [0.0, 60.0, 120.0]
    np.testing.assert_array_equal(back.arrays(), study.arrays())
    with pytest.raises(Exception, match="permutation"):
        mrml.study_from_sequence(seq, order=[0, 0, 1])


# ----------------------------------------------------------------------------- derived volumes
def test_subtraction_volumes_and_window_level(scene):
    study = make_study()
    nodes = mrml.add_study(scene, study)
    subs = mrml.add_subtraction_volumes(scene, study, parent=nodes)
    assert [n.GetName() for n in subs] == ["c1 sub1", "c1 sub2", "c1 MIP"]
    a = study.arrays()
    np.testing.assert_allclose(slicer.util.arrayFromVolume(subs[0]), a[1] - a[0], atol=1e-4)
    np.testing.assert_allclose(slicer.util.arrayFromVolume(subs[2]), np.maximum(a[1], a[2]) - a[0], atol=1e-4)
    np.testing.assert_allclose(mrml.volume_ijk_to_ras(subs[1]), mrml.volume_ijk_to_ras(nodes.pre))
    display = subs[0].GetDisplayNode()
    sub = a[1] - a[0]
    lo, hi = np.percentile(sub[sub > 0], [1, 99.5])
    assert display.GetAutoWindowLevel() == 0
    assert display.GetWindowLevelMin() == pytest.approx(lo, rel=1e-4)
    assert display.GetWindowLevelMax() == pytest.approx(hi, rel=1e-4)


def test_enhancement_curve_table(scene):
    study = make_study()
    nodes = mrml.add_study(scene, study)
    seg = mrml.result_to_segmentation(make_result(study, box_mask(TUMOR_BOX)), nodes.pre)
    table = mrml.add_enhancement_curve_table(scene, study, seg)
    cols = mrml.table_columns(table)
    np.testing.assert_allclose(cols["Time (s)"], [0, 60, 120])
    np.testing.assert_allclose(cols["Percent enhancement"], [0.0, 50.0, 30.0], atol=1e-3)
    assert cols["Mean"][0] == pytest.approx(study.arrays()[0][TUMOR_BOX].mean(), rel=1e-6)
    assert table.GetAttribute("BreastDCESeg.Voxels") == "240"


# ----------------------------------------------------------------------------- segmentation
def test_result_to_segmentation(scene):
    study = make_study("sagittal")
    nodes = mrml.add_study(scene, study)
    tumor, breast = box_mask(TUMOR_BOX), box_mask(BREAST_BOX)
    seg = mrml.result_to_segmentation(make_result(study, tumor, breast), nodes.pre, include_breast=True)
    assert seg.GetName() == "c1 AI"
    ref = seg.GetNodeReference(slicer.vtkMRMLSegmentationNode.GetReferenceImageGeometryReferenceRole())
    assert ref is nodes.pre
    assert [seg.GetSegmentation().GetSegment(s).GetName() for s in mrml.segment_ids(seg)] == ["Tumor", "Breast"]
    segment = seg.GetSegmentation().GetSegment("Tumor")
    import vtk

    tag_value = vtk.reference("")
    assert segment.GetTag(segment.GetTerminologyEntryTagName(), tag_value)
    tag = str(tag_value)
    assert tag == segment.GetTerminology()
    assert tag == ("Segmentation category and type - DICOM master list~SCT^49755003^Morphologically Altered Structure"
                   "~SCT^108369006^Neoplasm~^^~Anatomic codes - DICOM master list~SCT^76752008^Breast~^^")
    assert seg.GetSegmentation().GetSegment("Breast").GetTerminology().split("~")[2] == "SCT^76752008^Breast"
    np.testing.assert_allclose(segment.GetColor(), mrml.SEGMENT_TYPES["Tumor"]["color"])
    np.testing.assert_array_equal(mrml.segment_array(seg, "Tumor"), tumor)
    np.testing.assert_array_equal(mrml.segment_array(seg, "Breast"), breast)
    sh = scene.GetSubjectHierarchyNode()
    assert sh.GetItemParent(sh.GetItemByDataNode(seg)) == nodes.folder_item
    assert seg.GetAttribute("BreastDCESeg.Model") == "kinetic"
    assert not mrml.is_user_edited(seg)


def test_batch_style_add_segmentation(scene):
    study = make_study()
    nodes = mrml.add_study(scene, study, name="case9")
    seg = mrml.add_segmentation(scene, make_result(study, box_mask(TUMOR_BOX), box_mask(BREAST_BOX)), nodes,
                                name="case9 segmentation")
    assert seg.GetName() == "case9 segmentation" and seg.GetAttribute("BreastDCESeg.Case") == "case9"
    assert seg.GetSegmentation().GetNumberOfSegments() == 2


def test_rerun_never_overwrites_user_edits(scene):
    study = make_study()
    nodes = mrml.add_study(scene, study)
    first = mrml.result_to_segmentation(make_result(study, box_mask(TUMOR_BOX)), nodes.pre)
    second = mrml.result_to_segmentation(make_result(study, box_mask(TUMOR_BOX)), nodes.pre)
    assert second is not first and second.GetName() == "c1 AI 2"
    editor = mrml.SegmentEditorSession(second, nodes.pre)
    editor.margin(1.0)
    edited = mrml.segment_array(second, "Tumor")
    assert mrml.is_user_edited(second) and not mrml.is_user_edited(first)
    third = mrml.result_to_segmentation(make_result(study, box_mask(TUMOR_BOX)), nodes.pre)
    assert third.GetName() == "c1 AI 3"
    np.testing.assert_array_equal(mrml.segment_array(second, "Tumor"), edited)  # the edit survives


def test_segment_statistics_box(scene):
    study = make_study("oblique")
    nodes = mrml.add_study(scene, study)
    small = (slice(9, 10), slice(25, 27), slice(25, 27))
    seg = mrml.result_to_segmentation(make_result(study, box_mask(TUMOR_BOX, small)), nodes.pre)
    stats = mrml.segment_statistics(seg, study=study)
    assert stats["voxels"] == 244
    assert stats["volume_mm3"] == pytest.approx(244 * VOXEL_MM3, rel=1e-12)
    assert stats["volume_ml"] == pytest.approx(244 * VOXEL_MM3 / 1000, rel=1e-12)
    assert stats["lesion_count"] == 2
    # centroid: mean of the voxel centres' RAS positions
    zyx = np.argwhere(box_mask(TUMOR_BOX, small))
    ras = (mrml.volume_ijk_to_ras(nodes.pre) @ np.c_[zyx[:, ::-1], np.ones(len(zyx))].T)[:3].mean(axis=1)
    np.testing.assert_allclose(stats["centroid_ras"], ras, atol=1e-3)
    assert stats["feret_diameter_mm"] == pytest.approx(stats["extent_mm"], rel=1e-4)  # across both lesions
    pts = np.array([[10, 8, 3], [29 - 3, 26, 9]])  # tumor corner to far corner of the small box
    assert stats["extent_mm"] >= np.linalg.norm((pts[1] - pts[0]) * SPACING) - 1e-6
    # the longest diameter is the largest lesion's: the 4 x 6 x 10 box, corner to corner
    assert stats["longest_diameter_mm"] == pytest.approx(np.linalg.norm(np.array([9, 5, 3]) * SPACING), rel=1e-9)
    assert stats["mean_enhancement_percent"] == pytest.approx(
        (50.0 * 240 + 100 * (5.0 / study.arrays()[0][small]).sum()) / 244, rel=1e-4)


# ----------------------------------------------------------------------------- editor
def test_editor_setup_and_undoable_operations(scene):
    study = make_study("axial")
    nodes = mrml.add_study(scene, study)
    subs = mrml.add_subtraction_volumes(scene, study, parent=nodes)
    tumor = box_mask(TUMOR_BOX, (slice(9, 10), slice(25, 27), slice(25, 27)))  # 240 + 4 voxels
    tumor[5, 11, 15] = 0  # a one-voxel hole
    seg = mrml.result_to_segmentation(make_result(study, tumor, box_mask(BREAST_BOX)), nodes.pre, include_breast=True)
    editor = mrml.SegmentEditorSession(seg, subs[-1])
    assert editor.editor_node.GetSegmentationNode() is seg
    assert editor.editor_node.GetSourceVolumeNode() is subs[-1]
    assert editor.segment_id == "Tumor"
    counts = [int(editor.array().sum())]
    editor.fill_holes()
    counts.append(int(editor.array().sum()))
    editor.remove_small_islands(5 * VOXEL_MM3)            # the 4-voxel island goes
    counts.append(int(editor.array().sum()))
    editor.margin(1.0)                                    # +x faces (0.8 mm) and +y faces (0.7 mm) only
    counts.append(int(editor.array().sum()))
    assert counts == [243, 244, 240, 240 + 2 * 4 * 6 + 2 * 4 * 10]
    editor.undo()
    assert editor.array().sum() == 240
    editor.margin(-1.0)                                   # 2 layers in x and y, 1 in z: 6 x 2 x 2
    assert editor.array().sum() == 6 * 2 * 2
    assert editor.volume_mm3() == pytest.approx(24 * VOXEL_MM3)
    editor.undo()
    editor.undo()
    assert editor.array().sum() == 244
    editor.keep_largest_island()
    np.testing.assert_array_equal(editor.array(), box_mask(TUMOR_BOX))
    editor.undo()
    editor.undo()
    assert editor.array().sum() == 243
    editor.redo()
    assert editor.array().sum() == 244
    np.testing.assert_array_equal(mrml.segment_array(seg, "Breast"), box_mask(BREAST_BOX))  # untouched


def test_phantom_in_scene(scene):
    synth = pytest.importorskip("BreastDCESegLib.synth")
    phantom = synth.make_phantom(seed=0, size=(48, 48, 16))
    nodes = mrml.add_study(scene, phantom.study, name="phantom")
    result = SegmentationResult(tumor=phantom.tumor, breast=phantom.breast, model_id="truth")
    seg = mrml.add_segmentation(scene, result, nodes)
    stats = mrml.segment_statistics(seg, study=phantom.study)
    truth = sitk.GetArrayFromImage(phantom.tumor) != 0
    assert stats["voxels"] == int(truth.sum())
    assert stats["volume_mm3"] == pytest.approx(truth.sum() * phantom.study.voxel_volume_mm3, rel=1e-9)
    back = mrml.study_from_sequence(nodes.sequence)
    np.testing.assert_allclose(back.direction, phantom.study.direction, atol=1e-9)
    np.testing.assert_array_equal(back.arrays(), phantom.study.arrays())
