"""synth.artifacts: each acquisition artifact does to the phases what it says, on studies built to show it,
and rigid motion correction undoes the motion one (a 2-degree turn that a translation cannot follow)."""

import numpy as np
import pytest

from BreastDCESegLib import inference, metrics, motion
from BreastDCESegLib.study import DCEStudy
from BreastDCESegLib.synth import artifacts, make_phantom

SHAPE = (8, 64, 48)  # z, y (anterior-posterior: index 0 at the front), x
SPACING = (2.0, 2.0, 3.0)


def box_study(n_phases=4, fat_suppressed=True, **arrays_by_phase) -> DCEStudy:
    """A body (signal 100) in air (signal 0), a posterior block (a heart) enhancing 200 more per phase."""
    body = np.zeros(SHAPE)
    body[:, 8:56, 6:42] = 100.0
    phases = []
    for k in range(n_phases):
        a = body.copy()
        a[:, 40:52, 18:30] += 200.0 * k
        phases.append(arrays_by_phase.get(f"p{k}", a))
    return DCEStudy.from_arrays(phases, spacing=SPACING, times=[0.0, 80.0, 160.0, 240.0][:n_phases],
                                metadata={"fat_suppressed": fat_suppressed})


def test_gibbs_rings_at_an_edge_and_keeps_the_signal():
    study = box_study()
    out = artifacts.with_artifact(study, "gibbs").arrays()
    pre = out[0]
    assert pre[:, 30, 3:6].max() > 4.0  # ringing into the air beside the body (measured 9.0)
    assert pre[:, 30, 6:10].max() > 104.0  # overshoot inside its edge (measured 109.0)
    assert pre[:, 16:36, 16:34].mean() == pytest.approx(100.0, rel=0.01)  # away from the edges: the signal


def test_ghosting_repeats_the_posterior_enhancement_along_the_anterior_posterior_axis():
    study = box_study()
    out = artifacts.with_artifact(study, "ghosting").arrays()
    before = study.arrays()
    assert np.array_equal(out[0], before[0])  # nothing enhances in the pre-contrast phase
    shift = SHAPE[1] // 3  # the block (y 40-51) repeats a third of the field further, wrapping to y 61-8
    ghost = out[3][:, (45 + shift) % SHAPE[1], 24]
    np.testing.assert_allclose(ghost, np.hypot(before[3][:, (45 + shift) % SHAPE[1], 24], 0.06 * 600.0), rtol=1e-5)
    assert np.array_equal(out[3][:, 20, 40], before[3][:, 20, 40])  # away from its copies: untouched


def test_view_sharing_keeps_each_phases_low_frequencies_and_shares_its_edges():
    study = box_study()
    dot = study.arrays()
    dot[2][:, 20, 20] += 500.0  # a one-voxel detail of phase 2 only
    study = DCEStudy.from_arrays(list(dot), spacing=SPACING, times=study.times)
    out = artifacts.with_artifact(study, "view-sharing").arrays()
    assert out[2][4, 20, 20] < dot[2][4, 20, 20] - 150.0  # the detail's edges come from phases 1 and 3
    assert out[1][4, 20, 20] > dot[1][4, 20, 20] + 50.0 and out[3][4, 20, 20] > dot[3][4, 20, 20] + 50.0
    assert out[2].mean() == pytest.approx(dot[2].mean(), rel=0.005)  # its own centre of k-space (measured 0.0015)
    assert np.array_equal(out[0], dot[0])


def test_coil_shading_scales_every_phase_alike():
    study = box_study()
    out = artifacts.with_artifact(study, "coil-shading").arrays()
    before = study.arrays()
    assert out[2][4, 8, 20] / before[2][4, 8, 20] == pytest.approx(2.5 ** (1 - 8 / 63), rel=1e-5)
    assert out[2][4, 55, 20] / before[2][4, 55, 20] == pytest.approx(2.5 ** (1 - 55 / 63), rel=1e-5)
    np.testing.assert_allclose(out[3][:, 45, 24] / out[0][:, 45, 24], before[3][:, 45, 24] / before[0][:, 45, 24],
                               rtol=1e-5)  # enhancement ratios as they were


