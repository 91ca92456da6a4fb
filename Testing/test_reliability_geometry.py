"""The phase geometry policy: misregistered phases and DICOM slice gaps are refused unless allowed."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from BreastDCESegLib import cli, synth
from BreastDCESegLib.errors import BadInputError
from BreastDCESegLib.io import read_study
from BreastDCESegLib.io.files import write_image, write_study_phases
from BreastDCESegLib.phase_geometry import compare_grids, resampling_allowed
from BreastDCESegLib.study import DCEStudy

SIZE = (48, 48, 16)


@pytest.fixture(scope="module")
def phantom():
    return synth.make_phantom(seed=31, size=SIZE, p_no_lesion=0.0)


def _moved(image: sitk.Image, shift=(0.0, 0.0, 0.0), degrees=0.0, spacing_factor=1.0) -> sitk.Image:
    out = sitk.Image(image)
    out.SetOrigin(tuple(np.array(image.GetOrigin()) + np.array(shift)))
    out.SetSpacing(tuple(np.array(image.GetSpacing()) * spacing_factor))
    if degrees:
        a = np.radians(degrees)
        rot = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
        out.SetDirection(tuple((rot @ np.array(image.GetDirection()).reshape(3, 3)).ravel()))
    return out


@pytest.mark.parametrize("change, expected", [
    ({"shift": (20.0, 0.0, 0.0)}, "centre shifted 20.0 mm"),
    ({"degrees": 17.0}, "axes rotated 17.0°"),
    ({"spacing_factor": 1.5}, "spacing"),
])
def test_misregistered_phase_refused_unless_allowed(phantom, change, expected):
    pre, post = phantom.study.phases[0], phantom.study.phases[1]
    bad = _moved(post, **change)
    with pytest.raises(BadInputError, match="not aligned with phase 0.*--allow-resample") as info:
        DCEStudy.from_images([pre, bad], sources=["pre.nii.gz", "post.nii.gz"])
    assert expected in str(info.value) and "post.nii.gz" in str(info.value)
    with resampling_allowed():
        study = DCEStudy.from_images([pre, bad], sources=["pre.nii.gz", "post.nii.gz"])
    (warning,) = study.metadata["warnings"]
    assert "allow-resample" in warning and expected in warning


def test_same_grid_passes_and_same_field_of_view_is_resampled_with_a_warning(phantom):
    pre, post = phantom.study.phases[0], phantom.study.phases[1]
    assert DCEStudy.from_images([pre, post]).metadata["warnings"] == []
    small = _moved(post, shift=(0.3, 0.0, 0.0))  # 0.3 mm: within one voxel
    assert "same field of view" in DCEStudy.from_images([pre, small]).metadata["warnings"][0]
    # half the matrix at twice the spacing over the same box: another grid, the same field of view
    coarse = sitk.Resample(post, [n // 2 for n in post.GetSize()], sitk.Transform(), sitk.sitkLinear,
                           tuple(np.array(post.GetOrigin()) + np.array(post.GetSpacing()) / 2),
                           tuple(np.array(post.GetSpacing()) * 2), post.GetDirection())
    diff = compare_grids(coarse, pre)
    assert diff.shift_voxels < 0.01 and diff.extent_voxels < 0.01 and diff.rotation_deg < 1e-6
    study = DCEStudy.from_images([pre, coarse])
    assert "same field of view" in study.metadata["warnings"][0]
    # axis order is not a rotation: a permuted grid over the same box is the same field of view
    permuted = sitk.PermuteAxes(post, [2, 0, 1])
    assert compare_grids(permuted, pre).rotation_deg == pytest.approx(0.0, abs=1e-6)
    assert compare_grids(permuted, pre).same_field_of_view


def test_segment_refuses_a_misregistered_study_then_allows_it(phantom, tmp_path, capsys):
    folder = tmp_path / "case7"
    write_study_phases(phantom.study, folder, ext=".nrrd", case_id="case7")
    write_image(_moved(phantom.study.phases[2], shift=(0.0, 0.0, 20.0)), folder / "case7_0002.nrrd", overwrite=True)
    args = ["segment", "--input", str(folder), "--output", str(tmp_path / "out"), "--model", "kinetic", "--quiet"]
    assert cli.main(args) == 1
    err = capsys.readouterr().err
    assert "case7_0002.nrrd) is not aligned" in err and "centre shifted 20.0 mm" in err and "--allow-resample" in err and "Traceback" not in err
    assert not (tmp_path / "out" / "case7").exists()
    assert cli.main(args + ["--allow-resample"]) == 0
    report = json.loads((tmp_path / "out" / "case7" / "case7.json").read_text())
    assert any("allow-resample" in w and "case7_0002.nrrd" in w for w in report["warnings"])


@pytest.mark.slow
def test_dicom_series_with_a_missing_slice(phantom, tmp_path):
    folder = synth.write_dicom(phantom, tmp_path / "dicom")
    series = sorted(p for p in folder.iterdir() if p.is_dir())
    files = sorted(series[1].iterdir())
    import pydicom

    def z_of(path):
        return float(pydicom.dcmread(path, stop_before_pixels=True).ImagePositionPatient[2])

    middle = sorted(files, key=z_of)[len(files) // 2]
    middle.unlink()  # one slice of the first post-contrast phase lost in transfer
    with pytest.raises(BadInputError, match="not evenly spaced.*missing.*--allow-resample"):
        read_study(folder)
    with resampling_allowed():
        study = read_study(folder)
    assert study.shape == phantom.study.shape
    assert any("not evenly spaced" in w for w in study.metadata["warnings"])
    original = phantom.study.array(1)
    # the refilled slice lies between its neighbours; every other slice is unchanged
    np.testing.assert_allclose(study.array(1)[:6], original[:6], atol=1.0)
    assert np.abs(study.array(1) - original).max() < np.abs(original).max()


def test_all_zero_study_is_reported(tmp_path):
    zero = np.zeros((8, 16, 16), np.float32)
    study = DCEStudy.from_arrays([zero, zero, zero])
    assert any("one constant value" in w for w in study.metadata["warnings"])
