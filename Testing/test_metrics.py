"""Overlap and surface metrics on hand-made masks with hand-computed values."""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from BreastDCESegLib import metrics
from BreastDCESegLib.errors import BadInputError

SHAPE = (24, 64, 64)
SPACING = (0.8, 0.7, 1.5)  # x, y, z mm


def _sphere(radius_mm, centre_vox=(12, 32, 32), spacing=SPACING, shape=SHAPE):
    zz, yy, xx = np.indices(shape)
    d2 = (((xx - centre_vox[2]) * spacing[0]) ** 2 + ((yy - centre_vox[1]) * spacing[1]) ** 2
          + ((zz - centre_vox[0]) * spacing[2]) ** 2)
    return d2 <= radius_mm ** 2


def _cube(start, size=10, shape=SHAPE):
    m = np.zeros(shape, bool)
    z, y, x = start
    m[z:z + size, y:y + size, x:x + size] = True
    return m


def test_offset_cubes_overlap_by_hand():
    a = _cube((5, 10, 10))
    b = _cube((5, 10, 13))  # shifted 3 voxels along x: overlap 10 x 10 x 7 = 700 of 1000
    assert metrics.dice(a, b) == pytest.approx(2 * 700 / 2000)
    assert metrics.jaccard(a, b) == pytest.approx(700 / 1300)
    assert metrics.sensitivity(a, b) == pytest.approx(0.7)
    assert metrics.precision(a, b) == pytest.approx(0.7)
    assert metrics.relative_volume_difference(a, b) == 0.0
    half = a.copy()
    half[10:, :, :] = False  # prediction = first 5 of the 10 slices of the truth
    assert metrics.sensitivity(half, a) == pytest.approx(0.5)
    assert metrics.precision(half, a) == pytest.approx(1.0)
    assert metrics.dice(half, a) == pytest.approx(2 * 500 / 1500)
    assert metrics.relative_volume_difference(half, a) == pytest.approx(-0.5)
    assert metrics.relative_volume_difference(a, half) == pytest.approx(1.0)


def test_hd95_and_asd_of_concentric_spheres_match_radius_difference():
    big, small = _sphere(12.0), _sphere(8.0)
    hd = metrics.hd95(big, small, SPACING)
    asd = metrics.average_surface_distance(big, small, SPACING)
    # surface voxel centres lie up to one voxel (<= 1.5 mm) inside the ideal spheres
    assert hd == pytest.approx(4.0, abs=0.5)
    assert asd == pytest.approx(4.0, abs=0.5)
    assert metrics.hd95(small, big, SPACING) == pytest.approx(hd)  # symmetric
    assert metrics.hd95(big, big, SPACING) == 0.0


def test_surface_distances_scale_with_spacing():
    a, b = _cube((5, 10, 10)), _cube((5, 10, 13))
    d1 = metrics.hd95(a, b, (1.0, 1.0, 1.0))
    assert d1 == pytest.approx(3.0)  # faces normal to x are 3 voxels apart
    assert metrics.hd95(a, b, (2.0, 1.0, 1.0)) == pytest.approx(6.0)  # the shift is along x
    assert metrics.hd95(a, b, (1.0, 5.0, 5.0)) == pytest.approx(3.0)
    d_ab, d_ba = metrics.surface_distances(a, b, (1.0, 1.0, 1.0))
    assert d_ab.max() == pytest.approx(3.0) and d_ba.min() == 0.0


@pytest.mark.slow
def test_sitk_backend_agrees_with_monai():
    pytest.importorskip("monai")
    from scipy import ndimage as ndi

    rng = np.random.default_rng(0)
    a = ndi.gaussian_filter(rng.random(SHAPE), 3) > 0.5
    b = ndi.gaussian_filter(rng.random(SHAPE), 3) > 0.5
    for fn in (metrics.hd95, metrics.average_surface_distance):
        ours = fn(a, b, SPACING)
        theirs = fn(a, b, SPACING, backend="monai")
        assert ours == pytest.approx(theirs, rel=1e-5)
        assert ours > 0.5


