"""Kinetics on studies with hand-made curves whose answers are known exactly."""

import numpy as np
import pytest

from BreastDCESegLib import kinetics, morphology
from BreastDCESegLib.study import DCEStudy


def _study(curves, times=(0.0, 90.0, 180.0, 270.0)):
    """A 4x4x3 study whose voxel column x holds curve x (values per phase)."""
    curves = np.asarray(curves, dtype=np.float32)  # (n_curves, P)
    n, p = curves.shape
    arrays = np.zeros((p, 3, 4, n), dtype=np.float32)
    for x in range(n):
        arrays[:, :, :, x] = curves[x][:, None, None]
    return DCEStudy.from_arrays(list(arrays), spacing=(0.8, 0.8, 2.0), times=list(times[:p]))


# pre, early, mid, late
WASHOUT = [100, 300, 260, 220]     # early PE 200 %, late change -40 %
PLATEAU = [100, 250, 255, 245]     # change -3.3 %
PERSISTENT = [100, 160, 200, 240]  # PE 60 %, change +133 %
FLAT = [100, 102, 101, 103]        # not enhancing


def test_subtraction_and_mip():
    s = _study([WASHOUT, PERSISTENT])
    sub = kinetics.subtraction_images(s)
    assert sub.shape == (3, 3, 4, 2)
    assert sub[:, 0, 0, 0].tolist() == [200, 160, 120]
    assert kinetics.max_subtraction(s)[0, 0].tolist() == [200, 140]


def test_percent_enhancement_and_ser():
    s = _study([WASHOUT, PERSISTENT, FLAT])
    pe = kinetics.percent_enhancement(s, phase=1)
    assert pe[0, 0].tolist() == pytest.approx([200.0, 60.0, 2.0])
    ser = kinetics.signal_enhancement_ratio(s)
    assert ser[0, 0, 0] == pytest.approx(200 / 120)
    assert ser[0, 0, 1] == pytest.approx(60 / 140)
    assert kinetics.peak_percent_enhancement(s)[0, 0, 1] == pytest.approx(140.0)


def test_curve_types_follow_ten_percent_rule():
    s = _study([WASHOUT, PLATEAU, PERSISTENT, FLAT])
    types = kinetics.curve_type_map(s, min_enhancement=50.0)
    assert types[0, 0].tolist() == [kinetics.WASHOUT, kinetics.PLATEAU, kinetics.PERSISTENT, kinetics.NONE]
    # raising the enhancement threshold above 60 % drops the persistent voxel
    assert kinetics.curve_type_map(s, min_enhancement=100.0)[0, 0, 2] == kinetics.NONE


def test_single_post_phase_has_no_delayed_rule():
    s = _study([WASHOUT[:2], FLAT[:2]], times=(0.0, 90.0))
    types = kinetics.curve_type_map(s)
    assert types[0, 0].tolist() == [kinetics.PLATEAU, kinetics.NONE]
    assert kinetics.signal_enhancement_ratio(s)[0, 0, 0] == pytest.approx(1.0)


def test_time_intensity_curve_and_dominant_type():
    s = _study([WASHOUT, WASHOUT, PERSISTENT])
    mask = np.zeros(s.shape, bool)
    mask[:, :, :2] = True
    tic = kinetics.time_intensity_curve(s, mask)
    assert tic["n_voxels"] == 3 * 4 * 2
    assert tic["mean"] == pytest.approx(WASHOUT)
    assert tic["percent_enhancement"][1] == pytest.approx(200.0)
    assert tic["times"] == [0.0, 90.0, 180.0, 270.0]
    assert kinetics.dominant_curve_type(s, mask) == "washout"
    mask[:] = False
    mask[:, :, 2] = True
    assert kinetics.dominant_curve_type(s, mask) == "persistent"
    assert kinetics.voxel_curves(s, mask).shape == (12, 4)


def test_empty_mask_curve():
    s = _study([FLAT, FLAT])
    tic = kinetics.time_intensity_curve(s, np.zeros(s.shape, bool))
    assert tic["n_voxels"] == 0 and tic["mean"][0] is None


