"""Resampling geometry, the papers' normalisations on arrays with known percentiles,
crop/uncrop and padding round trips."""

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from BreastDCESegLib import preprocess
from BreastDCESegLib.errors import BadInputError
from BreastDCESegLib.study import DCEStudy, same_grid

OBLIQUE = tuple(sitk.VersorRigid3DTransform((0.0, 0.0, 1.0), 0.3).GetMatrix())  # 0.3 rad about z


def _ramp_image(size=(40, 30, 10), spacing=(0.7, 0.8, 3.0), origin=(-10.0, 20.0, 5.0), direction=OBLIQUE):
    """Float image whose value is the physical L coordinate (mm) of each voxel centre."""
    image = sitk.Image(size, sitk.sitkFloat32)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(direction)
    zyx = np.indices(tuple(reversed(size)), dtype=float)
    xyz = np.stack([zyx[2], zyx[1], zyx[0]], axis=-1) * spacing
    lps = xyz @ np.asarray(direction).reshape(3, 3).T + origin
    ramp = sitk.GetImageFromArray(lps[..., 0].astype(np.float32))
    ramp.CopyInformation(image)
    return ramp


# ----------------------------------------------------------------------------- resampling
def test_resample_to_1mm_keeps_origin_direction_and_extent():
    image = _ramp_image()
    iso = preprocess.resample_spacing(image, (1.0, 1.0, 1.0))
    assert iso.GetSize() == (28, 24, 30)  # 40*0.7, 30*0.8, 10*3.0
    assert iso.GetSpacing() == (1.0, 1.0, 1.0)
    assert np.allclose(iso.GetOrigin(), image.GetOrigin())
    assert np.allclose(iso.GetDirection(), image.GetDirection())
    old_extent = np.multiply(image.GetSize(), image.GetSpacing())
    new_extent = np.multiply(iso.GetSize(), iso.GetSpacing())
    assert np.all(np.abs(new_extent - old_extent) <= 0.5 + 1e-9)
    assert iso.GetPixelID() == sitk.sitkFloat32
    # linear interpolation reproduces a linear ramp: value == physical L coordinate
    for idx in [(3, 4, 5), (20, 10, 20), (14, 18, 3)]:
        lps = iso.TransformIndexToPhysicalPoint(idx)
        assert iso[idx] == pytest.approx(lps[0], abs=1e-3)


def test_resample_none_and_same_spacing_return_input():
    image = _ramp_image()
    assert preprocess.resample_spacing(image, None) is image
    assert preprocess.resample_spacing(image, image.GetSpacing()) is image
    with pytest.raises(BadInputError):
        preprocess.resample_spacing(image, (1.0, 0.0, 1.0))


def test_resample_study_all_phases_one_grid_and_back():
    pre = np.full((12, 48, 48), 100.0, dtype=np.float32)
    zz, yy, xx = np.indices(pre.shape)
    ball = ((xx - 24) * 0.6) ** 2 + ((yy - 24) * 0.6) ** 2 + ((zz - 6) * 2.0) ** 2 <= 6.0 ** 2  # 6 mm radius
    post = pre + 150.0 * ball
    study = DCEStudy.from_arrays([pre, post, post * 0.9], spacing=(0.6, 0.6, 2.0), origin=(5, -3, 40),
                                 direction=OBLIQUE, times=[0, 60, 120], case_id="c1")
    iso = preprocess.resample_study(study, (1.0, 1.0, 1.0))
    assert iso.n_phases == 3 and iso.times == [0, 60, 120] and iso.case_id == "c1"
    assert iso.size == (29, 29, 24)
    assert all(same_grid(p, iso.reference) for p in iso.phases)
    assert np.allclose(iso.origin, study.origin) and np.allclose(iso.direction, study.direction)
    assert preprocess.resample_study(study, None) is study
    # a label on the 1 mm grid goes back onto the study grid with the same volume (few %)
    label_iso = (iso.arrays()[1] - iso.arrays()[0]) > 75.0
    back = preprocess.resample_back(label_iso.astype(np.uint8), study.reference, source_reference=iso.reference)
    assert back.GetPixelID() == sitk.sitkUInt8 and same_grid(back, study.reference)
    back_arr = sitk.GetArrayFromImage(back).astype(bool)
    assert back_arr.sum() == pytest.approx(ball.sum(), rel=0.05)
    dice = 2 * (back_arr & ball).sum() / (back_arr.sum() + ball.sum())
    assert dice > 0.9
    # probabilities come back with linear interpolation, float32, still within [0, 1]
    prob = iso.image_like(np.clip((iso.arrays()[1] - 100.0) / 150.0, 0, 1), np.float32)
    prob_back = preprocess.resample_back(prob, study.reference)
    arr = sitk.GetArrayFromImage(prob_back)
    assert prob_back.GetPixelID() == sitk.sitkFloat32
    assert arr.min() >= 0.0 and arr.max() <= 1.0 and arr[6, 24, 24] == pytest.approx(1.0)
    with pytest.raises(BadInputError):
        preprocess.resample_back(np.zeros((3, 3, 3)), study.reference)


