"""Motion correction between phases (motion.py): the estimated shifts equal the phantom's
rendered ones, still studies are left untouched, and the kinetic method recovers the tumor
that motion hid."""

import numpy as np
import pytest
import SimpleITK as sitk

from BreastDCESegLib import inference, metrics, motion, motion_store
from BreastDCESegLib.study import DCEStudy
from BreastDCESegLib.synth import make_phantom, sites


@pytest.fixture(autouse=True)
def no_store():
    """These tests are of the estimator: every estimate here is made, none read from the tests' store."""
    with motion_store.using(None):
        yield


@pytest.fixture(scope="module")
def moved():
    return make_phantom(seed=3, size=(96, 96, 32), motion_vox=(1.5, 1.5), orientation="axial", n_post=3,
                        p_no_lesion=0.0)


def test_estimated_shifts_equal_the_rendered_motion(moved):
    corrected, info = motion.correct(moved.study)
    rendered = np.array(moved.study.metadata["motion_shifts_vox_zyx"])[:, ::-1]  # (x, y, z) voxels
    assert np.abs(np.array(info["shifts_vox"]) - rendered).max() < 0.1  # measured 0.062
    assert info["corrected"] == [1, 2, 3] and info["rejected"] == [] and info["not_better"] == []
    shift = info["shifts_mm"][1]
    assert motion.alignment_cost(moved.study.pre, moved.study.phases[1], shift) < \
        motion.alignment_cost(moved.study.pre, moved.study.phases[1], np.zeros(3))
    assert corrected.phases[0] is moved.study.phases[0]  # the pre-contrast phase and the grid never move
    assert corrected.shape == moved.study.shape and corrected.spacing == moved.study.spacing
    # the realigned phase matches the pre-contrast anatomy better: less subtraction signal at fat edges
    before = np.abs(moved.study.subtraction(1)).mean()
    after = np.abs(corrected.subtraction(1)).mean()
    assert after < 0.85 * before  # measured 0.815


def test_still_study_is_returned_unchanged():
    ph = make_phantom(seed=5, size=(64, 64, 24), motion_vox=(0.0, 0.0), orientation="axial", n_post=2)
    corrected, info = motion.correct(ph.study)
    assert corrected is ph.study and info["corrected"] == []
    assert np.abs(np.array(info["shifts_vox"])).max() < 0.2
    assert motion.apply(ph.study, {"motion_correction": False}) == (ph.study, None)


def test_an_estimate_aligning_worse_than_no_shift_is_discarded(monkeypatch):
    ph = make_phantom(seed=5, size=(64, 64, 24), motion_vox=(0.0, 0.0), orientation="axial", n_post=2)
    moved_away = np.array([0.0, 0.0, 0.0, 4.5, -3.0, 0.0])  # no turn, a 5.4 mm translation
    monkeypatch.setattr(motion, "estimate_motion", lambda fixed, moving, seed=7: moved_away)
    corrected, info = motion.correct(ph.study)
    assert corrected is ph.study and info["corrected"] == [] and info["not_better"] == [1, 2]
    assert info["discarded_mm"] == [[4.5, -3.0, 0.0]] * 2 and info["shifts_mm"] == [[0.0, 0.0, 0.0]] * 3


@pytest.mark.slow
def test_a_still_thick_slice_sagittal_study_is_not_moved():
    """Sagittal, 0.96 x 0.96 x 4.8 mm voxels, phases that did not move: the sampled optimiser
    still settles 0.8 mm off in-plane, where the whole image aligns worse than at no shift;
    the estimates are discarded and the study kept as it is."""
    ph = sites.make_site_phantom("sagittal-uni", seed=8353, longest=160, motion_vox=(0.0, 0.0), n_post=3)
    study = ph.study
    corrected, info = motion.correct(study)
    assert corrected is study and info["corrected"] == [] and info["not_better"] == [1, 2, 3]
    assert np.abs(info["discarded_mm"]).max() == pytest.approx(0.804, abs=0.1)
    for k, shift in zip(info["not_better"], info["discarded_mm"]):
        assert motion.alignment_cost(study.pre, study.phases[k], shift) > \
            motion.alignment_cost(study.pre, study.phases[k], np.zeros(3))


def test_a_displacement_counts_slices_at_most_three_pixels_thick():
    """An axis counts its own voxels, a voxel side taken at most three times the finest: across 4.84 mm
    sagittal slices of 0.96 mm pixels a third of a slice (1.6 mm) is 0.56 steps and is realigned, a quarter
    (1.2 mm) is not; 5.93 mm slices of 2.16 mm pixels (2.7 pixels) count their own thickness."""
    image = sitk.Image(160, 160, 31, sitk.sitkFloat32)
    image.SetSpacing((0.96, 0.96, 4.84))
    image.SetDirection((0, 0, 1, 1, 0, 0, 0, 1, 0))  # sagittal: slices along left-right (LPS x)
    np.testing.assert_allclose(motion.voxel_steps_mm(image), [0.96, 0.96, 2.88])
    assert motion.displacement_vox([0, 0, 0, 1.6, 0, 0], image) == pytest.approx(0.556, abs=1e-3)
    assert motion.displacement_vox([0, 0, 0, 1.2, 0, 0], image) == pytest.approx(0.417, abs=1e-3)
    assert motion.displacement_vox([0, 0, 0, 0, 0.96, 0], image) == pytest.approx(1.0)  # in-plane: voxels
    axial = sitk.Image(160, 80, 27, sitk.sitkFloat32)
    axial.SetSpacing((2.16, 2.16, 5.93))
    np.testing.assert_allclose(motion.voxel_steps_mm(axial), [2.16, 2.16, 5.93])
    assert motion.displacement_vox([0, 0, 0, 0, 0, 2.0], axial) == pytest.approx(0.337, abs=1e-3)


