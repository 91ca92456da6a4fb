"""lesion_notes: an empty tumor mask beside a listed mass is said aloud (a warning naming the mass); lesions that
are not masses (border, vessels, diffuse enhancement) are not named."""

import numpy as np
import pytest

from BreastDCESegLib import inference, lesion_notes
from BreastDCESegLib.results import SegmentationResult
from BreastDCESegLib.study import image_like
from BreastDCESegLib.synth.empirical import make_empirical_phantom


def row(**kw):
    base = {"decision": "other enhancing lesion", "excluded_because": "fibroadenoma pattern (persistent, "
            "circumscribed oval, < 30 mm)", "longest_diameter_mm": 26.1, "volume_mm3": 6147.0, "sphericity": 0.93,
            "thinness": 1.17, "border_fraction": 0.0, "curve_read": "persistent", "centroid_lps_mm": [82.1, 73.9, 24.3]}
    return {**base, **kw}


def test_listed_masses_are_the_masses_largest_first():
    rows = [row(volume_mm3=500.0, longest_diameter_mm=11.0), row(),
            row(excluded_because="on the breast border (skin or chest wall)"),
            row(excluded_because="tubular or sheet-like (thinness 4.9 > 2.8): vessel or skin fold"),
            row(excluded_because="small and thin (2.50 > 2.4, under 0.5 mL): a vessel fragment"),
            row(excluded_because="diffuse (sphericity 0.50 < 0.55): background or non-mass enhancement"),
            row(excluded_because=None, longest_diameter_mm=4.0),   # under 5 mm
            row(excluded_because=None, thinness=3.1),              # read as a tube
            row(decision="tumor")]
    masses = lesion_notes.listed_masses(rows)
    assert [m["volume_mm3"] for m in masses] == [6147.0, 500.0]


def test_the_note_names_the_largest_mass_and_counts_the_others():
    note = lesion_notes.empty_tumor_note([row(volume_mm3=500.0, longest_diameter_mm=11.0), row()])
    assert note.startswith("no lesion kept as the tumor, but an enhancing mass was listed: 26 mm, persistent, "
                           "fibroadenoma pattern (persistent, circumscribed oval, < 30 mm), at LPS (82, 74, 24) mm "
                           "and 1 more. A persistent cancer can read so")
    assert lesion_notes.empty_tumor_note([row(excluded_because="branching (irregularity 0.80 > 0.75): a vessel tree")]) \
        is None
    unscored = lesion_notes.empty_tumor_note([row(excluded_because=None)])
    assert "26 mm, persistent, scored under the lesion threshold, at LPS" in unscored


def test_only_an_empty_tumor_mask_gets_the_note():
    empty = np.zeros((4, 8, 8), np.uint8)
    result = SegmentationResult(tumor=image_like(empty, _reference()), extra={"lesion_decisions": [row()]},
                                warnings=["phase times unknown"])
    noted = lesion_notes.with_empty_tumor_note(result)
    assert noted.warnings[0] == "phase times unknown" and noted.warnings[1].startswith("no lesion kept")
    kept = empty.copy()
    kept[2, 4, 4] = 1
    with_tumor = SegmentationResult(tumor=image_like(kept, _reference()), extra={"lesion_decisions": [row()]})
    assert lesion_notes.with_empty_tumor_note(with_tumor).warnings == []
    assert lesion_notes.with_empty_tumor_note(SegmentationResult(tumor=image_like(empty, _reference()))).warnings == []


def _reference():
    import SimpleITK as sitk
    return sitk.Image(8, 8, 4, sitk.sitkUInt8)


@pytest.mark.slow
def test_a_study_whose_masses_read_as_fibroadenomas_says_so():
    """Second phantom seed 2 (160 voxels, no cancer): two persistent circumscribed ovals, the fibroadenoma pattern;
    the mask is empty and the warning names the larger (13 mm). Seed 0 lists only border and vessel lesions: none."""
    result = inference.segment(make_empirical_phantom(2, longest=160).study, "kinetic", device="cpu")
    assert not result.tumor_array().any()
    assert [w for w in result.warnings if w.startswith("no lesion kept as the tumor, but an enhancing mass was "
                                                       "listed: 13 mm, persistent, fibroadenoma pattern")]
    assert "and 1 more" in result.warnings[-1]
    quiet = inference.segment(make_empirical_phantom(0, longest=160).study, "kinetic", device="cpu")
    assert not quiet.tumor_array().any() and not [w for w in quiet.warnings if w.startswith("no lesion kept")]
