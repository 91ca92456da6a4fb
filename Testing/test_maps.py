"""Maps a radiologist reads: kinetic maps with exact values, the colour tables and display ranges
of their volume nodes, the live probability threshold (mm³ at 0.3 and 0.7), and the lesion and
statistics tables, on the slicer-core scene."""

from __future__ import annotations

import numpy as np
import pytest

from BreastDCESegLib import kinetics
from BreastDCESegLib.errors import BadInputError
from BreastDCESegLib.probability import threshold_probability
from BreastDCESegLib.results import SegmentationResult
from BreastDCESegLib.study import DCEStudy

SPACING = (0.8, 0.8, 2.0)  # x, y, z mm: voxel 1.28 mm³
VOXEL = 0.8 * 0.8 * 2.0
# pre, early, mid, late
WASHOUT = [100, 300, 260, 220]      # PE 200 %, SER 200/120, washout +40 %
PERSISTENT = [100, 160, 200, 240]   # PE 60 %, SER 60/140, washout -133.3 %
FLAT = [100, 102, 101, 103]         # not enhancing


def lesion_study() -> tuple[DCEStudy, np.ndarray, np.ndarray]:
    """12 x 20 x 20 voxels of flat background, a 4 x 6 x 6 washout lesion and a 2 x 3 x 3 persistent one."""
    shape = (12, 20, 20)
    lesion = np.zeros(shape, bool)
    lesion[4:8, 5:11, 5:11] = True
    second = np.zeros(shape, bool)
    second[1:3, 15:18, 15:18] = True
    arrays = np.empty((4,) + shape, np.float32)
    for k in range(4):
        arrays[k] = FLAT[k]
        arrays[k][lesion] = WASHOUT[k]
        arrays[k][second] = PERSISTENT[k]
    study = DCEStudy.from_arrays(list(arrays), spacing=SPACING, origin=(10.0, -20.0, 5.0),
                                 times=[0.0, 90.0, 180.0, 270.0], case_id="maps1")
    return study, lesion, second


# ----------------------------------------------------------------------------- kinetic maps
def test_kinetic_maps_values_at_lesions_and_background():
    study, lesion, second = lesion_study()
    maps = kinetics.kinetic_maps(study)
    assert set(maps) == set(kinetics.MAP_NAMES)
    background = ~(lesion | second)
    assert np.unique(maps["percent_enhancement"][lesion]) == pytest.approx([200.0])
    assert np.unique(maps["percent_enhancement"][background]) == pytest.approx([2.0])
    assert np.unique(maps["peak_enhancement"][second]) == pytest.approx([140.0])
    assert np.unique(maps["ser"][lesion]) == pytest.approx([200 / 120])
    assert np.unique(maps["ser"][second]) == pytest.approx([60 / 140])
    assert np.unique(maps["ser"][background]).tolist() == [0.0]          # not enhancing: no SER
    assert np.unique(maps["washout"][lesion]) == pytest.approx([40.0])
    assert np.unique(maps["washout"][second]) == pytest.approx([-100 * 80 / 60])
    assert np.unique(maps["washout"][background]).tolist() == [0.0]
    assert np.unique(maps["curve_type"][lesion]).tolist() == [kinetics.WASHOUT]
    assert np.unique(maps["curve_type"][second]).tolist() == [kinetics.PERSISTENT]
    assert np.unique(maps["curve_type"][background]).tolist() == [kinetics.NONE]


def test_air_is_zero_in_every_map():
    study, lesion, second = lesion_study()
    arrays = study.arrays().copy()
    arrays[:, 10:] = np.array([2.0, 8.0, 7.0, 5.0])[:, None, None, None]   # air: noise that looks like enhancement
    air = DCEStudy.from_arrays(list(arrays), spacing=SPACING, times=[0.0, 90.0, 180.0, 270.0])
    maps = kinetics.kinetic_maps(air)
    assert kinetics.percent_enhancement(air)[10:].min() == pytest.approx(120.0)   # "enhancing" without the tissue rule
    assert all(not m[10:].any() for m in maps.values())
    assert np.unique(maps["curve_type"][lesion]).tolist() == [kinetics.WASHOUT]   # tissue is kept


def test_single_post_phase_has_no_washout():
    study = DCEStudy.from_arrays([np.full((2, 3, 3), 100.0), np.full((2, 3, 3), 300.0)], spacing=SPACING)
    assert not kinetics.washout_percent(study).any()


# ----------------------------------------------------------------------------- threshold
def probability_phantom() -> tuple[np.ndarray, dict[str, int]]:
    """A 6x6x6 core at p = 0.9, a one-voxel shell around it at p = 0.5, and a 2x2x2 island at 0.8."""
    p = np.zeros((20, 24, 24), np.float32)
    p[3:11, 3:11, 3:11] = 0.5
    p[4:10, 4:10, 4:10] = 0.9
    p[15:17, 18:20, 18:20] = 0.8
    return p, {"core": 216, "shell": 512 - 216, "island": 8}


