"""DCEStudy: validation, resampling onto the pre-contrast grid, geometry."""

import numpy as np
import pytest
import SimpleITK as sitk

from BreastDCESegLib.errors import BadInputError
from BreastDCESegLib.study import DCEStudy, overlap_fraction, same_grid

OBLIQUE = tuple(sitk.VersorTransform((0, 0, 1), 0.3).GetMatrix())


def _image(arr, spacing=(0.7, 0.7, 2.0), origin=(-40.0, 12.0, 5.0), direction=OBLIQUE):
    img = sitk.GetImageFromArray(np.asarray(arr, np.float32))
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    img.SetDirection(direction)
    return img


def _ramp(shape=(6, 10, 12)):
    z, y, x = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    return (100 + 3 * x + 2 * y + z).astype(np.float32)


def test_from_images_keeps_geometry_and_times():
    pre, post = _image(_ramp()), _image(_ramp() * 2)
    s = DCEStudy.from_images([pre, post], times=[0, 95.5], case_id="c1", sources=["a.nii", "b.nii"])
    assert s.n_phases == 2 and s.n_post == 1
    assert s.spacing == pytest.approx((0.7, 0.7, 2.0))
    assert s.origin == pytest.approx((-40.0, 12.0, 5.0))
    assert s.direction == pytest.approx(OBLIQUE)
    assert s.shape == (6, 10, 12) and s.size == (12, 10, 6)
    assert s.times == [0.0, 95.5]
    assert s.arrays().dtype == np.float32
    np.testing.assert_allclose(s.subtraction(1), _ramp())
    assert s.voxel_volume_mm3 == pytest.approx(0.98)
    assert s.metadata["sources"] == ["a.nii", "b.nii"]


def test_post_phase_on_other_grid_is_resampled_onto_pre_grid():
    pre = _image(_ramp(), direction=(1, 0, 0, 0, 1, 0, 0, 0, 1), origin=(0, 0, 0), spacing=(1, 1, 1))
    # the same linear ramp sampled on a grid shifted by half a voxel with twice the spacing
    z, y, x = np.meshgrid(np.arange(4), np.arange(6), np.arange(7), indexing="ij")
    coarse = _image(100 + 3 * (2 * x + 0.5) + 2 * (2 * y + 0.5) + (2 * z + 0.5), spacing=(2, 2, 2),
                    origin=(0.5, 0.5, 0.5), direction=(1, 0, 0, 0, 1, 0, 0, 0, 1))
    # its field of view is within one (coarse, 2 mm) voxel of the pre-contrast one: resampled, with a warning
    s = DCEStudy.from_images([pre, coarse])
    assert same_grid(s.phases[1], pre)
    assert len(s.metadata["warnings"]) == 1 and "same field of view" in s.metadata["warnings"][0]
    inner = s.array(1)[1:6, 1:9, 1:11]
    np.testing.assert_allclose(inner, _ramp()[1:6, 1:9, 1:11], atol=1e-3)


def test_single_phase_is_refused_with_file_name():
    with pytest.raises(BadInputError, match="at least one post-contrast.*pre.nii"):
        DCEStudy.from_images([_image(_ramp())], sources=["pre.nii"])


def test_non_finite_voxels_are_refused():
    bad = _ramp()
    bad[2, 3, 4] = np.nan
    with pytest.raises(BadInputError, match=r"phase 1 \(p1.nrrd\) contains 1 NaN"):
        DCEStudy.from_images([_image(_ramp()), _image(bad)], sources=["p0.nrrd", "p1.nrrd"])


def test_non_3d_and_vector_images_are_refused():
    flat = sitk.GetImageFromArray(np.zeros((10, 12), np.float32))
    with pytest.raises(BadInputError, match="2-D"):
        DCEStudy.from_images([flat, flat])
    rgb = sitk.GetImageFromArray(np.zeros((4, 10, 12, 3), np.float32), isVector=True)
    with pytest.raises(BadInputError, match="3 components"):
        DCEStudy.from_images([rgb, rgb])


def test_disjoint_extents_are_refused():
    pre = _image(_ramp())
    far = _image(_ramp(), origin=(500.0, 500.0, 500.0))
    assert overlap_fraction(far, pre) == 0.0
    with pytest.raises(BadInputError, match="covers only 0%"):
        DCEStudy.from_images([pre, far], sources=["pre.mha", "far.mha"])


def test_unordered_times_are_refused():
    with pytest.raises(BadInputError, match="increase"):
        DCEStudy.from_images([_image(_ramp())] * 3, times=[0, 200, 100])
    with pytest.raises(BadInputError, match="3 phases but 2"):
        DCEStudy.from_images([_image(_ramp())] * 3, times=[0, 200])


def test_subset_and_summary():
    s = DCEStudy.from_images([_image(_ramp() * k) for k in (1, 2, 3, 4)], times=[0, 60, None, 180])
    sub = s.subset([0, 3])
    assert sub.n_phases == 2 and sub.times == [0.0, 180.0]
    np.testing.assert_allclose(sub.subtraction(1), 3 * _ramp())
    with pytest.raises(ValueError):
        s.subset([1, 2])
    summary = s.summary()
    assert summary["n_phases"] == 4 and summary["size_xyz"] == [12, 10, 6]
    img = s.image_like(np.ones(s.shape), dtype=np.uint8)
    assert img.GetOrigin() == pytest.approx(s.origin) and img.GetPixelID() == sitk.sitkUInt8
