"""``evaluate`` compares in physical space, counts missing predictions and never shows a traceback."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from BreastDCESegLib import cli
from BreastDCESegLib.evaluation import evaluate_folders, mean_dice, on_truth_grid
from BreastDCESegLib.errors import BadInputError

SPACING = (0.8, 0.8, 2.0)


def _label(origin=(0.0, 0.0, 0.0), box=(slice(4, 10), slice(10, 22), slice(12, 26)), shape=(16, 32, 40)):
    arr = np.zeros(shape, np.uint8)
    arr[box] = 1
    image = sitk.GetImageFromArray(arr)
    image.SetSpacing(SPACING)
    image.SetOrigin(origin)
    return image


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture()
def folders(tmp_path):
    truth, pred = tmp_path / "truth", tmp_path / "pred"
    truth.mkdir()
    pred.mkdir()
    for case in ("a", "b", "c"):
        sitk.WriteImage(_label(), str(truth / f"{case}.nii.gz"))
    return truth, pred


def test_shifted_prediction_scores_zero_not_one(folders, capsys):
    truth, pred = folders
    sitk.WriteImage(_label(), str(pred / "a.nii.gz"))                      # right place
    sitk.WriteImage(_label(origin=(20.0, 0.0, 0.0)), str(pred / "b.nii.gz"))  # same array, moved 20 mm
    moved = _label(origin=(-8.0, 0.0, 0.0), box=(slice(4, 10), slice(10, 22), slice(22, 36)))
    sitk.WriteImage(moved, str(pred / "c.nii.gz"))  # another origin, array shifted back 10 voxels: same place
    rows, notes = evaluate_folders(truth, pred)
    by_case = {r["case"]: r for r in rows}
    assert by_case["a"]["dice"] == pytest.approx(1.0) and by_case["a"]["resampled"] is False
    # 20 mm = 25 voxels along x: the 14-voxel-wide box misses itself entirely
    assert by_case["b"]["dice"] == pytest.approx(0.0) and by_case["b"]["resampled"] is True
    assert by_case["c"]["dice"] == pytest.approx(1.0) and by_case["c"]["resampled"] is True
    assert mean_dice(rows) == pytest.approx(2 / 3)
    assert cli.main(["evaluate", "--truth", str(truth), "--pred", str(pred)]) == 0
    table = _rows(pred / "evaluation.csv")
    assert [(r["case"], r["status"], round(float(r["dice"]), 3)) for r in table] == [
        ("a", "ok", 1.0), ("b", "ok", 0.0), ("c", "ok", 1.0)]
    assert "mean Dice 0.667 over 3 case(s)" in capsys.readouterr().out


def test_missing_prediction_is_a_row_counted_in_the_mean(folders, capsys):
    truth, pred = folders
    sitk.WriteImage(_label(), str(pred / "a.nii.gz"))
    sitk.WriteImage(_label(), str(pred / "b.nii.gz"))
    sitk.WriteImage(_label(), str(pred / ".tmp-123-c.nii.gz"))  # an unfinished write (hidden): never scored
    assert cli.main(["evaluate", "--truth", str(truth), "--pred", str(pred), "--output", str(pred / "e.csv")]) == 0
    captured = capsys.readouterr()
    assert "c: no prediction" in captured.err and "counted as Dice 0" in captured.err
    assert "mean Dice 0.667 over 3 case(s) (1 without a prediction, counted as 0)" in captured.out
    table = _rows(pred / "e.csv")
    assert [(r["case"], r["status"], float(r["dice"])) for r in table] == [
        ("a", "ok", 1.0), ("b", "ok", 1.0), ("c", "missing", 0.0)]


def test_case_folders_of_segment_are_read_and_staging_is_not(folders):
    truth, pred = folders
    from BreastDCESegLib.outputs import STAGING_DIR

    for case in ("a", "b"):
        (pred / case).mkdir()
        sitk.WriteImage(_label(), str(pred / case / f"{case}.nii.gz"))
        (pred / case / f"{case}.json").write_text(f'{{"outputs": {{"label": "{case}.nii.gz", "report": "{case}.json"}}}}')
    (pred / "c").mkdir()  # an unfinished folder (no report naming its files) is not a prediction
    sitk.WriteImage(_label(), str(pred / "c" / "c.nii.gz"))
    (pred / STAGING_DIR / "c.abc.new").mkdir(parents=True)
    sitk.WriteImage(_label(), str(pred / STAGING_DIR / "c.abc.new" / "c.nii.gz"))
    rows, _ = evaluate_folders(truth, pred)
    assert [(r["case"], r["status"], r["dice"]) for r in rows] == [("a", "ok", 1.0), ("b", "ok", 1.0), ("c", "missing", 0.0)]


def test_unusable_inputs_are_one_line_errors(folders, tmp_path, capsys):
    truth, pred = folders
    sitk.WriteImage(_label(), str(pred / "a.nii.gz"))
    (pred / "b.nii.gz").write_bytes(b"not an image at all" * 20)
    sitk.WriteImage(_label(origin=(900.0, 900.0, 900.0)), str(pred / "c.nii.gz"))
    assert cli.main(["evaluate", "--truth", str(truth), "--pred", str(pred)]) == 1  # some cases not scored
    err = capsys.readouterr().err
    assert "b: not scored: prediction" in err and "cannot be read" in err
    assert "c: not scored: the prediction and the truth do not overlap" in err
    assert "Traceback" not in err
    table = _rows(pred / "evaluation.csv")
    assert [(r["case"], r["status"]) for r in table] == [("a", "ok"), ("b", "error"), ("c", "error")]
    assert cli.main(["evaluate", "--truth", str(truth), "--pred", str(tmp_path / "absent")]) == 2
    assert "--pred" in capsys.readouterr().err
    with pytest.raises(BadInputError, match="do not overlap"):
        on_truth_grid(_label(origin=(900.0, 0.0, 0.0)), _label())
