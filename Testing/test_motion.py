"""Motion correction between phases (motion.py): the estimated shifts equal the phantom's
rendered ones, still studies are left untouched, and the kinetic method recovers the tumor
that motion hid."""

import numpy as np
import pytest

from BreastDCESegLib import inference, metrics, motion
from BreastDCESegLib.synth import make_phantom


@pytest.fixture(scope="module")
def moved():
    return make_phantom(seed=3, size=(96, 96, 32), motion_vox=(1.5, 1.5), orientation="axial", n_post=3,
                        p_no_lesion=0.0)


def test_estimated_shifts_equal_the_rendered_motion(moved):
    corrected, info = motion.correct(moved.study)
    rendered = np.array(moved.study.metadata["motion_shifts_vox_zyx"])[:, ::-1]  # (x, y, z) voxels
    assert np.abs(np.array(info["shifts_vox"]) - rendered).max() < 0.12  # measured 0.077
    assert info["corrected"] == [1, 2, 3] and info["rejected"] == []
    assert corrected.phases[0] is moved.study.phases[0]  # the pre-contrast phase and the grid never move
    assert corrected.shape == moved.study.shape and corrected.spacing == moved.study.spacing
    # the realigned phase matches the pre-contrast anatomy better: less subtraction signal at fat edges
    before = np.abs(moved.study.subtraction(1)).mean()
    after = np.abs(corrected.subtraction(1)).mean()
    assert after < 0.85 * before  # measured 0.817


def test_still_study_is_returned_unchanged():
    ph = make_phantom(seed=5, size=(64, 64, 24), motion_vox=(0.0, 0.0), orientation="axial", n_post=2)
    corrected, info = motion.correct(ph.study)
    assert corrected is ph.study and info["corrected"] == []
    assert np.abs(np.array(info["shifts_vox"])).max() < 0.2
    assert motion.apply(ph.study, {"motion_correction": False}) == (ph.study, None)


def test_kinetic_recovers_the_tumor_motion_hid(moved):
    truth = moved.tumor_array() > 0
    off = inference.segment(moved.study, "kinetic", options={"motion_correction": False})
    on = inference.segment(moved.study, "kinetic")
    assert metrics.dice(off.tumor_array() > 0, truth) < 0.2   # measured 0.132
    assert metrics.dice(on.tumor_array() > 0, truth) > 0.85   # measured 0.884
    assert on.extra["motion_correction"]["corrected"] == [1, 2, 3]
    assert any("realigned" in w for w in on.warnings) and "motion_correction" not in off.extra


def test_zhang2023_family_runs_the_authors_pipeline_without_correction_unless_asked(moved):
    assert motion.apply(moved.study, {}, "zhang2023") == (moved.study, None)
    corrected, info = motion.apply(moved.study, {"motion_correction": True}, "zhang2023")
    assert info["corrected"] == [1, 2, 3] and corrected is not moved.study