# ----------------------------------------------------------------------------- normalisation
def _phases():
    rng = np.random.default_rng(0)
    post = rng.permutation(np.arange(1000, dtype=np.float32)).reshape(10, 10, 10)  # values 0..999
    pre = post / 2.0 + 3.0
    late = post * 1.5
    return np.stack([pre, post, late])


def test_patterns_minmax_uses_first_post_contrast_for_all_phases():
    arrays = _phases()
    out = preprocess.normalize(arrays, "patterns_minmax")
    p99 = np.percentile(np.arange(1000), 99)  # 989.01
    assert out.dtype == np.float32 and out.shape == arrays.shape
    post = arrays[1]
    assert out[1][post == 0].item() == 0.0
    assert out[1].max() == pytest.approx(1.0)
    assert np.allclose(out[1][post <= p99], post[post <= p99] / p99, atol=1e-6)
    assert np.count_nonzero(out[1] == 1.0) == 10  # the top 1 % is clipped
    # the same map on the other phases: pre = post / 2 + 3, late = 1.5 post clipped at p99
    assert np.allclose(out[0], (arrays[0]) / p99, atol=1e-6)
    assert np.allclose(out[2], np.minimum(arrays[2], p99) / p99, atol=1e-6)


def test_patterns_minmax_statistics_inside_mask_only():
    arrays = _phases()
    mask = arrays[1] < 500  # statistics of values 0..499
    out = preprocess.normalize(arrays, "patterns_minmax", mask=mask)
    p99 = np.percentile(np.arange(500), 99)
    assert np.allclose(out[1], np.minimum(arrays[1], p99) / p99, atol=1e-6)


def test_joint_zscore_one_mean_and_std_over_all_phases():
    arrays = _phases()
    out = preprocess.normalize(arrays, "joint_zscore")
    assert out.mean() == pytest.approx(0.0, abs=1e-5)
    assert out.std() == pytest.approx(1.0, abs=1e-5)
    mean, std = arrays.mean(), arrays.std()
    assert np.allclose(out, (arrays - mean) / std, atol=1e-5)
    # relative intensities between phases are kept (not a per-phase z-score)
    assert out[2].mean() > out[1].mean() > out[0].mean()


def test_per_phase_clip_maps_each_phase_own_percentiles():
    rng = np.random.default_rng(3)
    base = rng.permutation(np.arange(10000, dtype=np.float32)).reshape(10, 10, 100)
    arrays = np.stack([base + 5.0, base * 2.0, base * 3.0])
    arrays[2, 0, 0, 0] = 1e7  # one outlier in the late phase
    out = preprocess.normalize(arrays, "per_phase_clip")
    for k in range(3):
        lo, hi = np.percentile(arrays[k], [0.1, 99.9])
        expected = (np.clip(arrays[k], lo, hi) - lo) / (hi - lo)
        assert np.allclose(out[k], expected, atol=1e-6)
        assert out[k].min() == 0.0 and out[k].max() == pytest.approx(1.0)
    # the outlier no longer squeezes the rest of the late phase
    assert np.median(out[2]) == pytest.approx(0.5, abs=0.01)


def test_none_and_unknown_scheme_and_sources_documented():
    arrays = _phases()
    out = preprocess.normalize(arrays, "none")
    assert out.dtype == np.float32 and np.array_equal(out, arrays) and out is not arrays
    with pytest.raises(BadInputError) as err:
        preprocess.normalize(arrays, "zscore")
    for name in ("patterns_minmax", "joint_zscore", "per_phase_clip", "none"):
        assert name in str(err.value)
    assert set(preprocess.NORMALIZATIONS) == {"patterns_minmax", "joint_zscore", "per_phase_clip", "none"}
    assert "Patterns 2023" in preprocess.NORMALIZATIONS["patterns_minmax"].__doc__
    assert "MAMA-MIA" in preprocess.NORMALIZATIONS["joint_zscore"].__doc__
    assert "MONAI" in preprocess.NORMALIZATIONS["per_phase_clip"].__doc__
    with pytest.raises(BadInputError):
        preprocess.normalize(arrays[0], "none")  # not (P, z, y, x)
    with pytest.raises(BadInputError):
        preprocess.normalize(arrays, "joint_zscore", mask=np.zeros((10, 10, 10), bool))