def test_fat_sat_failure_brightens_lateral_fat_in_every_phase_alike():
    dark = box_study().arrays()
    for a in dark:
        a[:, 8:56, 6:12] = 30.0  # suppressed fat along one side, 6 voxels of the 48
        a[:, 8:56, 22:26] = 30.0  # and in the middle
    study = DCEStudy.from_arrays(list(dark), spacing=SPACING, times=[0, 80, 160, 240],
                                 metadata={"fat_suppressed": True})
    out = artifacts.with_artifact(study, "fat-sat-failure").arrays()
    assert np.all(out[:, 3, 30, 8] == 90.0)  # lateral third: fat three times brighter, in every phase
    assert np.all(out[:, 3, 30, 24] == 30.0)  # the middle third: suppressed as before
    assert np.array_equal(out[:, :, 40:52, 18:30], dark[:, :, 40:52, 18:30])  # enhancing tissue untouched
    plain = DCEStudy.from_arrays(list(dark), spacing=SPACING, times=[0, 80, 160, 240])
    assert artifacts.with_artifact(plain, "fat-sat-failure").arrays().tolist() == dark.tolist()


def test_noise_doubles_the_air_noise():
    rng = np.random.default_rng(0)
    sigma = 1.0
    phases = [np.hypot(a + sigma * rng.standard_normal(SHAPE), sigma * rng.standard_normal(SHAPE))
              for a in box_study().arrays()]
    study = DCEStudy.from_arrays(phases, spacing=SPACING, times=[0, 80, 160, 240])
    assert artifacts.air_noise_sigma(study.arrays()[0]) == pytest.approx(sigma, rel=0.05)
    air = box_study().arrays()[0] == 0
    for k, a in enumerate(artifacts.with_artifact(study, "noise", seed=2).arrays()):
        rayleigh = np.sqrt(np.mean(a[air].astype(float) ** 2) / 2.0)  # E[m^2] = 2 sigma^2 in the air
        assert rayleigh == pytest.approx(2 * sigma, rel=0.03), k


def test_unknown_artifact_is_refused():
    with pytest.raises(ValueError, match="unknown artifact 'blur'; one of none, gibbs"):
        artifacts.with_artifact(box_study(), "blur")


@pytest.mark.slow
def test_rigid_motion_correction_follows_a_turn_of_two_degrees():
    """The post-contrast phases rolled 2 degrees and shifted 3-4 mm (an axial study): the rigid
    estimate finds the turn about the head-feet axis, and the kinetic method's mask is nearly the
    unmoved study's; without correction the cancer is lost."""
    ph = make_phantom(seed=3, size=(96, 96, 32), motion_vox=(0.0, 0.0), orientation="axial", n_post=3,
                      p_no_lesion=0.0)
    truth = ph.tumor_array() > 0
    still = metrics.dice(inference.segment(ph.study, "kinetic").tumor_array() > 0, truth)
    moved = artifacts.with_artifact(ph.study, "motion", seed=1)
    corrected, info = motion.correct(moved)
    assert info["corrected"] == [1, 2, 3]
    turns = np.abs(np.array(info["rotations_deg"][1:]))
    assert np.all(np.abs(turns[:, 2] - 2.0) < 0.1) and np.all(turns[:, :2] == 0)  # measured 2.02-2.06
    on = metrics.dice(inference.segment(moved, "kinetic").tumor_array() > 0, truth)
    off = metrics.dice(inference.segment(moved, "kinetic", options={"motion_correction": False}).tumor_array() > 0,
                       truth)
    assert still > 0.97 and on > 0.95 and off < 0.1  # measured 0.979, 0.969 and 0.008


@pytest.mark.slow
def test_the_artifact_benchmark_writes_each_artifacts_dice(tmp_path):
    """``benchmarks/artifact_eval.py`` on one study of the second phantom (seed 1: a 21 mm cancer)."""
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "artifact_eval.py"
    spec = importlib.util.spec_from_file_location("artifact_eval", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "a.json"
    bench.main(["--n", "1", "--first-seed", "1", "--artifacts", "none", "motion", "--output", str(out)])
    written = json.loads(out.read_text())["artifacts"]
    assert written["none"]["mean_dice"] == pytest.approx(0.924, abs=0.005)  # benchmarks/results/artifact_eval.json
    assert written["motion"]["mean_dice"] == pytest.approx(0.90, abs=0.03)
    assert written["motion"]["cases"][0]["seed"] == 1 and written["motion"]["n_without_cancer"] == 0
