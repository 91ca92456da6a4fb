"""``--breast-box``: the tumor kept within the MAMA-MIA release's breast box (``primary_lesion.breast_coordinates``
of ``patient_info_files/<case>.json``; its x is the first axis of the SimpleITK array), what lies outside
removed and reported, a kept lesion outside listed as another lesion; a damaged or misfitting box refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from BreastDCESegLib import breast_box, cli, synth
from BreastDCESegLib.errors import BadInputError
from BreastDCESegLib.results import SegmentationResult
from BreastDCESegLib.study import DCEStudy

BOX = {"x_min": 2, "x_max": 10, "y_min": 0, "y_max": 20, "z_min": 0, "z_max": 15}


def _write_info(root, case_id: str, box) -> None:
    folder = root / "patient_info_files"
    folder.mkdir(parents=True, exist_ok=True)
    info = {"patient_id": case_id, "primary_lesion": {"breast_coordinates": box} if box else {}}
    (folder / f"{case_id.lower()}.json").write_text(json.dumps(info))


def _image(array: np.ndarray) -> sitk.Image:
    image = sitk.GetImageFromArray(array.astype(np.uint8))
    image.SetSpacing((1.0, 1.0, 2.0))
    return image


def test_the_coordinates_are_read_and_checked():
    assert breast_box.coordinates({"primary_lesion": {"breast_coordinates": {**BOX, "x_max": 10.0}}}, "f") == BOX
    assert breast_box.coordinates({"primary_lesion": {}}, "f") is None and breast_box.coordinates({}, "f") is None
    with pytest.raises(BadInputError, match="f: primary_lesion.breast_coordinates lacks z_min, z_max"):
        breast_box.coordinates({"primary_lesion": {"breast_coordinates": {"x_min": 1, "x_max": 2, "y_min": 0,
                                                                          "y_max": 3}}}, "f")
    with pytest.raises(BadInputError, match="whole voxel indices"):
        breast_box.coordinates({"primary_lesion": {"breast_coordinates": {**BOX, "y_max": 3.5}}}, "f")
    with pytest.raises(BadInputError, match="x_min 10 to x_max 2 is not a range"):
        breast_box.coordinates({"primary_lesion": {"breast_coordinates": {**BOX, "x_min": 10, "x_max": 2}}}, "f")


def test_the_tumor_outside_the_box_is_removed_and_listed(tmp_path):
    """Two blobs on a (12, 20, 30) array; the box (array axes 0-2: x 2-10, y 0-20, z 0-15) holds the first:
    the second's 48 voxels (2 mm slices: 0.096 mL) leave the tumor for the other lesions, its row too."""
    tumor = np.zeros((12, 20, 30), bool)
    tumor[4:8, 5:9, 3:7] = True      # 64 voxels inside
    tumor[4:7, 5:9, 20:24] = True    # 48 voxels outside (z 20-24)
    image = _image(tumor)
    study = DCEStudy.from_arrays([np.zeros(tumor.shape, np.float32)] * 2, spacing=(1.0, 1.0, 2.0),
                                 case_id="DUKE_001")
    study.metadata["mamamia_root"] = str(tmp_path)
    _write_info(tmp_path, "DUKE_001", BOX)
    rows = [{"index": 1, "decision": "tumor", "centroid_lps_mm": list(image.TransformIndexToPhysicalPoint((4, 6, 5)))},
            {"index": 2, "decision": "tumor", "centroid_lps_mm": list(image.TransformIndexToPhysicalPoint((21, 6, 5)))}]
    result = SegmentationResult(tumor=image, other_lesions=_image(np.zeros(tumor.shape)),
                                extra={"lesion_decisions": rows})
    out = breast_box.restrict(result, study)
    kept = out.tumor_array().astype(bool)
    assert kept.sum() == 64 and not kept[:, :, 15:].any() and out.tumor.GetSpacing() == (1.0, 1.0, 2.0)
    assert (sitk.GetArrayFromImage(out.other_lesions) > 0).sum() == 48
    assert out.extra["breast_box"] == {"coordinates": BOX, "removed_voxels": 48, "removed_ml": 0.096}
    assert [r["decision"] for r in out.extra["lesion_decisions"]] == ["tumor", "other enhancing lesion"]
    assert out.extra["lesion_decisions"][1]["excluded_because"] == breast_box.OUTSIDE
    assert out.warnings == ["48 tumor voxels (0.10 mL) outside the breast box of the patient information were "
                            "removed (--breast-box)"]
    assert result.tumor_array().sum() == 112  # the model's result is left as it was

    _write_info(tmp_path, "DUKE_001", {**BOX, "z_max": 31})
    with pytest.raises(BadInputError, match=r"duke_001.json: the breast box .* reaches past the image's array of "
                                            r"12 x 20 x 30 voxels"):
        breast_box.restrict(result, study)
    _write_info(tmp_path, "DUKE_001", None)
    assert breast_box.restrict(result, study).warnings[-1].startswith("--breast-box: the case has no")


