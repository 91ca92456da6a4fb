"""The second phantom (synth.empirical): deterministic, consistent ground truth, the empirical
enhancement model, both orientations, and the kinetic method's Dice on it."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from BreastDCESegLib import inference, lesions, metrics
from BreastDCESegLib.synth.empirical import emm, make_empirical_phantom
from BreastDCESegLib.synth.tissues import TISSUE_LABELS


def test_the_same_seed_gives_the_same_study_and_settings_are_kept():
    a = make_empirical_phantom(5, longest=64, n_post=3, fat_suppressed=False, orientation="axial")
    b = make_empirical_phantom(5, longest=64, n_post=3, fat_suppressed=False, orientation="axial")
    assert np.array_equal(a.study.arrays(), b.study.arrays())
    assert a.study.n_post == 3 and a.study.metadata["fat_suppressed"] is False
    assert all(t1 > t0 for t0, t1 in zip(a.study.times, a.study.times[1:]))
    assert 50.0 <= a.study.times[1] <= 110.0
    assert a.study.spacing[0] == pytest.approx(340.0 / 64, rel=1e-3)


def test_a_set_cancer_size_changes_the_cancer_only():
    """``cancer_mm``: the cancer drawn at that diameter (a locally advanced one), every other draw as without it."""
    drawn = make_empirical_phantom(7, longest=64, p_no_lesion=0.0)
    large = make_empirical_phantom(7, longest=64, p_no_lesion=0.0, cancer_mm=90.0)
    assert [les["diameter_mm"] for les in large.lesions if les["malignant"]] == [90.0]
    benign = [les for les in drawn.lesions if not les["malignant"]]
    assert [les for les in large.lesions if not les["malignant"]] == benign
    assert large.tumor_array().sum() > 5 * drawn.tumor_array().sum()
    assert large.study.times == drawn.study.times and large.study.metadata["fat_suppressed"] == drawn.study.metadata[
        "fat_suppressed"]


def test_the_truth_is_the_lesion_label_inside_the_breast():
    ph = make_empirical_phantom(1, longest=96, orientation="axial", p_no_lesion=0.0)
    tumor, breast = ph.tumor_array() > 0, ph.breast_array() > 0
    labels = sitk.GetArrayFromImage(ph.labels)
    assert tumor.sum() > 50
    assert np.array_equal(labels == TISSUE_LABELS["lesion"], tumor)
    assert (tumor & breast).sum() / tumor.sum() > 0.99
    assert [les["malignant"] for les in ph.lesions].count(True) == 1
    free = make_empirical_phantom(1, longest=64, p_no_lesion=1.0)
    assert not free.tumor_array().any() and not any(les["malignant"] for les in free.lesions)


def test_the_empirical_model_reads_washout_plateau_and_persistent():
    t = np.array([1.0, 2.0, 6.0])
    washout, plateau, persistent = emm(t, 2.0, 4.0, 0.1), emm(t, 1.5, 3.0, 0.01), emm(t, 1.0, 1.0, -0.03)
    assert washout[2] < 0.8 * washout[1] and abs(plateau[2] / plateau[1] - 1) < 0.1
    assert persistent[2] > 1.1 * persistent[1]
    assert emm(0.0, 2.0, 4.0, 0.1) == 0.0


def test_a_cancer_enhances_above_the_breast_and_washes_out_in_the_study():
    ph = make_empirical_phantom(1, longest=96, orientation="axial", p_no_lesion=0.0, n_post=4)
    assert ph.lesions[-1]["curve"] == "washout"
    tumor, breast = ph.tumor_array() > 0, ph.breast_array() > 0
    arrays = ph.study.arrays()
    enhancement = arrays[1:] / np.maximum(arrays[0], 1.0) - 1.0
    inner = tumor & (np.abs(enhancement[0]) < 10)
    lesion = np.median(enhancement[:, inner], axis=1)
    parenchyma = np.median(enhancement[0][breast & ~tumor])
    assert lesion[0] > 1.0 and lesion[0] > 5 * parenchyma
    assert lesion[-1] < 0.9 * lesion.max()  # washout by the last phase


def test_a_sagittal_study_images_the_left_breast_with_slices_across_it():
    ph = make_empirical_phantom(3, longest=96, orientation="sagittal", p_no_lesion=0.0)
    study = ph.study
    assert study.metadata["orientation"] == "sagittal"
    assert np.allclose(np.array(study.direction).reshape(3, 3), [[0, 0, 1], [1, 0, 0], [0, -1, 0]])
    assert study.spacing[2] >= study.spacing[0]  # the slice axis (left-right) is the thick one
    tumor = ph.tumor
    index = np.argwhere(sitk.GetArrayFromImage(tumor) > 0).mean(0)[::-1]  # (i, j, k)
    centre = np.array(tumor.TransformContinuousIndexToPhysicalPoint([float(v) for v in index]))
    assert centre[0] > 20.0  # L in LPS: the left breast


@pytest.mark.slow
def test_the_kinetic_method_holds_on_the_second_phantom_and_cuts_a_vessel_off_a_cancer():
    """Measured: seed 54 (sagittal, plateau, 22.9 mm) 0.918; seed 0 has no cancer and comes out
    empty; seed 22 (plateau, 22.2 mm, a vessel leaving it) 0.929, and 0.0 without the trim of thin
    protrusions nor the lesion rules' vessel opening: the cancer and the vessel, delineated as one 5.6 mL
    mask of thinness 3.1, were excluded as tubular; the opening alone reads the cancer apart, 0.905
    (benchmarks/empirical_phantom.py has 60 studies)."""
    phantoms = {seed: make_empirical_phantom(seed) for seed in (54, 0, 22)}

    def dice(seed, **options):
        ph = phantoms[seed]
        pred = inference.segment(ph.study, "kinetic", device="cpu", options=options or None).tumor_array() > 0
        truth = ph.tumor_array() > 0
        return metrics.dice(pred, truth) if truth.any() else float(pred.sum())

    assert dice(54) > 0.87
    assert dice(0) == 0.0
    assert dice(22) > 0.88
    assert dice(22, trim_voxels=0, vessel_open_mm=0) == 0.0
    assert dice(22, trim_voxels=0) > 0.86


def test_a_branching_lesion_is_excluded_as_a_vessel_tree():
    """Irregularity (1 - V / V_hull) above 0.75: the lesion fills under 25 % of its convex hull."""
    row = {"sphericity": 0.59, "thinness": 2.4, "irregularity": 0.82, "border_fraction": 0.0}
    assert lesions.exclusion(row, max_irregularity=0.75) == "branching (irregularity 0.82 > 0.75): a vessel tree"
    assert lesions.exclusion({**row, "irregularity": 0.7}, max_irregularity=0.75) is None
    assert lesions.exclusion(row) is None  # the rule off
    assert lesions.DEFAULTS["max_irregularity"] == 0.75


@pytest.mark.slow
def test_a_washout_vessel_tree_in_a_study_without_a_cancer_is_not_the_tumor():
    """Second phantom seed 40 (no cancer): a 44 mm long washout vessel tree (1.3 mL, irregularity
    0.82, sphericity 0.59, thinness 2.4: under the diffuse and tubular limits) was kept as the tumor
    (97 voxels delineated, 90 after the re-cut on the unsmoothed voxels); the branching rule lists it."""
    ph = make_empirical_phantom(40)
    assert not (ph.tumor_array() > 0).any()
    result = inference.segment(ph.study, "kinetic", device="cpu", options={"other_lesions": True})
    assert not result.tumor_array().any()
    row = next(r for r in result.extra["lesion_decisions"] if r["excluded_because"].startswith("branching"))
    assert row["irregularity"] == pytest.approx(0.82, abs=0.01) and row["curve_read"] == "washout"
    kept = inference.segment(ph.study, "kinetic", device="cpu", options={"max_irregularity": 0}).tumor_array()
    assert int((kept > 0).sum()) == 90


def test_depth_in_the_breasts_block_is_the_whole_distance_map_within_reach():
    """The anatomy's skin and the lesions' depth read the distance map in the breasts' block only: at every
    voxel of the region, the whole map's value where it is within the reach, more than the reach elsewhere."""
    from scipy import ndimage

    from BreastDCESegLib.morphology import distance_in_block

    rng = np.random.default_rng(2)
    body = np.zeros((30, 50, 60), bool)
    body[3:27, 8:45, 5:55] = True
    body &= rng.random(body.shape) > 0.05  # holes: background inside the body too
    region = np.zeros_like(body)
    region[10:20, 10:25, 20:40] = True
    steps = (1.5, 1.0625, 1.0625)
    whole = ndimage.distance_transform_edt(body, sampling=steps)
    near = distance_in_block(body, region, steps, 2.5)
    within = region & (whole <= 2.5)
    assert within.sum() > 1000 and np.array_equal(near[within], whole[within])
    assert (near[region & (whole > 2.5)] > 2.5).all() and np.isinf(near[0, 0, 0])
