"""A study shifted below zero (z-scored, as MAMA-MIA recommends before its nnU-Net) is measured from its air
again (``signal_zero``) before any model runs: the kinetic method, which reads percent enhancement, gives the
mask it gives on the magnitude images."""

import numpy as np
import pytest
import SimpleITK as sitk

from BreastDCESegLib import inference, metrics, signal_zero, synth
from BreastDCESegLib.study import DCEStudy
from BreastDCESegLib.synth import exports


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


def _z_scored_by_phase(study: DCEStudy) -> tuple[DCEStudy, list[float]]:
    """(``study`` with each phase z-scored with its own mean and SD, each phase's SD over the pre-contrast's)."""
    sds = [float(study.array(k).astype(np.float64).std()) for k in range(study.n_phases)]
    return exports.exported(study, "z-scored-by-phase"), [sd / sds[0] for sd in sds]


def test_a_study_z_scored_phase_by_phase_gets_each_phases_zero_and_scale_back(phantom):
    """Each phase's zero at its own air, its scale from the air's noise (the same in every phase of
    a dynamic series): the phases' SD ratios come back; magnitude images and a study z-scored as a
    whole are left to :func:`signal_zero.from_air`."""
    z, ratios = _z_scored_by_phase(phantom.study)
    assert signal_zero.normalised_by_phase(z) == "z-score"
    assert signal_zero.normalised_by_phase(exports.exported(phantom.study, "min-max-by-phase")) == "min-max"
    assert signal_zero.normalised_by_phase(phantom.study) is None
    assert signal_zero.normalised_by_phase(_z_scored(phantom.study)[0]) is None
    assert signal_zero.normalised_by_phase(exports.exported(phantom.study, "scaled")) is None
    assert signal_zero.by_phase(phantom.study) == (phantom.study, None)
    restored, scaled = signal_zero.by_phase(z)
    assert ratios[1] == pytest.approx(1.296, abs=0.001)  # the post-contrast phases vary more: their SD hid enhancement
    np.testing.assert_allclose(scaled["gains"], ratios, rtol=0.001)  # measured within 0.0001
    assert signal_zero.offset(restored) == 0.0  # the air at zero: nothing left for from_air
    truth = phantom.tumor_array() > 0
    raw_pe = (phantom.study.array(2) - phantom.study.array(0))[truth].sum() / phantom.study.array(0)[truth].sum()
    pe = (restored.array(2) - restored.array(0))[truth].sum() / restored.array(0)[truth].sum()
    assert pe == pytest.approx(raw_pe, rel=0.03)


def test_the_kinetic_method_gives_the_same_mask_on_a_study_z_scored_phase_by_phase(phantom, monkeypatch):
    truth = phantom.tumor_array() > 0
    z, _ratios = _z_scored_by_phase(phantom.study)
    result = inference.segment(z, "kinetic", device="cpu")
    assert set(result.extra["signal_by_phase"]) == {"normalised", "offsets", "gains"}
    assert "signal_offset" not in result.extra and result.extra["signal_by_phase"]["normalised"] == "z-score"
    assert any("normalised on its own (z-scored" in w for w in result.warnings)
    assert metrics.dice(result.tumor_array() > 0, truth) == pytest.approx(0.963, abs=0.01)  # the magnitude images'
    monkeypatch.setattr(signal_zero, "by_phase", lambda study: (study, None))  # each phase's zero and scale lost
    unscaled = metrics.dice(inference.segment(z, "kinetic", device="cpu").tumor_array() > 0, truth)
    assert unscaled == pytest.approx(0.833, abs=0.02)  # the post-contrast phases' SDs 1.27-1.30 times the pre's


def test_a_study_z_scored_phase_by_phase_without_air_noise_is_refused(phantom):
    """A noiseless background (a scanner's masked air) carries no scale: refused, not read wrong."""
    images = []
    air = phantom.study.array(0) < 0.05 * np.percentile(phantom.study.array(0), 99)
    for image in phantom.study.phases:
        a = sitk.GetArrayFromImage(image).astype(np.float32)
        a[air] = 0.0
        out = sitk.GetImageFromArray(a)
        out.CopyInformation(image)
        images.append(out)
    masked = DCEStudy.from_images(images, times=phantom.study.times, case_id="case-7")
    z, _ratios = _z_scored_by_phase(masked)
    with pytest.raises(signal_zero.BadInputError, match="case-7: every phase was normalised on its own .z-scored"):
        signal_zero.by_phase(z)


def test_every_export_of_the_phantom(phantom):
    """synth.exports: each re-encoding as documented, on the same grid."""
    study = phantom.study
    pre99 = float(np.percentile(study.array(0), 99))
    assert exports.exported(study, "as-written") is study
    np.testing.assert_allclose(exports.exported(study, "scaled").array(1), study.array(1) * 1e-3, rtol=1e-6)
    np.testing.assert_allclose(exports.exported(study, "offset").array(2), study.array(2) + 0.1 * pre99, rtol=1e-6)
    joint = exports.exported(study, "z-scored")
    values = np.concatenate([joint.array(k).ravel() for k in range(joint.n_phases)]).astype(np.float64)
    assert abs(values.mean()) < 1e-4 and values.std() == pytest.approx(1.0, abs=1e-4)
    gains = [float(np.median(exports.exported(study, "phase-gain", seed=4).array(k)[study.array(k) > 0]
                             / study.array(k)[study.array(k) > 0])) for k in range(study.n_phases)]
    assert gains[0] == 1.0 and all(0.9 <= g <= 1.1 for g in gains) and len(set(np.round(gains, 6))) == 4
    assert np.array_equal(exports.exported(study, "phase-gain", seed=4).array(1),
                          exports.exported(study, "phase-gain", seed=4).array(1))  # the same seed, the same gains
    assert exports.exported(study, "z-scored-by-phase").origin == study.origin
    with pytest.raises(ValueError, match="unknown export 'dicom'"):
        exports.exported(study, "dicom")


def test_a_study_mapped_to_0_1_phase_by_phase_gets_its_scale_back(phantom):
    """Per-volume min-max: each post-contrast phase's maximum (the enhancing vessels) set its scale;
    the air's noise gives the phases' ranges back and the kinetic method the magnitude images' mask."""
    study = phantom.study
    ranges = [float(study.array(k).max() - study.array(k).min()) for k in range(study.n_phases)]
    mapped = exports.exported(study, "min-max-by-phase")
    _restored, scaled = signal_zero.by_phase(mapped)
    np.testing.assert_allclose(scaled["gains"], [r / ranges[0] for r in ranges], rtol=0.001)
    assert max(scaled["offsets"]) < 1e-6  # the minimum was the air's: the zero stays
    result = inference.segment(mapped, "kinetic", device="cpu")
    assert result.extra["signal_by_phase"]["normalised"] == "min-max"
    assert any("normalised on its own (mapped from its minimum and maximum" in w for w in result.warnings)
    truth = phantom.tumor_array() > 0
    assert metrics.dice(result.tumor_array() > 0, truth) == pytest.approx(0.963, abs=0.01)