@pytest.mark.slow
def test_segment_and_batch_keep_the_tumor_in_the_box(tmp_path, capsys):
    """A bilateral phantom in a MAMA-MIA root: the box of the breast with the cancer leaves the kinetic mask as
    it is (nothing removed, Dice 0.78); the box of the other breast leaves nothing, and the report says what went."""
    from BreastDCESegLib import batch
    from BreastDCESegLib.batch import Begun, complete_case
    from BreastDCESegLib.io.cohort import discover_cases

    root = tmp_path / "mm"
    ph = synth.make_phantom(seed=7203, size=(64, 64, 24), layout="bilateral", p_no_lesion=0.0)
    ph.study.case_id = "DUKE_001"
    synth.write_mama_mia([ph], root)
    truth = ph.tumor_array() > 0
    columns = np.flatnonzero(truth.any(axis=(0, 1)))
    side = (0, 32) if columns.max() < 32 else (32, 64)
    other = (32, 64) if side == (0, 32) else (0, 32)
    _write_info(root, "DUKE_001", {"x_min": 0, "x_max": 24, "y_min": 0, "y_max": 64, "z_min": side[0],
                                   "z_max": side[1]})
    assert cli.main(["segment", "--input", str(root), "--output", str(tmp_path / "a"), "--model", "kinetic",
                     "--quiet", "--breast-box"]) == 0
    report = json.loads((tmp_path / "a" / "DUKE_001" / "DUKE_001.json").read_text())
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "a" / "DUKE_001" / "DUKE_001.nii.gz"))) == 1
    dice = 2 * (mask & truth).sum() / (mask.sum() + truth.sum())
    assert dice == pytest.approx(0.780, abs=0.01) and report["breast_box"]["removed_voxels"] == 0

    _write_info(root, "DUKE_001", {"x_min": 0, "x_max": 24, "y_min": 0, "y_max": 64, "z_min": other[0],
                                   "z_max": other[1]})
    args = batch.build_parser().parse_args(["--input", str(root), "--output", str(tmp_path / "b"), "--device", "cpu",
                                            "--model", "kinetic", "--breast-box"])

    class Done:  # the backend's handle, with the result the worker would send
        def result(self, _on_event, _timeout):
            from BreastDCESegLib import inference
            return inference.segment(study, "kinetic")

    case = discover_cases(root)[0]
    study = case.load()
    study.case_id = case.case_id
    row = complete_case(Begun(case, study, Done()), args)
    report = json.loads((tmp_path / "b" / "DUKE_001" / "DUKE_001.json").read_text())
    assert row["status"] == "ok" and report["tumor"]["volume_ml"] == 0.0
    assert report["breast_box"]["removed_voxels"] == mask.sum() and report["breast_box"]["removed_ml"] > 0
    assert any("outside the breast box" in w for w in report["warnings"])
    assert {r["decision"] for r in report["lesions"]} == {"other enhancing lesion"}