@pytest.mark.slow
def test_a_third_of_a_slice_across_sagittal_slices_is_realigned():
    """Sagittal-uni 8354 (no cancer; 0.96 x 0.96 x 4.84 mm voxels): phases 2, 3 and 6 moved 0.25-0.30 of a
    slice across the slices (estimated 0.30-0.36). Counted in slices (under half of one) they were left, and
    the misregistered edge of a vessel read washout: a 147-voxel false mask. Counted in steps of three pixels
    (:func:`motion.voxel_steps_mm`) they are realigned and the study comes out empty (the estimate of phase 5
    aligns the whole image worse than none and is dropped)."""
    ph = sites.make_site_phantom("sagittal-uni", seed=8354, longest=160)
    result = inference.segment(ph.study, "kinetic")
    info = result.extra["motion_correction"]
    assert info["corrected"] == [2, 3, 6] and info["not_better"] == [5]
    rendered = np.array(ph.study.metadata["motion_shifts_vox_zyx"])[[2, 3, 6], 0]  # across the slices
    np.testing.assert_allclose(np.array(info["shifts_vox"])[[2, 3, 6], 2], rendered, atol=0.07)  # measured 0.058
    assert not (result.tumor_array() > 0).any()


def test_kinetic_recovers_the_tumor_motion_hid(moved):
    motion.clear()  # the estimates of the tests above are remembered: this run's stage events are the registration's
    truth = moved.tumor_array() > 0
    off = inference.segment(moved.study, "kinetic", options={"motion_correction": False})
    events = []
    on = inference.segment(moved.study, "kinetic", progress=lambda stage, fraction, message="": events.append(
        (stage, fraction, message)))
    assert metrics.dice(off.tumor_array() > 0, truth) < 0.2   # measured 0.132
    assert metrics.dice(on.tumor_array() > 0, truth) > 0.9   # measured 0.933
    assert on.extra["motion_correction"]["corrected"] == [1, 2, 3]
    assert any("realigned" in w for w in on.warnings) and "motion_correction" not in off.extra
    # the registration is a stage of its own: reported first, one event per phase, and timed
    assert [e[:2] for e in events[:4]] == [("motion", 0.0), ("motion", 1 / 3), ("motion", 2 / 3), ("motion", 1.0)]
    assert events[3][2] == "phase(s) [1, 2, 3] realigned" and events[4][0] == "breast"
    assert list(on.seconds)[0] == "motion" and on.seconds["motion"] > 0 and "motion" not in off.seconds


def test_a_rerun_on_the_same_study_reuses_the_estimates(moved, monkeypatch):
    """The registrations run once per study: the same arrays, grid, threshold and estimator reuse
    them (the phases are resampled again, identically); one changed voxel, another threshold or
    :func:`inference.clear_cache` estimate afresh."""
    motion.clear()
    calls = []
    real = motion.estimate_motion
    monkeypatch.setattr(motion, "estimate_motion", lambda fixed, moving, seed=7: calls.append(1) or real(fixed, moving))
    first, info = motion.correct(moved.study)
    events = []
    again, info_again = motion.correct(moved.study, progress=lambda *event: events.append(event))
    assert len(calls) == 3 and info["remembered"] is False and info_again["remembered"] is True
    assert {**info, "remembered": True} == info_again and info["corrected"] == [1, 2, 3]
    assert events == [("motion", 1.0, "phase(s) [1, 2, 3] realigned (estimates remembered from an earlier run)")]
    for a, b in zip(first.phases, again.phases):
        assert np.array_equal(sitk.GetArrayViewFromImage(a), sitk.GetArrayViewFromImage(b))
    arrays = moved.study.arrays()
    arrays[2][5, 40, 40] += 1.0
    study = moved.study
    changed = DCEStudy.from_arrays(arrays, spacing=study.spacing, origin=study.origin, direction=study.direction,
                                   times=study.times)
    assert motion.correct(changed)[1]["remembered"] is False and len(calls) == 6
    assert motion.correct(study, min_shift_vox=0.8)[1]["remembered"] is False and len(calls) == 9
    assert len(motion._ESTIMATES) == 3
    inference.clear_cache()
    assert len(motion._ESTIMATES) == 0


def test_zhang2023_family_runs_the_authors_pipeline_without_correction_unless_asked(moved):
    assert motion.apply(moved.study, {}, "zhang2023") == (moved.study, None)
    corrected, info = motion.apply(moved.study, {"motion_correction": True}, "zhang2023")
    assert info["corrected"] == [1, 2, 3] and corrected is not moved.study
