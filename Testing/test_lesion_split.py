"""Masses joined by a narrow neck read as lesions of their own (lesion_shape.split_lesions), and a
persistent mass joined to a washout or plateau lesion is listed, not kept (lesions.joined_persistent)."""

from __future__ import annotations

import numpy as np
import pytest

from BreastDCESegLib import clinical, lesions
from BreastDCESegLib.lesion_shape import NECK_RATIO, neck_parts, split_lesions
from BreastDCESegLib.study import DCEStudy

SHAPE = (40, 48, 90)
Z, Y, X = np.mgrid[0:SHAPE[0], 0:SHAPE[1], 0:SHAPE[2]].astype(np.float32)
UNIT = (1.0, 1.0, 1.0)


def _ball(cx: float, radius: float) -> np.ndarray:
    return (X - cx) ** 2 + (Y - 24) ** 2 + (Z - 20) ** 2 <= radius ** 2


def _rod(radius: float) -> np.ndarray:
    return ((Y - 24) ** 2 + (Z - 20) ** 2 <= radius ** 2) & (X >= 30) & (X <= 52)


def _dumbbell(neck_radius: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 16 mm ball (2109 voxels) and a 12 mm one (925), centres 22 mm apart, joined by a rod."""
    cancer, benign = _ball(30, 8.0), _ball(52, 6.0)
    return cancer, benign, cancer | benign | _rod(neck_radius)


def test_a_narrow_neck_splits_two_masses_and_each_voxel_goes_to_its_own():
    cancer, benign, mask = _dumbbell(2.0)  # a 4 mm neck: 0.25 and 0.33 of the masses' radii
    parts = neck_parts(mask, UNIT)
    assert parts is not None and parts.max() == 2
    assert np.array_equal(parts > 0, mask)
    first, second = parts == 1, parts == 2
    assert (first & cancer).sum() == cancer.sum() and not (first & benign).any()
    assert (second & benign).sum() == benign.sum() and not (second & cancer).any()
    assert first.sum() == 2160 and second.sum() == 989  # the 115 voxels of the neck shared between them


@pytest.mark.parametrize("name, mask", [
    ("thick neck", _ball(30, 8.0) | _ball(52, 6.0) | _rod(4.5)),  # 0.75 of the smaller mass's radius
    ("one ball", _ball(45, 9.0)),
    ("an elongated ellipsoid (36 x 14 x 14 mm)", ((X - 45) / 18) ** 2 + ((Y - 24) / 7) ** 2 + ((Z - 20) / 7) ** 2 <= 1),
    ("a 4 mm ball beside the 12 mm one (under 3 mm radius)", _ball(52, 6.0) | _ball(40, 2.0) | _rod(1.0)),
])
def test_one_mass_is_not_split(name, mask):
    assert neck_parts(mask, UNIT) is None, name


def test_split_lesions_lists_the_parts_largest_first_and_ratio_zero_is_label_lesions():
    _cancer, _benign, mask = _dumbbell(2.0)
    mask = mask.copy()
    mask[2:4, 2:4, 2:4] = True  # an 8-voxel speck, another component
    labels, keep = split_lesions(mask, UNIT)
    assert [int((labels == k).sum()) for k in keep] == [2160, 989, 8]
    assert split_lesions(mask, UNIT, min_volume_mm3=10.0)[1] == keep[:2]
    plain_labels, plain_keep = split_lesions(mask, UNIT, ratio=0.0)
    expected_labels, expected_keep = clinical.label_lesions(mask, UNIT)
    assert np.array_equal(plain_labels, expected_labels) and plain_keep == expected_keep
    assert lesions.DEFAULTS["neck_ratio"] == NECK_RATIO == 0.6


def _dumbbell_study() -> tuple[DCEStudy, np.ndarray, np.ndarray, np.ndarray]:
    """The dumbbell on a four-phase study: the 16 mm ball and the neck wash out (signal 100, 300,
    270, 250), the 12 mm ball rises (100, 180, 220, 250: persistent)."""
    cancer, benign, mask = _dumbbell(2.0)
    phases = []
    for washout, persistent in zip((100, 300, 270, 250), (100, 180, 220, 250)):
        phase = np.full(SHAPE, 100.0, np.float32)
        phase[mask & ~benign], phase[benign] = washout, persistent
        phases.append(phase)
    return DCEStudy.from_arrays(phases, spacing=UNIT, times=[0.0, 90.0, 270.0, 450.0]), cancer, benign, mask


def test_a_persistent_mass_joined_to_a_washout_lesion_is_listed_not_kept():
    """At a threshold of 0.3 the persistent ball (score 0.39) would stay; joined to the washout
    lesion by a neck it is listed as another lesion. Without the split the two are one lesion."""
    study, cancer, benign, mask = _dumbbell_study()
    image = study.image_like(mask.astype(np.uint8), np.uint8)
    kept, other, rows = lesions.decide(image, study, threshold=0.3, neck_ratio=NECK_RATIO)
    assert [(r["volume_mm3"], r["curve_read"], r["part_of"], r["decision"]) for r in rows] == [
        (2160.0, "washout", 1, "tumor"), (989.0, "persistent", 1, "other enhancing lesion")]
    assert rows[0]["malignancy_score"] == pytest.approx(0.972, abs=0.002)
    assert rows[1]["excluded_because"] == lesions.JOINED_PERSISTENT and rows[1]["malignancy_score"] == 0.0
    assert kept.sum() == 2160 and (kept & cancer).sum() == cancer.sum() and not (kept & benign).any()
    assert np.array_equal(other | kept, mask) and not (other & kept).any()
    # without the split: one lesion, kept whole
    kept, other, rows = lesions.decide(image, study, threshold=0.3, neck_ratio=0.0)
    assert len(rows) == 1 and "part_of" not in rows[0] and np.array_equal(kept, mask) and not other.any()
    # the persistent part scores 0.39 on its own: at the default threshold the score already lists it
    rows = lesions.decide(image, study, neck_ratio=NECK_RATIO)[2]
    assert rows[1]["malignancy_score"] == pytest.approx(0.392, abs=0.002) and "excluded_because" not in rows[1]


def test_the_search_screen_reads_the_split_lesions():
    """lesions.screen (the kinetic method's search screen) keeps the washout part only."""
    study, cancer, _benign, mask = _dumbbell_study()
    kept, border = lesions.screen()(study, mask, np.ones(SHAPE, bool))
    assert kept.sum() == 2160 and (kept & cancer).sum() == cancer.sum() and not border.any()
