"""Volume, longest diameter, T-stage, lesions and kinetics per lesion on hand-made masks."""

import json

import numpy as np
import pytest
import SimpleITK as sitk
from scipy.spatial.distance import pdist

from BreastDCESegLib import clinical
from BreastDCESegLib.errors import BadInputError
from BreastDCESegLib.study import DCEStudy

OBLIQUE = tuple(sitk.VersorRigid3DTransform((0.3, -0.5, 0.8), 0.7).GetMatrix())
FLIP_LR_AP = (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)


def _ellipsoid(shape, spacing, semi_axes_mm, centre_vox):
    zz, yy, xx = np.indices(shape)
    return ((((xx - centre_vox[2]) * spacing[0]) / semi_axes_mm[0]) ** 2
            + (((yy - centre_vox[1]) * spacing[1]) / semi_axes_mm[1]) ** 2
            + (((zz - centre_vox[0]) * spacing[2]) / semi_axes_mm[2]) ** 2) <= 1.0


def _image(array, spacing, origin=(0.0, 0.0, 0.0), direction=None):
    image = sitk.GetImageFromArray(np.asarray(array, dtype=np.uint8))
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    if direction is not None:
        image.SetDirection(direction)
    return image


# ----------------------------------------------------------------------------- size
def test_volume_of_anisotropic_ellipsoid_within_3_percent():
    spacing = (0.7, 0.9, 1.5)
    mask = _ellipsoid((16, 32, 48), spacing, (12.0, 8.0, 6.0), (8, 16, 24))
    expected_ml = 4.0 / 3.0 * np.pi * 12 * 8 * 6 / 1000.0  # 2.4127 mL
    assert clinical.volume_ml(mask, spacing) == pytest.approx(expected_ml, rel=0.03)
    assert clinical.volume_ml(_image(mask, spacing)) == pytest.approx(clinical.volume_ml(mask, spacing))
    # longest axis 24 mm along x; the hull result equals brute force over every voxel pair
    d = clinical.longest_diameter_mm(mask, spacing)
    points = np.argwhere(mask)[:, ::-1] * np.asarray(spacing)
    assert d == pytest.approx(pdist(points).max(), abs=1e-9)
    assert 23.5 <= d <= 24.0


def test_diameter_of_20mm_sphere():
    spacing = (0.5, 0.5, 1.0)
    on_grid = _ellipsoid((30, 50, 50), spacing, (10.0, 10.0, 10.0), (15, 25, 25))
    assert clinical.longest_diameter_mm(on_grid, spacing) == pytest.approx(20.0, abs=1e-6)
    zz, yy, xx = np.indices((30, 50, 50))
    off_grid = ((xx - 25.3) * 0.5) ** 2 + ((yy - 24.6) * 0.5) ** 2 + ((zz - 15.5) * 1.0) ** 2 <= 100.0
    d = clinical.longest_diameter_mm(off_grid, spacing)
    assert 19.0 <= d <= 20.0  # voxel centres sit inside the sphere, within one voxel of its surface
    assert clinical.t_stage(clinical.longest_diameter_mm(on_grid, spacing)) == "T1"


def test_diameter_of_30x10x10_box_respects_spacing_and_direction():
    spacing = (0.5, 1.0, 2.0)
    box = np.zeros((8, 14, 64), bool)
    box[1:7, 1:12, 1:62] = True  # voxel centres span 60*0.5 = 30, 10*1 = 10, 5*2 = 10 mm
    expected = np.sqrt(30 ** 2 + 10 ** 2 + 10 ** 2)  # 33.166 mm
    assert clinical.longest_diameter_mm(box, spacing) == pytest.approx(expected, abs=1e-6)
    rotated = _image(box, spacing, origin=(12.0, -40.0, 7.0), direction=OBLIQUE)
    assert clinical.longest_diameter_mm(rotated) == pytest.approx(expected, abs=1e-6)
    # the same voxels with the spacing of another axis order give another length
    assert clinical.longest_diameter_mm(box, (2.0, 1.0, 0.5)) == pytest.approx(np.sqrt(120 ** 2 + 10 ** 2 + 2.5 ** 2))


