"""A study shifted below zero (z-scored, as MAMA-MIA recommends before its nnU-Net) is measured from its air
again (``signal_zero``) before any model runs: the kinetic method, which reads percent enhancement, gives the
mask it gives on the magnitude images."""

import numpy as np
import pytest
import SimpleITK as sitk

from BreastDCESegLib import inference, metrics, signal_zero, synth
from BreastDCESegLib.study import DCEStudy


def affine_study(study: DCEStudy, scale: float, shift: float = 0.0) -> DCEStudy:
    """``study`` with every phase's signal mapped to ``signal * scale + shift`` (float32): another vendor gain,
    a 0-1 float export, a z-score (also used by ``test_kinetic.py``)."""
    images = []
    for image in study.phases:
        out = sitk.GetImageFromArray((sitk.GetArrayFromImage(image) * scale + shift).astype(np.float32))
        out.CopyInformation(image)
        images.append(out)
    return DCEStudy.from_images(images, times=study.times, metadata=dict(study.metadata), case_id=study.case_id)


def _z_scored(study: DCEStudy) -> tuple[DCEStudy, float]:
    """(``study`` z-scored with the mean and SD of all its phases, where its zero went: -mean / SD)."""
    values = np.concatenate([study.array(i).ravel() for i in range(study.n_phases)])
    mean, sd = float(values.mean()), float(values.std())
    return affine_study(study, 1.0 / sd, -mean / sd), -mean / sd


@pytest.fixture(scope="module")
def phantom():
    return synth.make_phantom(seed=101, size=(96, 96, 32), p_no_lesion=0.0, lesion_diameter_mm=(20.0, 35.0),
                              orientation="axial", n_post=3)


def test_a_magnitude_study_is_left_as_it_is(phantom):
    assert signal_zero.offset(phantom.study) == 0.0
    study, shift = signal_zero.from_air(phantom.study)
    assert study is phantom.study and shift == 0.0


def test_a_z_scored_study_gets_its_zero_back_at_its_air(phantom):
    z, zero = _z_scored(phantom.study)
    assert zero < -0.3 and float(np.mean(z.array(0) < 0)) > 0.5
    shift = signal_zero.offset(z)
    assert shift == pytest.approx(-zero, abs=0.01)  # the air's 0.1th percentile: within 0.01 SD of the zero
    shifted, applied = signal_zero.from_air(z)
    assert applied == shift
    for k in range(z.n_phases):  # every phase shifted by the same amount, on the same grid
        assert np.allclose(shifted.array(k), z.array(k) + shift, atol=1e-5)
    assert shifted.phases[0].GetOrigin() == z.phases[0].GetOrigin() and shifted.times == z.times


def test_the_kinetic_method_gives_the_same_mask_on_the_z_scored_study(phantom, monkeypatch):
    truth = phantom.tumor_array() > 0
    raw = inference.segment(phantom.study, "kinetic", device="cpu")
    z, _zero = _z_scored(phantom.study)
    result = inference.segment(z, "kinetic", device="cpu")
    assert "signal_offset" not in raw.extra and result.extra["signal_offset"] > 0.3
    assert any("reads below zero" in w for w in result.warnings)
    d_raw = metrics.dice(raw.tumor_array() > 0, truth)
    d_z = metrics.dice(result.tumor_array() > 0, truth)
    assert d_raw == pytest.approx(0.963, abs=0.01)
    assert d_z == pytest.approx(d_raw, abs=0.01)
    monkeypatch.setattr(signal_zero, "from_air", lambda study: (study, 0.0))  # read as it comes: below zero
    unshifted = metrics.dice(inference.segment(z, "kinetic", device="cpu").tumor_array() > 0, truth)
    print(f"Dice raw {d_raw:.3f}, z-scored {d_z:.3f}, z-scored read as it comes {unshifted:.3f}")
    assert unshifted < 0.55  # measured 0.451
