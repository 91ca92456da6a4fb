"""The kinetic method's voxel uncertainty (option ``tta``, :mod:`BreastDCESegLib.models.kinetic_voxels`): each
lesion cut at its own level (its mask) and, within one voxel around it, 0.05 and 0.1 of its peak lower and higher;
a voxel's uncertainty is the standard deviation of its membership over those five cuts."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from BreastDCESegLib import inference, synth, uncertainty
from BreastDCESegLib.synth import sites

STILL = {"motion_correction": False}  # the phantom's phases are aligned enough: no motion to correct for this


@pytest.fixture(scope="module")
def runs():
    ph = sites.make_site_phantom("reference", seed=8000, longest=128)  # tuning seed of the reference profile
    return (ph, inference.segment(ph.study, "kinetic", options={**STILL, "tta": True}),
            inference.segment(ph.study, "kinetic", options=STILL))


def test_the_uncertainty_lies_on_the_boundary_where_the_mask_is_wrong(runs):
    ph, asked, plain = runs
    assert plain.uncertainty is None
    mask, truth = asked.tumor_array() > 0, ph.tumor_array() > 0
    assert np.array_equal(asked.tumor_array(), plain.tumor_array())  # the mask is the middle cut
    u = sitk.GetArrayFromImage(asked.uncertainty)
    assert u.shape == mask.shape and u.dtype == np.float32
    assert float(u.max()) == pytest.approx(np.sqrt(0.4 * 0.6), abs=1e-6)  # two of five cuts against three
    uncertain = u > 0
    assert 780 <= int(uncertain.sum()) <= 890                            # measured 832 (2508 tumor voxels)
    assert not uncertain[ndimage.binary_erosion(mask, iterations=2)].any()    # the interior: every cut agrees
    outside = ndimage.distance_transform_edt(~mask, sampling=ph.study.spacing[::-1])
    assert float(outside[uncertain].max()) < 7.0                         # measured 6.52 mm (3.44 mm slices)
    wrong = mask ^ truth                                                 # 284 voxels
    assert float(uncertain[wrong].mean()) > 0.55                         # measured 0.595 of them marked
    assert float(u[wrong].mean()) > 0.25                                 # measured 0.270
    assert float(u[mask & truth].mean()) < 0.01                          # measured 0.0071


def test_probability_and_uncertainty_files_and_a_study_without_a_tumor(runs, tmp_path):
    ph, asked, _plain = runs
    files = uncertainty.case_files("case", asked)
    assert sorted(files) == ["case_prob.nii.gz", "case_uncertainty.nii.gz"]
    files["case_uncertainty.nii.gz"](tmp_path / "u.nii.gz")
    written = sitk.ReadImage(str(tmp_path / "u.nii.gz"))
    assert np.array_equal(sitk.GetArrayFromImage(written), sitk.GetArrayFromImage(asked.uncertainty))
    assert written.GetSpacing() == pytest.approx(ph.study.spacing)

    empty = synth.make_phantom(seed=7001, size=(64, 64, 20), p_no_lesion=1.0)
    result = inference.segment(empty.study, "kinetic", options={**STILL, "tta": True})
    assert not result.tumor_array().any()
    assert result.uncertainty is not None and not sitk.GetArrayFromImage(result.uncertainty).any()



def test_the_benchmark_writes_each_studys_figures_and_their_means(tmp_path):
    from benchmarks.kinetic_uncertainty import main

    out = main(["--sites", "two-phase", "--n", "1", "--first-seed", "8000", "--longest", "128",
                "--output", str(tmp_path / "u.json")])
    written = json.loads((tmp_path / "u.json").read_text())
    assert written == json.loads(json.dumps(out)) and [c["seed"] for c in written["cases"]] == [8400]
    case, summary = written["cases"][0], written["summary"]
    assert summary["studies"] == summary["with_a_mask"] == 1 and summary["errors_marked"] == case["errors_marked"]
    assert case["tumor_voxels"] > 0 and case["marked_voxels"] >= case["marked_outside_mask"] > 0
    assert case["errors_marked"] == 1.0 and case["mean_on_errors"] > 0.4 and case["mean_on_correct_tumor"] == 0.0
    # measured: its 19 error voxels all marked, mean 0.428 on them
