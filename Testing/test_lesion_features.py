"""``benchmarks/lesion_features.py``: each kept component of a tumor mask, true or false against the
truth, with the features of the lesion row nearest it."""

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import numpy as np

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
