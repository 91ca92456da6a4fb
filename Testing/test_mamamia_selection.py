"""``--split`` and ``--dataset``: ``segment``, ``batch`` and ``evaluate`` run on the cases of one split of a
MAMA-MIA root's ``train_test_splits.csv`` and of some datasets, so that a leave-one-dataset-out run
(``train --hold-out-dataset DUKE``) is segmented and scored on the held-out dataset's test cases only."""

from __future__ import annotations

import csv

import pytest

from BreastDCESegLib import cli
from BreastDCESegLib.errors import UsageError
from BreastDCESegLib.io.cohort import discover_cases
from conftest import write_splits


def test_discover_cases_of_one_split_and_dataset(mamamia_release, tmp_path):
    assert [c.case_id for c in discover_cases(mamamia_release, split="test")] == ["DUKE_008", "NACT_04"]
    assert [c.case_id for c in discover_cases(mamamia_release, split="train", datasets=["nact"])] == [
        "NACT_01", "NACT_02", "NACT_03"]
    assert len(discover_cases(mamamia_release)) == 16
    (tmp_path / "studies" / "a").mkdir(parents=True)
    with pytest.raises(UsageError, match="select cases of a MAMA-MIA root; .* has no 'images' folder"):
        discover_cases(tmp_path / "studies", split="test")


def test_batch_runs_the_selected_cases_only(mamamia_release, tmp_path, monkeypatch):
    from BreastDCESegLib import batch

    seen = []

    def run_cases(numbered, *_args, **_kwargs):
        seen.extend(name for name, _case in numbered)
        return [], []

    monkeypatch.setattr(batch, "run_cases", run_cases)
    args = batch.build_parser().parse_args(["--input", str(mamamia_release), "--output", str(tmp_path / "out"),
                                            "--device", "cpu", "--split", "test", "--dataset", "DUKE"])
    batch.run(args)
    assert seen == ["[1/1] DUKE_008"]


@pytest.mark.slow
def test_segment_and_evaluate_the_held_out_datasets_test_cases(tmp_path, capsys):
    from BreastDCESegLib import synth

    root, pred = tmp_path / "mm", tmp_path / "pred"
    phantoms = synth.make_cohort(3, first_seed=7201, size=(64, 64, 24))
    for ph, cid in zip(phantoms, ["DUKE_001", "DUKE_002", "NACT_01"]):
        ph.study.case_id = cid
    synth.write_mama_mia(phantoms, root)
    write_splits(root, ["DUKE_001"], ["DUKE_002", "NACT_01"])
    assert cli.main(["segment", "--input", str(root), "--output", str(pred), "--model", "kinetic", "--quiet",
                     "--split", "test", "--dataset", "DUKE"]) == 0
    assert sorted(p.name for p in pred.iterdir() if not p.name.startswith(".")) == ["DUKE_002"]
    capsys.readouterr()
    assert cli.main(["evaluate", "--truth", str(root), "--pred", str(pred), "--split", "test",
                     "--dataset", "DUKE"]) == 0
    out = capsys.readouterr()
    with open(pred / "evaluation.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["case"] for r in rows] == ["DUKE_002"] and float(rows[0]["dice"]) > 0.85
    assert "without a prediction" not in out.out and "without a truth file" not in out.err
    assert cli.main(["evaluate", "--truth", str(root), "--pred", str(pred), "--split", "test"]) == 0  # NACT_01: Dice 0
    assert "NACT_01: no prediction" in capsys.readouterr().err
    assert cli.main(["evaluate", "--truth", str(root / "segmentations" / "expert"), "--pred", str(pred),
                     "--dataset", "ISPY2"]) == 1
    assert "None of the truth cases" in capsys.readouterr().err
    assert cli.main(["evaluate", "--truth", str(pred), "--pred", str(pred), "--split", "test"]) == 2
    assert "is not one (nor its segmentations/expert)" in capsys.readouterr().err
