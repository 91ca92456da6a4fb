"""breast_border: the rim the lesion rules read the breast border in. A tumor network's lesion is on the border by
the larger of its shares in its breast mask's rim and, outside that mask, in the rim of the mask's union with the
intensity-based one or outside both: a nipple standing out of the network's mask is border (listed), a lesion the
network's mask holds, or mostly holds, reads as before."""

import numpy as np
import pytest
from scipy import ndimage

from BreastDCESegLib import breast_border, kinetics, lesions
from BreastDCESegLib.models import kinetic
from BreastDCESegLib.results import SegmentationResult
from BreastDCESegLib.synth import nipples

from test_nipples import two_mounds


def test_outer_rim_holds_the_voxels_border_fraction_counts():
    z, y, x = np.mgrid[0:20, 0:40, 0:50]
    breast = ((x - 25) ** 2 / 400 + (y - 10) ** 2 / 600 + (z - 10) ** 2 / 150) < 1  # cut by the image's edge
    spacing = (0.9, 1.1, 2.5)
    rim = breast_border.outer_rim(breast, spacing)
    labels, n = ndimage.label(np.random.default_rng(0).random(breast.shape) > 0.7)
    boxes = ndimage.find_objects(labels)
    shares = [(breast_border.border_fraction(breast, labels[b] == i, b, spacing),
               breast_border.rim_fraction(rim, labels[b] == i, b)) for i, b in enumerate(boxes, start=1)]
    assert n > 2000 and all(a == pytest.approx(b, abs=1e-12) for a, b in shares)
    assert 0 < sum(a == 1.0 for a, _ in shares) < n and sum(a == 0.0 for a, _ in shares) > 100
    assert kinetics.border_depth_mm(spacing) == 5.0 and kinetics.border_depth_mm((3.0, 3.0, 3.0)) == 6.0


def _network_like(study, nipple, hole=None):
    """The two mounds' intensity mask without the nipples (a breast network's mask that leaves them out) and
    without ``hole``."""
    mask = np.asarray(kinetic.breast_mask(study), dtype=bool) & ~ndimage.binary_dilation(nipple, iterations=1)
    return mask if hole is None else mask & ~hole


def _ball(shape, centre, radius):
    z, y, x = np.indices(shape)
    return (z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2 <= radius ** 2


def test_network_border_adds_only_what_stands_out_of_the_network_mask():
    study, nipple = nipples.with_nipples(two_mounds(), seed=4)
    cut = _ball(study.shape, (5, 24, 20), 2)  # a lesion 18 mm deep in the left breast that the network's mask cuts
    breast = _network_like(study, nipple, cut)
    border = breast_border.network_rim(study, breast)
    assert np.array_equal(border.inner, breast_border.outer_rim(breast, study.spacing))  # the network mask's rim
    intensity = np.asarray(kinetic.breast_mask(study), dtype=bool)
    assert np.array_equal(border.outer, ~breast & (breast_border.outer_rim(breast | intensity, study.spacing)
                                                   | ~intensity))  # outside it: the union's rim, outside both
    assert cut.sum() == 33 and intensity[cut].all() and not border.outer[cut].any()  # held deep by the intensity mask
    whole = tuple(slice(0, n) for n in study.shape)
    assert border.fraction(cut, whole) == 0.0
    labels, n = ndimage.label(nipple)
    assert n == 2
    for k in (1, 2):  # the nipples: 28-48 % of their voxels in the intensity mask, all of them border
        assert 0.25 < ((labels == k) & intensity).sum() / (labels == k).sum() < 0.5
        assert border.fraction(labels == k, whole) == 1.0
    # mostly in the network's mask (against the skin): the larger share, that of the network mask's rim
    piece = _ball(study.shape, (5, 19, 52), 3)  # in the right breast's front, beside its nipple
    inner = breast_border.border_fraction(breast, piece, whole, study.spacing)
    outside = breast_border.rim_fraction(border.outer, piece, whole)
    both = breast_border.rim_fraction(border.inner | border.outer, piece, whole)
    assert (outside, inner) == pytest.approx((0.390, 0.496), abs=0.001) and border.fraction(piece, whole) == inner
    assert both > 0.8  # one share over both would read it as on the border (compact: excluded above 0.8)
    assert breast_border.network_rim(study, np.ones(study.shape, bool)) is None  # no breast masking: no border
    assert breast_border.network_rim(study, np.zeros(study.shape, bool)) is None


def test_a_nipple_outside_a_network_breast_mask_is_listed_on_the_border():
    study, nipple = nipples.with_nipples(two_mounds(), seed=4)
    breast = _network_like(study, nipple)
    result = SegmentationResult(tumor=study.image_like(nipple.astype(np.uint8), np.uint8),
                                breast=study.image_like(breast.astype(np.uint8), np.uint8), model_id="network")
    options = {"lesion_rules": True, "other_lesions": True}
    before = lesions.apply(study, result, options)  # read on the network's mask: outside it, none of the border
    assert [r["border_fraction"] for r in before.extra["lesion_decisions"]] == [0.0, 0.0]
    assert before.tumor_array().sum() == nipple.sum()  # both nipples kept as tumor
    after = lesions.apply(study, result, options, network=True)
    rows = after.extra["lesion_decisions"]
    assert len(rows) == 2 and all(r["border_fraction"] == 1.0 for r in rows)
    assert all(r["excluded_because"] == lesions.ON_BORDER for r in rows)
    assert not after.tumor_array().any() and after.other_lesions is not None
    assert after.other_lesions is not None and sitk_count(after.other_lesions) == nipple.sum()


def sitk_count(image) -> int:
    import SimpleITK as sitk

    return int((sitk.GetArrayViewFromImage(image) > 0).sum())
