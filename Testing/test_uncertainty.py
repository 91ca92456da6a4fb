"""Voxel uncertainty by test-time flips: high at the lesion boundary, ~0 far from it; files."""

import io
import json

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from BreastDCESegLib import inference, synth, uncertainty
from BreastDCESegLib.models.registry import load_registry
from BreastDCESegLib.results import SegmentationResult


def test_flip_tta_of_a_mirror_symmetric_predictor_has_zero_spread_and_a_shift_does_not():
    arrays = np.random.default_rng(0).random((2, 6, 8, 10)).astype(np.float32)
    same = lambda a: (a.mean(axis=0), "cpu")  # noqa: E731 - commutes with every flip
    mean, std, used = uncertainty.flip_tta(same, arrays)
    np.testing.assert_allclose(mean, arrays.mean(axis=0), atol=1e-6)
    assert float(std.max()) < 1e-6 and used == "cpu"
    shifted = lambda a: (np.roll(a.mean(axis=0), 1, axis=2), "cpu")  # noqa: E731 - not flip-equivariant
    _mean, std, _ = uncertainty.flip_tta(shifted, arrays)
    assert float(std.mean()) > 0.05


@pytest.fixture(scope="module")
def tta_result():
    registry = load_registry(include_user=False)
    if not registry.get("resunet-demo").weights_available():
        pytest.skip("resunet-demo weights are not installed")
    ph = synth.make_phantom(seed=5001, size=(64, 64, 24), p_no_lesion=0.0, lesion_diameter_mm=(20.0, 30.0),
                            n_benign=(0, 0))
    import torch

    threads = torch.get_num_threads()      # the "threads" option sets the process's count: restored for later tests
    try:
        return ph, inference.segment(ph.study, "resunet-demo", device="cpu", registry=registry,
                                     options={"tta": True, "threads": 1})
    finally:
        torch.set_num_threads(threads)


@pytest.mark.slow
def test_uncertainty_is_high_at_the_lesion_boundary_and_zero_far_from_it(tta_result):
    ph, result = tta_result
    assert result.uncertainty is not None
    for image in (result.uncertainty, result.probability):  # the study geometry
        assert image.GetSize() == ph.study.reference.GetSize()
        np.testing.assert_allclose(image.GetSpacing(), ph.study.reference.GetSpacing())
        np.testing.assert_allclose(image.GetOrigin(), ph.study.reference.GetOrigin())
    u = sitk.GetArrayFromImage(result.uncertainty)
    p = sitk.GetArrayFromImage(result.probability)
    truth = ph.tumor_array() > 0
    boundary = (p > 0.2) & (p < 0.8)
    far = ~ndimage.binary_dilation(truth, iterations=8)
    assert boundary.sum() >= 10
    assert u[boundary].mean() > 0.08                         # measured 0.151
    assert u[p > 0.9].mean() < 0.03                          # measured 0.009 inside the lesion
    assert np.percentile(u[far], 99) < 1e-3                  # measured 1.5e-5
    from BreastDCESegLib import metrics
    assert metrics.dice(result.tumor_array() > 0, truth) >= 0.90  # measured 0.953: averaging keeps the mask


@pytest.mark.slow
def test_probability_and_uncertainty_files_next_to_the_label(tta_result, tmp_path):
    from BreastDCESegLib.outputs import write_case_outputs

    ph, result = tta_result
    paths = write_case_outputs(ph.study, result, tmp_path)
    case = ph.study.case_id
    for name in (f"{case}_prob.nii.gz", f"{case}_uncertainty.nii.gz"):
        image = sitk.ReadImage(str(paths[name]))
        assert paths[name].parent == paths["label"].parent
        assert image.GetSize() == ph.study.reference.GetSize() and image.GetPixelID() == sitk.sitkFloat32
    report = json.loads(paths["report"].read_text())
    assert f"{case}_uncertainty.nii.gz" in report["outputs"].values()


def test_without_tta_no_uncertainty_files(tmp_path):
    ph = synth.make_phantom(seed=3, size=(32, 32, 12), n_post=2, p_no_lesion=0.0)
    result = inference.segment(ph.study, "kinetic")
    assert result.uncertainty is None and uncertainty.case_files("c", result) == {}


def test_worker_returns_the_uncertainty_in_its_done_outputs(tmp_path):
    from BreastDCESegLib import worker

    ph = synth.make_phantom(seed=3, size=(32, 32, 12), n_post=2, p_no_lesion=0.0)
    ref = ph.study.reference
    result = SegmentationResult(tumor=ph.tumor, probability=ph.study.image_like(np.zeros(ph.study.shape), np.float32),
                                uncertainty=ph.study.image_like(np.full(ph.study.shape, 0.25), np.float32))
    stream = io.StringIO()
    job = worker.Worker({"options": {}, "output_dir": str(tmp_path), "model": "resunet-demo", "case_id": "c"},
                        worker.EventWriter(stream))
    names = job.write(ph.study, result)
    assert names["uncertainty"] == "uncertainty.nrrd" and "other_lesions" not in names
    image = sitk.ReadImage(str(tmp_path / "uncertainty.nrrd"))
    assert image.GetSize() == ref.GetSize() and image.GetPixelID() == sitk.sitkFloat32
    assert float(sitk.GetArrayFromImage(image).max()) == pytest.approx(0.25)
    assert json.loads((tmp_path / "result.json").read_text())["outputs"]["uncertainty"] == "uncertainty.nrrd"
