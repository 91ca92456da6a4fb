"""Masses a lesion joins by a narrow neck (lesion_necks.neck_parts); a persistent one joined to a
washout or plateau one in a kept lesion is listed, not kept (lesion_necks.separate_joined_persistent)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from BreastDCESegLib import lesions
from BreastDCESegLib.lesion_necks import JOINED_PERSISTENT, NECK_RATIO, neck_parts
from BreastDCESegLib.morphology import opening
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


def _decide(study, mask, **rules):
    return lesions.decide(study.image_like(mask.astype(np.uint8), np.uint8), study, **rules)


def test_a_persistent_mass_joined_to_a_washout_lesion_is_listed_not_kept():
    """Read whole, the dumbbell is one washout lesion (score 0.998), kept with its persistent ball.
    Split at the neck, the washout part is kept (re-read: 2160 mm3, 0.972) and the persistent ball
    listed as a lesion of its own."""
    study, cancer, benign, mask = _dumbbell_study()
    kept, other, rows = _decide(study, mask, neck_ratio=NECK_RATIO)
    assert [(r["volume_mm3"], r["curve_read"], r["decision"]) for r in rows] == [
        (2160.0, "washout", "tumor"), (989.0, "persistent", "other enhancing lesion")]
    assert rows[0]["malignancy_score"] == pytest.approx(0.972, abs=0.002) and rows[0]["label"] == 1
    assert rows[1]["excluded_because"] == JOINED_PERSISTENT and rows[1]["malignancy_score"] == 0.0
    assert rows[1]["index"] == 2 and rows[1]["label"] == 2
    assert kept.sum() == 2160 and (kept & cancer).sum() == cancer.sum() and not (kept & benign).any()
    assert np.array_equal(other | kept, mask) and not (other & kept).any()
    # without the split: one lesion, kept whole
    kept, other, rows = _decide(study, mask, neck_ratio=0.0)
    assert [(r["volume_mm3"], r["malignancy_score"]) for r in rows] == [(3149.0, pytest.approx(0.9975, abs=0.001))]
    assert np.array_equal(kept, mask) and not other.any()


def test_a_lesion_excluded_whole_is_not_split():
    """The same dumbbell excluded as tubular (a thinness limit of 1.5) stays one listed lesion: the
    split only takes parts out of kept lesions, never makes a kept lesion of a part."""
    study, _cancer, _benign, mask = _dumbbell_study()
    kept, other, rows = _decide(study, mask, neck_ratio=NECK_RATIO, max_thinness=1.5)
    assert len(rows) == 1 and rows[0]["excluded_because"].startswith("tubular") and not kept.any()
    assert np.array_equal(other, mask)


def test_masses_of_one_curve_stay_one_lesion():
    study, _cancer, benign, mask = _dumbbell_study()
    washout = [np.where(benign, signal, sitk.GetArrayFromImage(phase)).astype(np.float32)  # the 12 mm ball too
               for signal, phase in zip((100, 300, 270, 250), study.phases)]
    same = DCEStudy.from_arrays(washout, spacing=UNIT, times=study.times)
    kept, _other, rows = _decide(same, mask, neck_ratio=NECK_RATIO)
    assert len(rows) == 1 and rows[0]["volume_mm3"] == 3149.0 and np.array_equal(kept, mask)


def test_the_search_screen_splits_too():
    """lesions.screen (the kinetic method's search screen) keeps the washout part. The default rules
    exclude the whole dumbbell as tubular (thinness 3.2 over 2.8), then open it by a 3 mm ball
    (``vessel_open_mm``): the 16 mm washout ball is a mass of its own and kept (2040 of its 2109 voxels:
    the opening rounds its surface), the persistent 12 mm one excluded as a fibroadenoma; without
    that limit it is kept whole and split at the neck."""
    study, cancer, _benign, mask = _dumbbell_study()
    opened, _ = lesions.screen()(study, mask, np.ones(SHAPE, bool))
    assert opened.sum() == 2040 and (opened & cancer).sum() == 2032
    assert not lesions.screen({"vessel_open_mm": 0})(study, mask, np.ones(SHAPE, bool))[0].any()
    kept, border = lesions.screen({"max_thinness": 0})(study, mask, np.ones(SHAPE, bool))
    assert kept.sum() == 2160 and (kept & cancer).sum() == cancer.sum() and not border.any()
    assert lesions.DEFAULTS["neck_ratio"] == NECK_RATIO == 0.6


def _washout_study(mask: np.ndarray) -> DCEStudy:
    """``mask`` washing out (signal 100, 300, 270, 250) in a flat 100 background, 1 mm voxels."""
    phases = []
    for signal in (100, 300, 270, 250):
        phase = np.full(SHAPE, 100.0, np.float32)
        phase[mask] = signal
        phases.append(phase)
    return DCEStudy.from_arrays(phases, spacing=UNIT, times=[0.0, 90.0, 270.0, 450.0])


def _vessel(radius: float, x0: float, x1: float) -> np.ndarray:
    return ((Y - 24) ** 2 + (Z - 20) ** 2 <= radius ** 2) & (X >= x0) & (X <= x1)


RULES = {"max_thinness": 2.8, "min_sphericity": 0.55, "max_irregularity": 0.75}


def test_a_mass_a_vessel_joins_is_read_apart_and_kept():
    """A 16 mm washout ball (2109 voxels) with a 3 mm vessel of 63 mm leaving it enhances as one lesion,
    excluded whole as tubular (thinness 5.5). Opened by a 3 mm ball it leaves the mass (2040 voxels,
    thinness 1.0), a lesion of its own that is kept; the vessel stays listed."""
    cancer = _ball(20, 8.0)
    mask = cancer | _vessel(1.5, 26, 88)
    study = _washout_study(mask)
    kept, other, rows = _decide(study, mask, vessel_open_mm=3.0, **RULES)
    assert [(r["volume_mm3"], r["decision"], r.get("joined_vessel_of")) for r in rows] == [
        (2657.0, "other enhancing lesion", None), (2040.0, "tumor", 1)]
    assert rows[0]["excluded_because"].startswith("tubular") and rows[1]["thinness"] == pytest.approx(1.02, abs=0.01)
    assert kept.sum() == 2040 and (kept & cancer).sum() == 2032 and not (kept & other).any()
    assert np.array_equal(kept | other, mask)
    kept, _other, rows = _decide(study, mask, vessel_open_mm=0.0, **RULES)  # off: the mass goes with its vessel
    assert len(rows) == 1 and not kept.any()


def test_a_vessel_alone_leaves_no_mass():
    """A 5.8 mm wide vessel of 87 mm (2175 voxels): nothing in it lies deeper than 3 mm, so its opening is
    empty and it stays one excluded lesion."""
    vessel = _vessel(2.9, 2, 88)
    kept, _other, rows = _decide(_washout_study(vessel), vessel, vessel_open_mm=3.0, **RULES)
    assert vessel.sum() == 2175 and len(rows) == 1 and rows[0]["excluded_because"].startswith("tubular")
    assert not kept.any() and not opening(vessel, UNIT, 3.0).any()

