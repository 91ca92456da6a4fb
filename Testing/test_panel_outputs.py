"""The worker outputs the panel loads beside the label: the uncertainty map (option ``tta``) and the
other enhancing lesions (option ``other_lesions``); a damaged or misplaced file is refused clearly."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from BreastDCESegLib import synth
from BreastDCESegLib.runner import WorkerError, load_outputs


@pytest.fixture(scope="module")
def small():
    return synth.make_phantom(seed=3, size=(32, 32, 12), n_post=2, p_no_lesion=0.0)


def _outputs(folder, study, uncertainty=True, other=True) -> dict:
    """A done event and its files as the worker writes them (tumor, probability, uncertainty, other lesions)."""
    shape = study.shape
    tumor = np.zeros(shape, np.uint8)
    tumor[4:8, 10:16, 10:16] = 1
    files = {"label": ("tumor.nrrd", study.image_like(tumor, np.uint8)),
             "probability": ("prob.nrrd", study.image_like(tumor.astype(np.float32), np.float32))}
    if uncertainty:
        spread = np.zeros(shape, np.float32)
        spread[4:8, 9:17, 9] = 0.3
        files["uncertainty"] = ("uncertainty.nrrd", study.image_like(spread, np.float32))
    if other:
        lesion = np.zeros(shape, np.uint8)
        lesion[5:7, 22:25, 22:25] = 1
        files["other_lesions"] = ("other_lesions.nrrd", study.image_like(lesion, np.uint8))
    for name, image in files.values():
        sitk.WriteImage(image, str(folder / name))
    (folder / "result.json").write_text(json.dumps({"model": "resunet-demo", "device": "cpu"}))
    return {"event": "done", "output_dir": str(folder), "model": "resunet-demo",
            "outputs": {**{k: name for k, (name, _) in files.items()}, "result": "result.json"}}


def test_load_outputs_reads_uncertainty_and_other_lesions_on_the_study_grid(small, tmp_path):
    result = load_outputs(_outputs(tmp_path, small.study), tmp_path, small.study)
    assert result.uncertainty.GetPixelID() == sitk.sitkFloat32
    assert result.other_lesions.GetPixelID() == sitk.sitkUInt8
    for image in (result.uncertainty, result.other_lesions):
        assert image.GetSize() == small.study.size and image.GetOrigin() == small.study.origin
    assert float(sitk.GetArrayFromImage(result.uncertainty).max()) == pytest.approx(0.3)
    assert int(sitk.GetArrayFromImage(result.other_lesions).sum()) == 2 * 3 * 3
    plain = tmp_path / "plain"
    plain.mkdir()
    result = load_outputs(_outputs(plain, small.study, uncertainty=False, other=False), plain, small.study)
    assert result.uncertainty is None and result.other_lesions is None  # not asked: not listed, not loaded


def test_damaged_or_misplaced_uncertainty_is_refused(small, tmp_path):
    done = _outputs(tmp_path, small.study)
    (tmp_path / "uncertainty.nrrd").write_bytes(b"NRRD0004\ntype: float\nhalf a header")
    with pytest.raises(WorkerError, match=r"uncertainty\.nrrd in .* cannot be read \(damaged\); nothing was loaded"):
        load_outputs(done, tmp_path, small.study)
    shifted = small.study.image_like(np.zeros(small.study.shape, np.float32), np.float32)
    shifted.SetOrigin([o + 5.0 for o in shifted.GetOrigin()])
    sitk.WriteImage(shifted, str(tmp_path / "uncertainty.nrrd"))
    with pytest.raises(WorkerError, match=r"uncertainty\.nrrd in .* is not on the study grid"):
        load_outputs(done, tmp_path, small.study)
    (tmp_path / "other_lesions.nrrd").unlink()
    with pytest.raises(WorkerError, match="incomplete.*other_lesions.nrrd"):
        load_outputs(done, tmp_path, small.study)