def test_sitk_images_take_spacing_from_the_image():
    a, b = _sphere(10.0), _sphere(7.0, centre_vox=(12, 30, 33))
    ia = sitk.GetImageFromArray(a.astype(np.uint8))
    ia.SetSpacing(SPACING)
    ib = sitk.GetImageFromArray(b.astype(np.uint8))
    ib.CopyInformation(ia)
    from_images = metrics.evaluate(ia, ib)
    from_arrays = metrics.evaluate(a, b, SPACING)
    assert from_images == from_arrays
    assert from_images["volume_truth_ml"] == pytest.approx(b.sum() * np.prod(SPACING) / 1000)
    with pytest.raises(BadInputError):
        metrics.hd95(a, b)  # numpy without spacing
    with pytest.raises(BadInputError):
        metrics.dice(a, b[:-1])


def test_empty_mask_conventions():
    empty = np.zeros(SHAPE, bool)
    cube = _cube((5, 10, 10))
    # both empty: perfect agreement
    assert metrics.dice(empty, empty) == 1.0 and metrics.jaccard(empty, empty) == 1.0
    assert metrics.sensitivity(empty, empty) == 1.0 and metrics.precision(empty, empty) == 1.0
    assert metrics.hd95(empty, empty, SPACING) == 0.0
    assert metrics.average_surface_distance(empty, empty, SPACING) == 0.0
    assert metrics.relative_volume_difference(empty, empty) == 0.0
    # missed tumor (prediction empty)
    assert metrics.dice(empty, cube) == 0.0 and metrics.sensitivity(empty, cube) == 0.0
    assert math.isnan(metrics.precision(empty, cube))
    assert metrics.hd95(empty, cube, SPACING) == math.inf
    assert metrics.relative_volume_difference(empty, cube) == -1.0
    # false positive on a tumor-free case (truth empty)
    assert metrics.dice(cube, empty) == 0.0 and metrics.precision(cube, empty) == 0.0
    assert math.isnan(metrics.sensitivity(cube, empty))
    assert metrics.average_surface_distance(cube, empty, SPACING) == math.inf
    assert metrics.relative_volume_difference(cube, empty) == math.inf
    # evaluate: strict JSON, undefined -> None
    both = metrics.evaluate(empty, empty, SPACING)
    assert both["dice"] == 1.0 and both["hd95_mm"] == 0.0 and both["asd_mm"] == 0.0
    missed = metrics.evaluate(empty, cube, SPACING)
    assert missed["dice"] == 0.0 and missed["hd95_mm"] is None and missed["precision"] is None
    assert missed["volume_pred_ml"] == 0.0 and missed["relative_volume_difference"] == -1.0
    fp = metrics.evaluate(cube, empty, SPACING)
    assert fp["sensitivity"] is None and fp["relative_volume_difference"] is None
    for scores in (both, missed, fp):
        json.dumps(scores, allow_nan=False)


def test_evaluate_keys_and_values():
    a, b = _cube((5, 10, 10)), _cube((5, 10, 13))
    scores = metrics.evaluate(a, b, (1.0, 1.0, 1.0))
    assert list(scores) == ["dice", "jaccard", "sensitivity", "precision", "hd95_mm", "asd_mm",
                            "relative_volume_difference", "volume_pred_ml", "volume_truth_ml"]
    assert scores["dice"] == pytest.approx(0.7) and scores["hd95_mm"] == pytest.approx(3.0)
    assert scores["volume_pred_ml"] == pytest.approx(1.0)
    assert scores["asd_mm"] == pytest.approx(metrics.average_surface_distance(a, b, (1, 1, 1)), abs=1e-4)
    labels = a.astype(np.uint8) * 2  # any non-zero label counts as foreground
    assert metrics.evaluate(labels, b, (1.0, 1.0, 1.0)) == scores


def test_metrics_work_without_torch():
    code = (
        "import sys; sys.modules['torch'] = None; sys.modules['monai'] = None\n"
        "import numpy as np\n"
        "from BreastDCESegLib import metrics\n"
        "a = np.zeros((8, 16, 16), bool); a[2:6, 4:12, 4:12] = True\n"
        "b = np.roll(a, 2, axis=2)\n"
        "s = metrics.evaluate(a, b, (1.0, 1.0, 1.0))\n"
        "print(s['dice'], s['hd95_mm'])\n"
    )
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    dice, hd = (float(v) for v in out.stdout.split())
    assert dice == pytest.approx(0.75) and hd == pytest.approx(2.0)
