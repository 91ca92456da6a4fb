"""Philips phases exported as separate series, each displayed on its own scale (RescaleSlope), are read
as Philips floating-point values (``io.vendorscale``): one scale for every phase, the enhancement and the
kinetic method's mask of the study as acquired."""

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset

from BreastDCESegLib import inference, metrics, synth
from BreastDCESegLib.io import vendorscale
from BreastDCESegLib.io.dicom import read_dicom_study, write_dicom_study
from test_io_dicom import all_files, edit, make_study

GAINS = [1.0, 0.8, 1.25, 0.9]  # each phase's display scale (RescaleSlope): DV = value * gain
SCALE_SLOPE = 0.25  # the private MR scale slope, the same in every phase: FP = DV / (RS * SS) = value / 0.25


def _phase(ds) -> int:
    """The written phase of a slice: its temporal position (one series), or its series ("DCE post2": 2)."""
    if "TemporalPositionIdentifier" in ds:
        return int(ds.TemporalPositionIdentifier) - 1
    return 0 if ds.SeriesDescription == "DCE pre" else int(ds.SeriesDescription.removeprefix("DCE post"))


def philips(folder, gains=GAINS, scale_slope=SCALE_SLOPE, manufacturer="Philips Medical Systems",
            creator=True, skip_phase=None):
    """Make the written series look like a Philips export: phase k (:func:`_phase`) displayed at
    ``gains[k]`` with the private scale slope ``scale_slope``."""
    def change(ds):
        k = _phase(ds)
        ds.Manufacturer = manufacturer
        ds.RescaleSlope, ds.RescaleIntercept = f"{gains[k]:.6g}", "0"
        if k == skip_phase:
            return
        if creator:
            ds.private_block(0x2005, vendorscale.PHILIPS_CREATOR, create=True).add_new(0x0E, "FL", scale_slope)
        else:
            ds.add_new(vendorscale.SCALE_SLOPE_TAG, "FL", scale_slope)
    edit(folder, change)


def test_series_on_different_display_scales_are_read_on_one_scale(tmp_path):
    study = make_study()
    folder = write_dicom_study(study, tmp_path / "dcm", layout="series-per-phase")
    assert sorted({_phase(pydicom.dcmread(p)) for p in all_files(folder)}) == [0, 1, 2, 3]
    philips(folder)
    back = read_dicom_study(folder)
    for k in range(4):  # every phase: the written value / SS, whatever its display scale
        np.testing.assert_allclose(back.array(k), study.array(k) / SCALE_SLOPE, rtol=1e-5)
    note = back.metadata["vendor_scale"]
    assert note["kind"] == "philips-fp" and note["display_scales_differed"] is True
    np.testing.assert_allclose(note["factors"], [1 / (g * SCALE_SLOPE) for g in GAINS], rtol=1e-6)
    [said] = [w for w in back.metadata["warnings"] if "Philips" in w]
    assert str(folder) in said and "1, 1.25, 0.8, 1.11" in said  # each factor over the pre-contrast's


def test_one_display_scale_is_converted_without_a_warning(tmp_path):
    study = make_study()
    folder = write_dicom_study(study, tmp_path / "dcm", layout="single-series")
    philips(folder, gains=[0.5] * 4, creator=False)  # the tag without its private creator, as some exports keep it
    back = read_dicom_study(folder)
    np.testing.assert_allclose(back.arrays(), study.arrays() / SCALE_SLOPE, rtol=1e-5)
    assert back.metadata["vendor_scale"]["display_scales_differed"] is False
    assert not back.metadata["warnings"]


@pytest.mark.parametrize("case", ["other vendor", "one phase without SS"])
def test_displayed_values_are_kept_when_the_scale_slope_is_not_every_phases(tmp_path, case):
    """Another vendor's private group 2005 means nothing; a phase without SS (an anonymiser dropped it)
    cannot be put on the others' scale: displayed values, as before, and no ``vendor_scale``."""
    study = make_study()
    folder = write_dicom_study(study, tmp_path / "dcm", layout="series-per-phase")
    if case == "other vendor":
        philips(folder, manufacturer="SIEMENS")
    else:
        philips(folder, skip_phase=2)
    back = read_dicom_study(folder)
    for k in range(4):
        np.testing.assert_allclose(back.array(k), study.array(k) * GAINS[k], rtol=1e-5)
    assert "vendor_scale" not in back.metadata


def test_scale_slope_read_with_and_without_its_vr():
    ds = Dataset()
    ds.Manufacturer = "Philips"
    ds.RescaleSlope = "2.0"
    ds.add_new(vendorscale.SCALE_SLOPE_TAG, "UN", np.float32(0.125).tobytes())  # implicit VR: raw bytes
    assert vendorscale.scale_slope(ds) == 0.125 and vendorscale.fp_factor(ds) == 4.0
    ds[vendorscale.SCALE_SLOPE_TAG].value = np.float32(0.0).tobytes()
    assert vendorscale.fp_factor(ds) is None  # not positive: no conversion


@pytest.mark.slow
def test_kinetic_mask_of_a_philips_export_is_the_acquired_studys(tmp_path, monkeypatch):
    """Post-contrast series displayed at 0.7-0.8 times the pre-contrast's scale: read as displayed, the
    enhancement is rescaled; read as FP, the kinetic method gives the mask of the study as written."""
    ph = synth.make_phantom(seed=101, size=(96, 96, 32), p_no_lesion=0.0, lesion_diameter_mm=(20.0, 35.0),
                            orientation="axial", n_post=3)
    truth = ph.tumor_array() > 0
    folder = write_dicom_study(ph.study, tmp_path / "dcm", layout="series-per-phase")
    written = read_dicom_study(folder)
    philips(folder, gains=[1.0, 0.7, 0.75, 0.8])
    fp = read_dicom_study(folder)
    expected = metrics.dice(inference.segment(written, "kinetic", device="cpu").tumor_array() > 0, truth)
    got = metrics.dice(inference.segment(fp, "kinetic", device="cpu").tumor_array() > 0, truth)
    assert expected == pytest.approx(0.963, abs=0.01) and got == pytest.approx(expected, abs=1e-3)
    monkeypatch.setattr(vendorscale, "to_fp", lambda images, _headers: (list(images), None))
    displayed = read_dicom_study(folder)  # read as displayed: each series on its own scale
    as_displayed = metrics.dice(inference.segment(displayed, "kinetic", device="cpu").tumor_array() > 0, truth)
    print(f"Dice as written {expected:.3f}, FP {got:.3f}, displayed values {as_displayed:.3f}")
    assert as_displayed < 0.05  # measured 0.000: the post-contrast series displayed at 0.7-0.8 hide the uptake


def test_enhanced_multiframe_philips_export(tmp_path):
    """The same scaling in one multi-frame file (each frame's RescaleSlope in its Pixel Value
    Transformation, the private scale slope among the converted attributes)."""
    hd = pytest.importorskip("highdicom")
    study = make_study()
    folder = write_dicom_study(study, tmp_path / "dcm", layout="single-series")
    philips(folder)
    legacy = [pydicom.dcmread(p) for p in all_files(folder)]
    out = tmp_path / "enhanced"
    out.mkdir()
    hd.legacy.LegacyConvertedEnhancedMRImage(legacy, hd.UID(), 7, hd.UID(), 1).save_as(out / "dynamic.dcm")
    back = read_dicom_study(out)
    np.testing.assert_allclose(back.arrays(), study.arrays() / SCALE_SLOPE, rtol=1e-5)
    np.testing.assert_allclose(back.metadata["vendor_scale"]["factors"], [1 / (g * SCALE_SLOPE) for g in GAINS])