def test_bad_phase_index():
    s = _study([FLAT[:2], FLAT[:2]], times=(0.0, 90.0))
    with pytest.raises(IndexError):
        kinetics.percent_enhancement(s, phase=2)


def test_maps_of_a_block_equal_the_whole_maps_there():
    """``box`` (a lesion's bounding box, as the lesion table uses) gives the whole map's values
    there, the floor still taken from the whole pre-contrast phase."""
    s = _study([WASHOUT, PLATEAU, PERSISTENT, FLAT, [5, 40, 40, 40]])
    box = (slice(1, 3), slice(0, 2), slice(2, 5))
    floor = kinetics.pre_contrast_floor(s)
    assert floor == pytest.approx(0.05 * 100)
    for whole, block in [
            (kinetics.percent_enhancement(s, 1), kinetics.percent_enhancement(s, 1, floor, box)),
            (kinetics.signal_enhancement_ratio(s), kinetics.signal_enhancement_ratio(s, box=box)),
            (kinetics.curve_type_map(s), kinetics.curve_type_map(s, baseline_floor=floor, box=box))]:
        assert block.shape == (2, 2, 3)
        np.testing.assert_array_equal(block, whole[box])
    assert kinetics.percent_enhancement(s, 1, box=box)[0, 0, 2] == pytest.approx(100 * 35 / 5)


def _breast_with_rim(rim_late: float):
    """(study, breast) of a 8 x 30 x 30 voxel breast on 1 x 1 x 3 mm voxels in a 12 x 40 x 40
    image: every voxel enhances 40 % early (the background band); the interior (6 x 20 x 20)
    rises to +50 % late, the 5 mm rim (skin, skin-air edge, chest wall) changes ``rim_late``."""
    pre = np.full((12, 40, 40), 100.0, np.float32)
    breast = np.zeros(pre.shape, bool)
    breast[2:10, 5:35, 5:35] = True
    early = np.where(breast, 140.0, 100.0).astype(np.float32)
    late = np.where(breast, 100.0 + 40.0 * (1.0 + rim_late), 100.0).astype(np.float32)
    late[3:9, 10:30, 10:30] = 160.0
    return DCEStudy.from_arrays([pre, early, late], spacing=(1.0, 1.0, 3.0), times=[0.0, 90.0, 360.0]), breast


def test_the_breast_interior_is_the_complement_of_the_rim_the_lesion_rules_measure():
    from BreastDCESegLib import lesions

    study, breast = _breast_with_rim(-0.6)
    interior = kinetics.breast_interior(breast, study.spacing)
    expected = np.zeros(breast.shape, bool)
    expected[3:9, 10:30, 10:30] = True   # 5 mm in-plane (5 voxels), one 3 mm slice (6 mm > 5 mm is interior)
    np.testing.assert_array_equal(interior, expected)
    everything = tuple(slice(0, n) for n in breast.shape)
    assert lesions.border_fraction(breast, breast & ~interior, everything, study.spacing) == 1.0
    assert lesions.border_fraction(breast, interior, everything, study.spacing) == 0.0


def test_erosion_by_distance_is_simpleitks_ball_erosion():
    """``morphology.erode_by_distance`` (the breast interior's erosion) gives SimpleITK's ball erosion voxel
    for voxel: random blobs touching the array's edges (counted as foreground by both), radii 0-8 voxels
    per axis, equal and unequal; the ball of (2, 2, 1) voxels holds 39 of the 5 x 5 x 3 box's 75 offsets."""
    import SimpleITK as sitk
    from scipy import ndimage

    from BreastDCESegLib.morphology import erode_by_distance

    rng = np.random.default_rng(7)
    for radius in [(1, 1, 1), (2, 2, 1), (3, 1, 0), (5, 5, 5), (8, 8, 1), (4, 6, 2), (0, 0, 0)]:
        mask = ndimage.gaussian_filter(rng.random((20, 36, 40)), 2.5) > 0.5
        mask[:, :, :3] = True
        expected = sitk.GetArrayFromImage(sitk.BinaryErode(sitk.GetImageFromArray(mask.astype(np.uint8)),
                                                           radius, sitk.sitkBall)) > 0
        np.testing.assert_array_equal(erode_by_distance(mask, radius), expected, err_msg=str(radius))
        assert 0 < expected.sum() <= mask.sum()
    point = np.zeros((7, 9, 9), bool)
    point[3, 4, 4] = True
    assert (~erode_by_distance(~point, (2, 2, 1))).sum() == 39
    assert not erode_by_distance(np.zeros((4, 4, 4), bool), (1, 1, 1)).any()


