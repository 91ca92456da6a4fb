"""``benchmarks/lesion_features.py``: each kept component of a tumor mask, true or false against the
truth, with the features of the lesion row nearest it."""

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from BreastDCESegLib.study import DCEStudy


def _bench():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "lesion_features.py"
    spec = importlib.util.spec_from_file_location("lesion_features", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_each_kept_component_is_a_row_true_when_it_overlaps_the_truth():
    pre = np.zeros((10, 20, 30), np.float32)
    study = DCEStudy.from_arrays([pre, pre + 1.0], spacing=(1.0, 2.0, 3.0), origin=(-10.0, 5.0, 0.0))
    mask = np.zeros(pre.shape, np.uint8)
    mask[2:4, 3:6, 4:8] = 1       # a cancer: 2 x 3 x 4 voxels, centre (z, y, x) = (2.5, 4, 5.5)
    mask[7:9, 15:17, 20:22] = 1   # a vessel fragment: 8 voxels away from the truth
    truth = np.zeros(pre.shape, bool)
    truth[3, 4, 5] = True

    def row(index, zyx, thinness, border):
        z, y, x = zyx
        return {"decision": "tumor", "thinness": thinness, "border_fraction": border, "curve_read": "washout",
                "centroid_lps_mm": list(study.reference.TransformContinuousIndexToPhysicalPoint((x, y, z))),
                "index": index}

    decisions = [row(1, (7.5, 15.5, 20.5), 2.7, 0.4), row(2, (2.5, 4.0, 5.5), 1.1, 0.0),
                 {"decision": "other enhancing lesion", "thinness": 9.9, "centroid_lps_mm": [0.0, 0.0, 0.0]}]
    result = SimpleNamespace(tumor_array=lambda: mask, extra={"lesion_decisions": decisions})
    rows = _bench().component_rows(study, truth, result)
    assert [(r["voxels"], r["true"], r["thinness"], r["border_fraction"]) for r in rows] == \
        [(24, True, 1.1, 0.0), (8, False, 2.7, 0.4)]
    assert rows[0]["curve_read"] == "washout" and set(rows[0]) >= {"sphericity", "malignancy_score"}


def test_a_reason_is_read_without_its_figures():
    category = _bench().category
    assert category("fibroadenoma pattern (persistent, circumscribed oval, < 30 mm)") == "fibroadenoma pattern"
    assert category("no boundary: grows 3.2x into background") == "no boundary"
    assert category("under 500 mm3 of enhancing voxels, re-cut on the unsmoothed subtraction") == \
        "under N mm3 of enhancing voxels, re-cut on the unsmoothed subtraction"
    assert category("weak") == "weak"


def test_each_missed_cancer_says_where_it_was_lost_and_each_listed_lesion_what_it_lies_over():
    pre = np.zeros((10, 20, 30), np.float32)
    study = DCEStudy.from_arrays([pre, pre + 1.0], spacing=(1.0, 2.0, 3.0), origin=(-10.0, 5.0, 0.0))
    truth = np.zeros(pre.shape, bool)
    centres = [(2, 3, 4), (2, 12, 4), (7, 3, 20), (7, 12, 20), (4, 8, 14)]  # found, listed, search, nothing, re-cut
    for z, y, x in centres:
        truth[z:z + 2, y:y + 2, x:x + 2] = True
    benign = np.zeros(pre.shape, bool)
    benign[5, 17, 10] = True
    pred = np.zeros(pre.shape, np.uint8)
    pred[2, 3, 4] = 1

    def at(zyx):
        z, y, x = (c + 0.5 for c in zyx)
        return list(study.reference.TransformContinuousIndexToPhysicalPoint((x, y, z)))

    decisions = [{"decision": "other enhancing lesion", "centroid_lps_mm": at(centres[1]),
                  "excluded_because": "fibroadenoma pattern (persistent, circumscribed oval, < 30 mm)"},
                 {"decision": "other enhancing lesion", "centroid_lps_mm": at((5, 17, 10)), "excluded_because": None},
                 {"decision": "other enhancing lesion", "centroid_lps_mm": at(centres[4]), "excluded_because": None,
                  "malignancy_score": 0.99},
                 {"decision": "tumor", "centroid_lps_mm": at(centres[0])}]
    rejected = [{"rejected": "small persistent focus", "centroid_lps_mm": at(centres[2])},
                {"rejected": "weak"}]  # a component without a centre is not read
    result = SimpleNamespace(tumor_array=lambda: pred,
                             extra={"lesion_decisions": decisions, "rejected_components": rejected})
    bench = _bench()
    misses = bench.missed_cancers(study, truth, result)
    assert not any(r["study_missed"] for r in misses)  # the first cancer is found
    assert [(r["voxels"], r["lost"], r["reason"]) for r in misses] == [
        (8, "listed", "fibroadenoma pattern"), (8, "listed", "kept by the rules, dropped after them"),
        (8, "search", "small persistent focus"), (8, "no candidate", "")]  # in the truth's raster order
    listed = bench.listed_rows(study, {"cancer": truth, "benign": benign}, result)
    assert [(r["over"], r["excluded_because"]) for r in listed] == [
        ("cancer", decisions[0]["excluded_because"]), ("benign", None), ("cancer", None)]
    assert bench.over(study, [1e4, 1e4, 1e4], {"cancer": truth}) == "none"  # off the grid


@pytest.mark.slow
def test_a_small_persistent_cancer_is_lost_in_the_search_where_its_component_lies():
    """tiny-lesions 12917 (fresh site study, 160 voxels): an 8 mm persistent cancer, dropped by the kinetic search as
    a small persistent focus (by design: the benign foci of the profile read the same); the rejected component's
    centre lies on it."""
    from BreastDCESegLib import inference
    from BreastDCESegLib.synth import sites

    ph = sites.make_site_phantom("tiny-lesions", seed=12917, longest=160)
    truth = ph.tumor_array() > 0
    result = inference.segment(ph.study, "kinetic", device="cpu")
    assert not result.tumor_array().any()
    assert all("centroid_lps_mm" in f for f in result.extra["rejected_components"])
    assert [(r["voxels"], r["lost"], r["reason"], r["study_missed"], r["largest"])
            for r in _bench().missed_cancers(ph.study, truth, result)] == [
        (21, "search", "small persistent focus", True, True)]