def test_threshold_gives_the_expected_volumes():
    p, n = probability_phantom()
    low = threshold_probability(p, 0.3, SPACING)
    high = threshold_probability(p, 0.7, SPACING)
    assert low.sum() * VOXEL == pytest.approx((n["core"] + n["shell"] + n["island"]) * VOXEL)   # 665.6 mm³
    assert high.sum() * VOXEL == pytest.approx((n["core"] + n["island"]) * VOXEL)               # 286.72 mm³
    # the island is 10.24 mm³: a 15 mm³ minimum removes it, a 10 mm³ one keeps it
    assert threshold_probability(p, 0.7, SPACING, min_component_mm3=15.0).sum() == n["core"]
    assert threshold_probability(p, 0.7, SPACING, min_component_mm3=10.0).sum() == n["core"] + n["island"]
    within = np.zeros(p.shape, bool)
    within[:12] = True
    assert threshold_probability(p, 0.3, SPACING, within=within).sum() == n["core"] + n["shell"]
    with pytest.raises(BadInputError, match="threshold must be in"):
        threshold_probability(p, 0.0, SPACING)
    with pytest.raises(BadInputError, match="minimum component"):
        threshold_probability(p, 0.5, SPACING, min_component_mm3=-1)


# ----------------------------------------------------------------------------- scene
@pytest.fixture
def scene():
    pytest.importorskip("slicer")
    from slicer_scene import slicer_scene_context

    with slicer_scene_context() as context:
        yield context.scene


def test_map_volumes_colours_ranges_and_values(scene):
    import slicer

    from BreastDCESegLib import mrml
    from BreastDCESegLib.mrml import maps

    study, lesion, second = lesion_study()
    probability = study.image_like(np.where(lesion, 0.9, 0.1).astype(np.float32), np.float32)
    nodes = maps.add_map_volumes(scene, study, probability=probability)
    assert sorted(nodes) == sorted(list(kinetics.MAP_NAMES) + ["probability"])   # no uncertainty given
    expected = {"percent_enhancement": ("vtkMRMLPETProceduralColorNodePET-Heat", 200.0, 100.0),
                "peak_enhancement": ("vtkMRMLPETProceduralColorNodePET-Heat", 200.0, 100.0),
                "ser": ("vtkMRMLColorTableNodeRainbow", 2.0, 1.0),
                "washout": ("vtkMRMLColorTableNodeRainbow", 100.0, 0.0),
                "probability": ("vtkMRMLColorTableNodeIron", 1.0, 0.5)}
    for key, (color_id, window, level) in expected.items():
        display = nodes[key].GetDisplayNode()
        assert nodes[key].GetClassName() == "vtkMRMLScalarVolumeNode"
        assert display.GetColorNodeID() == color_id, key
        assert (display.GetWindow(), display.GetLevel(), display.GetAutoWindowLevel()) == (window, level, 0), key
    curve = nodes["curve_type"]
    assert curve.GetClassName() == "vtkMRMLLabelMapVolumeNode" and curve.GetName() == "maps1 curve type"
    table = curve.GetDisplayNode().GetColorNode()
    assert table.GetClassName() == "vtkMRMLColorTableNode" and table.GetNumberOfColors() == 4
    assert [table.GetColorName(i) for i in range(4)] == ["none", "persistent", "plateau", "washout"]
    rgba = [0.0] * 4
    table.GetColor(kinetics.WASHOUT, rgba)
    assert rgba == [1.0, 0.0, 0.0, 1.0]
    table.GetColor(kinetics.PERSISTENT, rgba)
    assert rgba[2] == 1.0 and rgba[0] == 0.0
    table.GetColor(kinetics.NONE, rgba)
    assert rgba[3] == 0.0                                              # background transparent
    pe = slicer.util.arrayFromVolume(nodes["percent_enhancement"])
    assert pe[lesion].mean() == pytest.approx(200.0) and pe[~(lesion | second)].max() == pytest.approx(2.0)
    ct = slicer.util.arrayFromVolume(curve)
    assert np.bincount(ct.ravel(), minlength=4).tolist() == [12 * 400 - 144 - 18, 18, 0, 144]
    assert np.array_equal(slicer.util.arrayFromVolume(nodes["probability"]) > 0.5, lesion)
    geometry = mrml.volume_ijk_to_ras(nodes["ser"])
    assert geometry[:3, 3] == pytest.approx([-10.0, 20.0, 5.0])       # LPS origin -> RAS
    again = maps.add_map_volumes(scene, study)                         # a second run updates in place
    assert again["ser"] is nodes["ser"] and scene.GetNumberOfNodesByClass("vtkMRMLLabelMapVolumeNode") == 1
    assert scene.GetNodesByClassByName("vtkMRMLColorTableNode", maps.CURVE_TYPE_COLOR_NODE).GetNumberOfItems() == 1
    with pytest.raises(BadInputError, match="not on the study grid"):
        maps.add_map_volumes(scene, study, probability=DCEStudy.from_arrays(
            [np.zeros((2, 2, 2))] * 2, spacing=SPACING).reference)