def test_diameter_of_degenerate_shapes():
    m = np.zeros((12, 14, 16), bool)
    assert clinical.longest_diameter_mm(m, (1, 1, 1)) == 0.0
    m[3, 4, 5] = True
    assert clinical.longest_diameter_mm(m, (1, 1, 1)) == 0.0
    line = np.zeros_like(m)
    line[1:11, 4, 5] = True  # 10 voxels along z, 2 mm apart
    assert clinical.longest_diameter_mm(line, (0.5, 0.5, 2.0)) == pytest.approx(18.0)
    plane = np.zeros_like(m)
    plane[6, 1:12, 2:13] = True  # one slice, 11 x 11 voxels
    assert clinical.longest_diameter_mm(plane, (1.0, 1.0, 3.0)) == pytest.approx(np.sqrt(200.0))
    two = np.zeros_like(m)
    two[0, 0, 0] = two[11, 13, 15] = True  # two far voxels (two lesions): their distance
    assert clinical.longest_diameter_mm(two, (1, 1, 1)) == pytest.approx(np.sqrt(11 ** 2 + 13 ** 2 + 15 ** 2))
    with pytest.raises(BadInputError):
        clinical.longest_diameter_mm(plane)  # numpy without spacing


def test_t_stage_boundaries():
    cases = {0: "T0", None: "T0", float("nan"): "T0", -1.0: "T0", 0.5: "T1", 20.0: "T1", 20.01: "T2",
             50.0: "T2", 50.1: "T3", 120.0: "T3"}
    for diameter, stage in cases.items():
        assert clinical.t_stage(diameter) == stage, diameter


# ----------------------------------------------------------------------------- lesions
def test_lesion_count_26_connectivity_and_minimum_volume():
    m = np.zeros((20, 40, 40), bool)
    m |= _ellipsoid(m.shape, (1, 1, 1), (4, 4, 4), (10, 10, 10))  # 257 voxels
    m |= _ellipsoid(m.shape, (1, 1, 1), (3, 3, 3), (10, 10, 30))  # 123 voxels
    m[2, 35, 2] = True  # a single voxel
    m[15, 35, 35] = m[16, 36, 36] = True  # two voxels touching at a corner only: one lesion
    assert clinical.lesion_count(m, (1, 1, 1)) == 4
    assert clinical.lesion_count(m, (1, 1, 1), min_volume_mm3=1.5) == 3
    assert clinical.lesion_count(m, (1, 1, 1), min_volume_mm3=3.0) == 2
    assert clinical.lesion_count(m, (2, 2, 2), min_volume_mm3=10.0) == 3  # 1 voxel = 8, 2 voxels = 16 mm³
    assert clinical.lesion_count(np.zeros_like(m), (1, 1, 1)) == 0


def test_lesion_table_geometry_in_lps_and_ras():
    spacing, origin = (0.7, 0.7, 1.5), (-50.0, 30.0, -20.0)
    m = np.zeros((16, 48, 48), np.uint8)
    m[4:8, 10:20, 30:40] = 1  # 400 voxels
    m[10:12, 30:34, 5:9] = 1  # 32 voxels
    image = _image(m, spacing, origin, FLIP_LR_AP)
    rows = clinical.lesion_table(image)
    assert [r["index"] for r in rows] == [1, 2]
    big, small = rows
    assert big["n_voxels"] == 400 and small["n_voxels"] == 32
    assert big["volume_ml"] == pytest.approx(400 * 0.7 * 0.7 * 1.5 / 1000)
    assert big["bbox_index_xyz"] == [30, 10, 4] and big["bbox_size_xyz"] == [10, 10, 4]
    assert big["bbox_extent_mm"] == pytest.approx([7.0, 7.0, 6.0])
    # centre index (34.5, 14.5, 5.5); direction flips x and y
    lps = [-50.0 - 34.5 * 0.7, 30.0 - 14.5 * 0.7, -20.0 + 5.5 * 1.5]
    assert big["centroid_lps_mm"] == pytest.approx(lps, abs=1e-3)
    assert big["centroid_ras_mm"] == pytest.approx([-lps[0], -lps[1], lps[2]], abs=1e-3)
    assert big["longest_diameter_mm"] == pytest.approx(np.sqrt((9 * 0.7) ** 2 * 2 + (3 * 1.5) ** 2), abs=1e-3)
    assert "dominant_curve_type" not in big
    with pytest.raises(BadInputError):
        clinical.lesion_table(m)  # a numpy mask needs its study


def _kinetic_study():
    """Pre 100 everywhere; lesion A washes out (250 -> 200), lesion B persists (160 -> 200)."""
    shape = (12, 40, 40)
    pre = np.full(shape, 100.0, np.float32)
    early, late = pre.copy(), pre.copy()
    mask = np.zeros(shape, np.uint8)
    a = (slice(3, 9), slice(5, 15), slice(5, 15))
    b = (slice(4, 8), slice(25, 31), slice(25, 31))
    early[a], late[a] = 250.0, 200.0
    early[b], late[b] = 160.0, 200.0
    mask[a] = 1
    mask[b] = 1
    study = DCEStudy.from_arrays([pre, early, late], spacing=(0.8, 0.8, 2.0), origin=(10, -20, 5),
                                 times=[0, 90, 360], case_id="kin")
    return study, mask