# ----------------------------------------------------------------------------- crop / pad
def test_crop_uncrop_round_trip_exact_with_margin_clipped_at_border():
    rng = np.random.default_rng(1)
    arrays = rng.normal(size=(3, 24, 64, 64)).astype(np.float32)
    mask = np.zeros((24, 64, 64), bool)
    mask[2:10, 30:41, 50:62] = True
    mask[5, 20, 55] = True
    assert preprocess.bounding_box(mask) == (slice(2, 10), slice(20, 41), slice(50, 62))
    cropped, slices = preprocess.crop_to_mask(arrays, mask, margin_vox=4)
    assert slices == (slice(0, 14), slice(16, 45), slice(46, 64))  # clipped at z=0 and x=64
    assert cropped.shape == (3, 14, 29, 18)
    full = preprocess.uncrop(cropped, slices, arrays.shape[1:], fill=-7.0)
    assert np.array_equal(full[(Ellipsis, *slices)], arrays[(Ellipsis, *slices)])
    outside = np.ones(arrays.shape[1:], bool)
    outside[slices] = False
    assert np.all(full[:, outside] == -7.0)
    assert preprocess.uncrop(cropped, slices, arrays.shape).shape == arrays.shape
    # per-axis margins and a 3-D volume
    crop3, sl3 = preprocess.crop_to_mask(mask, mask, margin_vox=(0, 1, 2))
    assert sl3 == (slice(2, 10), slice(19, 42), slice(48, 64))
    assert np.array_equal(preprocess.uncrop(crop3, sl3, mask.shape), mask)


def test_crop_empty_mask_keeps_volume_and_bad_shapes_refused():
    arrays = np.arange(2 * 4 * 5 * 6, dtype=np.float32).reshape(2, 4, 5, 6)
    empty = np.zeros((4, 5, 6), bool)
    assert preprocess.bounding_box(empty) is None
    cropped, slices = preprocess.crop_to_mask(arrays, empty, 3)
    assert np.array_equal(cropped, arrays)
    with pytest.raises(BadInputError):
        preprocess.crop_to_mask(arrays, np.zeros((4, 5, 7), bool), 0)
    with pytest.raises(BadInputError):
        preprocess.uncrop(cropped[:, :2], slices, (4, 5, 6))


def test_pad_to_multiple_and_unpad():
    arrays = np.random.default_rng(2).normal(size=(2, 23, 50, 61)).astype(np.float32)
    padded, pads = preprocess.pad_to_multiple(arrays, 16)
    assert padded.shape == (2, 32, 64, 64)
    assert pads == ((4, 5), (7, 7), (1, 2))
    assert np.array_equal(preprocess.unpad(padded, pads), arrays)
    assert padded[0, 0].sum() == 0.0
    padded2, pads2 = preprocess.pad_to_multiple(arrays[0], (8, 16, 16), min_shape=(48, 48, 48))
    assert padded2.shape == (48, 64, 64)
    assert np.array_equal(preprocess.unpad(padded2, pads2), arrays[0])


# ----------------------------------------------------------------------------- breast region
def _mask_cases():
    rng = np.random.default_rng(0)
    shell = np.zeros((30, 40, 50), bool)
    shell[5:20, 8:30, 10:40] = True
    shell[8:17, 12:26, 15:35] = False                       # a hole that widen_mask fills
    corner = np.zeros((20, 20, 20), bool)
    corner[:3, 15:, :2] = True                              # touches three borders
    speckle = rng.random((24, 32, 32)) > 0.995
    return shell, corner, speckle


def _dilated_by_ellipsoid(mask, spacing, margin_mm):
    """The definition: holes filled, then a binary dilation by the ellipsoid element."""
    radius = [max(1, int(round(margin_mm / s))) for s in reversed(spacing)]
    grid = np.ogrid[tuple(slice(-r, r + 1) for r in radius)]
    ball = sum((g / r) ** 2 for g, r in zip(grid, radius)) <= 1.0
    return ndimage.binary_dilation(ndimage.binary_fill_holes(mask), structure=ball)


@pytest.mark.parametrize("case", range(3))
@pytest.mark.parametrize("spacing,margin", [((1.0, 1.0, 1.0), 8.0), ((1.0, 1.0, 1.0), 3.0), ((0.8, 0.8, 2.0), 4.0),
                                            ((0.7, 0.7, 3.0), 8.0), ((0.6, 0.9, 2.5), 6.0)])
def test_widen_mask_is_the_dilation_by_its_ellipsoid(case, spacing, margin):
    from BreastDCESegLib.breast_region import widen_mask

    mask = _mask_cases()[case]
    got = widen_mask(mask, spacing, margin)
    expected = _dilated_by_ellipsoid(mask, spacing, margin)
    assert got.dtype == bool and np.array_equal(got, expected)
    assert expected.sum() > mask.sum()
    assert np.array_equal(widen_mask(mask, spacing, 0.0), ndimage.binary_fill_holes(mask))  # no margin: filled