def test_live_threshold_and_lesion_table(scene, tmp_path):
    import slicer

    from BreastDCESegLib import mrml
    from BreastDCESegLib.mrml import maps

    study, lesion, second = lesion_study()
    p, n = probability_phantom()
    p = p[:12, :20, :20]                                   # the core + shell (0.9/0.5) fits; the island is cut
    p[0:2, 14:18, 14:18] = 0.8                             # a 2x4x4 island: 32 voxels, 40.96 mm³
    nodes = mrml.add_study(scene, study, sequence=False)
    result = SegmentationResult(tumor=study.image_like((p >= 0.5).astype(np.uint8), np.uint8),
                                probability=study.image_like(p, np.float32), model_id="test")
    seg = mrml.result_to_segmentation(result, nodes.pre, case_id=study.case_id)
    prob_node = maps.add_map_volumes(scene, study, probability=result.probability)["probability"]
    assert maps.rethreshold(seg, prob_node, 0.3) == pytest.approx((512 + 32) * VOXEL)      # 696.32 mm³
    assert maps.rethreshold(seg, prob_node, 0.7) == pytest.approx((216 + 32) * VOXEL)      # 317.44 mm³
    assert maps.rethreshold(seg, prob_node, 0.7, min_component_mm3=50.0) == pytest.approx(216 * VOXEL)
    tumor = mrml.segment_array(seg, mrml.tumor_segment_id(seg))
    assert tumor.sum() == 216 and seg.GetAttribute(mrml.ATTR + "Threshold") == "0.7"
    assert not mrml.is_user_edited(seg)                    # re-thresholded content is the AI content
    edited = tumor.copy()
    edited[0, 0, 0] = 1
    mrml.set_segment(seg, "Tumor", edited)                 # the reader paints one voxel
    with pytest.raises(BadInputError, match="edited by hand"):
        maps.rethreshold(seg, prob_node, 0.3)
    assert mrml.segment_array(seg, mrml.tumor_segment_id(seg)).sum() == 217   # the edit is kept

    mrml.set_segment(seg, "Tumor", (lesion | second).astype(np.uint8))
    table = maps.lesion_table_node(seg, study)
    t = table.GetTable()
    names = [t.GetColumnName(c) for c in range(t.GetNumberOfColumns())]
    assert names[:3] == ["Lesion", "Volume (mm3)", "Longest diameter (mm)"] and names[-1] == "Curve type"
    assert t.GetNumberOfRows() == 2
    column = {name: c for c, name in enumerate(names)}
    assert [t.GetValue(r, column["Volume (mm3)"]).ToDouble() for r in range(2)] == pytest.approx([144 * VOXEL, 18 * VOXEL])
    assert [t.GetValue(r, column["Curve type"]).ToString() for r in range(2)] == ["washout", "persistent"]
    assert t.GetValue(0, column["Mean PE (%)"]).ToDouble() == pytest.approx(200.0)
    assert t.GetValue(0, column["Mean SER"]).ToDouble() == pytest.approx(200 / 120, abs=1e-3)
    assert maps.lesion_table_node(seg, study, min_component_mm3=30.0) is table and t.GetNumberOfRows() == 1
    stats = maps.statistics_table_node(scene, study.case_id, [("Volume", "0.2 mL"), ("T-stage", "T1")])
    assert stats.GetTable().GetNumberOfRows() == 2 and stats.GetName() == "maps1 statistics"

    # saved with the scene: the table storage node writes it and a new node reads the same rows
    storage = table.CreateDefaultStorageNode()
    assert storage.GetClassName() == "vtkMRMLTableStorageNode"
    storage.SetFileName(str(tmp_path / "lesions.tsv"))
    assert storage.WriteData(table)
    reread = scene.AddNewNodeByClass("vtkMRMLTableNode")
    storage.ReadData(reread)
    assert reread.GetTable().GetNumberOfRows() == 1
    assert reread.GetTable().GetValue(0, column["Curve type"]).ToString() == "washout"
    assert slicer.util.arrayFromVolume(prob_node).max() == pytest.approx(0.9)