def test_lesion_table_kinetics_per_lesion():
    study, mask = _kinetic_study()
    rows = clinical.lesion_table(study.image_like(mask), study)
    a, b = rows  # A has 600 voxels, B 144
    assert a["n_voxels"] == 600 and b["n_voxels"] == 144
    assert a["mean_percent_enhancement"] == pytest.approx(150.0)
    assert a["mean_ser"] == pytest.approx(1.5)
    assert a["dominant_curve_type"] == "washout" and a["curve_type_fractions"]["washout"] == 1.0
    assert b["mean_percent_enhancement"] == pytest.approx(60.0)
    assert b["mean_ser"] == pytest.approx(0.6)
    assert b["dominant_curve_type"] == "persistent" and b["enhancing_fraction"] == 1.0
    assert clinical.lesion_table(mask, study) == rows  # a numpy mask on the study grid
    json.dumps(rows, allow_nan=False)
    # a mask on a coarser grid (e.g. a model grid) is put on the study grid first
    coarse = sitk.Resample(study.image_like(mask), [20, 20, 6], sitk.Transform(), sitk.sitkNearestNeighbor,
                           study.origin, (1.6, 1.6, 4.0), study.direction, 0, sitk.sitkUInt8)
    from_coarse = clinical.lesion_table(coarse, study)
    assert [r["dominant_curve_type"] for r in from_coarse] == ["washout", "persistent"]
    assert from_coarse[0]["volume_ml"] == pytest.approx(a["volume_ml"], rel=0.05)
    assert from_coarse[0]["mean_ser"] == pytest.approx(1.5)


# ----------------------------------------------------------------------------- summary
def test_summarize_multifocal_and_json_ready():
    shape, spacing = (24, 40, 72), (1.0, 1.0, 1.0)
    m = _ellipsoid(shape, spacing, (8, 8, 8), (12, 20, 18))  # 16 mm lesion, x 10..26
    m |= _ellipsoid(shape, spacing, (6, 6, 6), (12, 20, 58))  # 12 mm lesion, x 52..64
    m[0, 0, 40] = True  # a 1 mm³ speck
    image = _image(m, spacing, origin=(5.0, 5.0, 5.0))
    summary = clinical.summarize(image, min_volume_mm3=5.0)
    json.dumps(summary, allow_nan=False)
    assert summary["lesion_count"] == 2 and len(summary["lesions"]) == 2
    assert summary["longest_diameter_mm"] == pytest.approx(16.0)  # the largest lesion's
    assert summary["extent_mm"] == pytest.approx(54.0)  # across both lesions
    assert summary["t_stage"] == "T1"  # staged by the largest lesion
    assert clinical.summarize(image, min_volume_mm3=5.0, stage_by="overall")["t_stage"] == "T3"
    expected_ml = (m.sum() - 1) / 1000.0
    assert summary["volume_ml"] == pytest.approx(expected_ml)
    assert summary["volume_ml"] == pytest.approx(4 / 3 * np.pi * (8 ** 3 + 6 ** 3) / 1000, rel=0.03)
    assert summary["largest_lesion_volume_ml"] == summary["lesions"][0]["volume_ml"]
    with_speck = clinical.summarize(image)
    assert with_speck["lesion_count"] == 3 and with_speck["volume_ml"] == pytest.approx(m.sum() / 1000.0)


def test_summarize_empty_and_with_study():
    study, mask = _kinetic_study()
    empty = clinical.summarize(study.image_like(np.zeros_like(mask)), study)
    assert empty["t_stage"] == "T0" and empty["lesion_count"] == 0 and empty["lesions"] == []
    assert empty["volume_ml"] == 0.0 and empty["longest_diameter_mm"] == 0.0
    full = clinical.summarize(study.image_like(mask), study)
    json.dumps(full, allow_nan=False)
    assert full["lesions"][0]["dominant_curve_type"] == "washout"
    # lesion A spans 9 x 9 x 5 voxel steps of 0.8, 0.8, 2.0 mm
    assert full["longest_diameter_mm"] == pytest.approx(np.sqrt(2 * 7.2 ** 2 + 10.0 ** 2), abs=1e-3)
    assert full["t_stage"] == "T1"
    with pytest.raises(BadInputError):
        clinical.summarize(study.image_like(mask), study, stage_by="sum")