def test_components_labelled_in_the_bounding_box_as_ndimage_labels_them():
    from scipy import ndimage

    from BreastDCESegLib.morphology import label_26

    rng = np.random.default_rng(3)
    mask = np.zeros((30, 50, 60), bool)
    mask[4:20, 10:40, 25:58] = rng.random((16, 30, 33)) > 0.7
    labels, n = label_26(mask)
    expected, n_expected = ndimage.label(mask, structure=np.ones((3, 3, 3)))
    assert n == n_expected == 13 and labels.dtype == expected.dtype
    np.testing.assert_array_equal(labels, expected)
    assert label_26(np.zeros((3, 4, 5), bool))[1] == 0


def test_the_pre_contrast_floor_is_computed_once_per_study(monkeypatch):
    s = _study([WASHOUT, PLATEAU])
    floor = kinetics.pre_contrast_floor(s)
    monkeypatch.setattr(kinetics, "_baseline_floor", lambda *a: pytest.fail("computed again"))
    assert kinetics.pre_contrast_floor(s) == floor
    np.testing.assert_array_equal(kinetics.percent_enhancement(s, 1), kinetics.percent_enhancement(s, 1, floor))


def test_background_enhancement_curve_is_read_in_the_interior_not_on_the_rim():
    """Without fat suppression the breast mask's rim (skin, partial volume at the skin-air edge,
    chest wall) holds much of the background band's voxels, and their curves fall: read over the
    whole mask, a parenchyma rising 50 % reads as washout (-60 %). The band in the interior reads
    the parenchyma; the whole-mask reading stays the plateau-read-late rule's reference."""
    study, breast = _breast_with_rim(-0.6)
    pe = kinetics.percent_enhancement(study, 1)
    late = kinetics.subtraction_images(study)[-1]
    change = (late - (study.array(1) - study.array(0))) / np.maximum(study.array(1) - study.array(0), 1e-6)
    band = kinetics.background_band(breast, pe, kinetics.breast_interior(breast, study.spacing))
    assert band.sum() == 6 * 20 * 20 and float(np.median(change[band])) == pytest.approx(0.5)
    assert kinetics.background_delayed_change(study, breast) == pytest.approx(-0.6)
    thin = np.zeros(breast.shape, bool)
    thin[4:6, 5:35, 5:35] = True   # no interior at all: the whole band
    assert kinetics.background_band(thin, pe, kinetics.breast_interior(thin, study.spacing)).sum() == 2 * 30 * 30


def test_distance_in_the_widened_block_equals_the_whole_distance_map():
    """The distance map of the mask's widened block: the whole array's values wherever they are within
    the reach (and in the whole block), inf elsewhere, where the whole map is farther than the reach."""
    from scipy import ndimage

    rng = np.random.default_rng(5)
    mask = np.zeros((40, 60, 50), bool)
    mask[12:16, 20:27, 8:12] = True
    mask[14, 30, 15] = True
    mask &= rng.random(mask.shape) > 0.2
    spacing = (3.0, 0.9, 1.1)
    whole = ndimage.distance_transform_edt(~mask, sampling=spacing)
    near = morphology.distance_in_block(~mask, mask, spacing, 10.0)
    block = np.isfinite(near)
    assert np.array_equal(near[block], whole[block]) and (~block).sum() > 0.5 * mask.size
    assert (whole[~block] > 10.0).all() and (whole[block] <= 10.0).sum() == (whole <= 10.0).sum()
    empty = np.zeros((4, 5, 6), bool)
    assert np.isinf(morphology.distance_in_block(~empty, empty, spacing, 10.0)).all()
