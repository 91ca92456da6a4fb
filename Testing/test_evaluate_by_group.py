"""``breastdceseg evaluate --by ATTRIBUTE``: the scores per group of cases (a MAMA-MIA dataset, site,
scanner maker, field strength...), the attributes read from the release's clinical table and its
``patient_info_files``, so that a cohort's figures can be read per site as the leave-one-site-out
tables are."""

from __future__ import annotations

import csv
import json

import pytest
import SimpleITK as sitk

from BreastDCESegLib import cli
from BreastDCESegLib.evaluation import by_group
from BreastDCESegLib.io import mamamia
from test_reliability_evaluate import _label, _rows  # a 6 x 12 x 14-voxel box label; a CSV's rows

@pytest.fixture()
def release(tmp_path):
    """A MAMA-MIA root: four expert labels, the clinical table (as CSV) for three of the cases, the
    patient information of the fourth; predictions: DUKE_001 exact, DUKE_002 the half box (Dice 2/3),
    ISPY2_100 none, NACT_07 exact."""
    root, pred = tmp_path / "MAMA-MIA", tmp_path / "pred"
    (root / "segmentations" / "expert").mkdir(parents=True)
    pred.mkdir()
    for case in ("DUKE_001", "DUKE_002", "ISPY2_100", "NACT_07"):
        sitk.WriteImage(_label(), str(root / "segmentations" / "expert" / f"{case.lower()}.nii.gz"))
    for case in ("DUKE_001", "NACT_07"):
        sitk.WriteImage(_label(), str(pred / f"{case.lower()}.nii.gz"))
    sitk.WriteImage(_label(box=(slice(4, 10), slice(10, 22), slice(12, 19))), str(pred / "duke_002.nii.gz"))
    with open(root / "clinical_and_imaging_info.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["patient_id", "dataset", "manufacturer", "field_strength", "acquisition_times"])
        w.writerow(["DUKE_001", "DUKE", "SIEMENS", "1.5", "[0, 97, 194]"])
        w.writerow(["DUKE_002", "DUKE", "GE", "3.0", "[0, 90, 180]"])
        w.writerow(["ISPY2_100", "ISPY2", "", "3", "[0, 150, 300]"])  # no maker in the table: the JSON's
    (root / "patient_info_files").mkdir()
    info = {"patient_id": "NACT_07", "primary_lesion": {"breast_coordinates": {"x_min": 1, "x_max": 15}},
            "imaging_data": {"dataset": "NACT", "scanner_manufacturer": "GE", "field_strength": 1.5,
                             "bilateral": True}}
    (root / "patient_info_files" / "nact_07.json").write_text(json.dumps(info))
    (root / "patient_info_files" / "ispy2_100.json").write_text(json.dumps(
        {"imaging_data": {"scanner_manufacturer": "Philips", "field_strength": 1.5}}))
    return root, pred


def test_attributes_come_from_the_table_then_the_patient_information(release):
    root, _ = release
    assert mamamia.case_attributes(root, "duke_002") == {
        "patient_id": "DUKE_002", "dataset": "DUKE", "manufacturer": "GE", "field_strength": "3",
        "acquisition_times": "[0, 90, 180]"}
    ispy = mamamia.case_attributes(root, "ISPY2_100")
    assert (ispy["manufacturer"], ispy["field_strength"]) == ("Philips", "3")  # the table's 3 T wins over the JSON
    nact = mamamia.case_attributes(root, "NACT_07")  # not in the table
    assert {k: nact[k] for k in ("dataset", "manufacturer", "field_strength", "bilateral")} == {
        "dataset": "NACT", "manufacturer": "GE", "field_strength": "1.5", "bilateral": "1"}
    assert mamamia.case_attributes(root, "ISPY1_9") == {"dataset": "ISPY1"}  # nowhere: the id's prefix


def test_evaluate_by_dataset_and_by_maker_writes_one_row_per_group(release, capsys):
    root, pred = release
    argv = ["evaluate", "--truth", str(root), "--pred", str(pred), "--by", "dataset", "--by", "Manufacturer"]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    by_dataset = {r["group"]: r for r in _rows(pred / "evaluation_by_dataset.csv")}
    assert list(by_dataset) == ["DUKE", "ISPY2", "NACT"]
    assert float(by_dataset["DUKE"]["mean_dice"]) == pytest.approx((1.0 + 2 / 3) / 2, abs=1e-4)
    assert float(by_dataset["DUKE"]["median_dice"]) == pytest.approx(0.8333, abs=1e-4)
    assert (by_dataset["ISPY2"]["scored"], by_dataset["ISPY2"]["missing"], float(by_dataset["ISPY2"]["mean_dice"])) \
        == ("1", "1", 0.0)
    assert by_dataset["ISPY2"]["mean_hd95_mm"] == ""  # no ok row: no distance
    assert float(by_dataset["NACT"]["mean_dice"]) == 1.0 and float(by_dataset["NACT"]["mean_hd95_mm"]) == 0.0
    # half the box along x: 7 of 14 columns, 0.8 mm voxels; HD95 of the truth's far half
    assert float(by_dataset["DUKE"]["mean_hd95_mm"]) == pytest.approx(float(
        _rows(pred / "evaluation.csv")[1]["hd95_mm"]) / 2, abs=0.01)
    by_maker = {r["group"]: (int(r["cases"]), round(float(r["mean_dice"]), 4))
                for r in _rows(pred / "evaluation_by_manufacturer.csv")}
    assert by_maker == {"GE": (2, round((2 / 3 + 1.0) / 2, 4)), "Philips": (1, 0.0), "SIEMENS": (1, 1.0)}
    assert "by dataset (table:" in out and "  DUKE: 2 case(s), mean Dice 0.833" in out
    assert "  ISPY2: 1 case(s), mean Dice 0.000, HD95 n/a mm (1 without a prediction)" in out


def test_an_attribute_no_case_has_fails_before_scoring(release, tmp_path, capsys):
    root, pred = release
    assert cli.main(["evaluate", "--truth", str(root / "segmentations" / "expert"), "--pred", str(pred),
                     "--by", "scanner_room"]) == 2
    err = capsys.readouterr().err
    assert "--by scanner_room: no case of" in err and "known: " in err and "manufacturer" in err
    assert not (pred / "evaluation.csv").exists()
    plain = tmp_path / "plain"  # not a MAMA-MIA root: only the case id's prefix
    plain.mkdir()
    for case in ("duke_001", "nact_07"):
        sitk.WriteImage(_label(), str(plain / f"{case}.nii.gz"))
    assert cli.main(["evaluate", "--truth", str(plain), "--pred", str(pred), "--by", "dataset",
                     "--output", str(tmp_path / "e.csv")]) == 0
    assert [r["group"] for r in _rows(tmp_path / "e_by_dataset.csv")] == ["DUKE", "NACT"]
    assert cli.main(["evaluate", "--truth", str(plain), "--pred", str(pred), "--by", "field_strength"]) == 2
    assert "(known: dataset; a MAMA-MIA root with clinical_and_imaging_info.xlsx or patient_info_files/ gives the " \
        "others)" in capsys.readouterr().err


def test_a_damaged_patient_information_file_is_named(release, capsys):
    root, pred = release
    (root / "patient_info_files" / "nact_07.json").write_text("{not json")
    assert cli.main(["evaluate", "--truth", str(root), "--pred", str(pred), "--by", "dataset"]) == 1
    assert "nact_07.json is not valid JSON" in capsys.readouterr().err
    assert not (pred / "evaluation.csv").exists()


def test_by_group_counts_errors_apart_and_names_the_cases_without_a_group():
    rows = [{"case": "a", "status": "ok", "dice": 0.8, "hd95_mm": 2.0, "sensitivity": 0.9, "precision": 0.7},
            {"case": "b", "status": "error", "error": "unreadable"},
            {"case": "c", "status": "ok", "dice": 0.6, "hd95_mm": None, "sensitivity": 0.5, "precision": None}]
    summary = by_group(rows, {"a": "x", "b": "x"})
    assert summary == [
        {"group": "unknown", "cases": 1, "scored": 1, "missing": 0, "errors": 0, "mean_dice": 0.6, "median_dice": 0.6,
         "mean_hd95_mm": None, "mean_sensitivity": 0.5, "mean_precision": None},
        {"group": "x", "cases": 2, "scored": 1, "missing": 0, "errors": 1, "mean_dice": 0.8, "median_dice": 0.8,
         "mean_hd95_mm": 2.0, "mean_sensitivity": 0.9, "mean_precision": 0.7}]
