"""Training on a MAMA-MIA release: the release's test split never trains, datasets can be held out
(leave-one-dataset-out), validation is spread over the datasets, and the preprocessed cases are kept
on disk and memory-mapped so that memory does not grow with the cohort."""

from __future__ import annotations


import numpy as np
import pytest

from BreastDCESegLib.errors import BadInputError
from BreastDCESegLib.io import mamamia
from conftest import write_splits


def test_the_test_split_never_trains_and_validation_spans_the_datasets(mamamia_release):
    from BreastDCESegLib import training_mamamia

    plan = training_mamamia.plan(mamamia_release, val_fraction=0.25)
    assert plan.test == ["DUKE_008", "NACT_04"]
    assert not set(plan.test) & set(plan.train + plan.validation)
    assert len(plan.train) + len(plan.validation) == 14 and len(plan.validation) == 4  # round(14 / 4)
    assert {c.split("_")[0] for c in plan.validation} == {"DUKE", "ISPY1", "NACT"}  # the tail was all NACT
    assert plan.validation == ["DUKE_002", "DUKE_006", "ISPY1_1001", "NACT_02"]  # ids 1, 5, 8, 12 of 14
    assert plan.describe(mamamia_release).endswith("(10 training, 4 validation cases; 2 test-split cases not used)")


def test_a_held_out_dataset_is_left_out_of_training_and_validation(mamamia_release):
    from BreastDCESegLib import training_mamamia

    plan = training_mamamia.plan(mamamia_release, hold_out=["duke"], val_fraction=0.2)
    assert plan.datasets == ["DUKE"] and plan.held_out == [f"DUKE_{i:03d}" for i in range(1, 8)]
    assert all(not c.startswith("DUKE") for c in plan.train + plan.validation)
    assert (len(plan.train), len(plan.validation)) == (6, 1)
    assert "datasets DUKE held out (7 more cases not used)" in plan.describe(mamamia_release)
    with pytest.raises(BadInputError, match=r"dataset\(s\) SITE_X .*DUKE, ISPY1, NACT"):
        training_mamamia.plan(mamamia_release, hold_out=["SITE_X"])
    with pytest.raises(BadInputError, match="No case .* is left to train on"):
        training_mamamia.plan(mamamia_release, hold_out=["DUKE", "ISPY1", "NACT"])


def test_a_split_file_naming_a_case_twice_or_without_its_columns_is_refused(mamamia_release):
    write_splits(mamamia_release, ["duke_001", "duke_002"], ["DUKE_002"])
    with pytest.raises(BadInputError, match=r"puts 1 case\(s\) in both splits \(DUKE_002\)"):
        mamamia.read_splits(mamamia_release)
    (mamamia_release / mamamia.SPLITS_FILE).write_text("patient_id,fold\nduke_001,1\n")
    with pytest.raises(BadInputError, match="neither a train_split nor a test_split column"):
        mamamia.read_splits(mamamia_release)


def test_select_cases_by_split_and_dataset(mamamia_release):
    ids = mamamia.list_cases(mamamia_release)
    assert mamamia.select_cases(mamamia_release, ids, split="test") == ["DUKE_008", "NACT_04"]
    assert mamamia.select_cases(mamamia_release, ids, split="test", datasets=["nact"]) == ["NACT_04"]
    assert mamamia.select_cases(mamamia_release, ids, datasets=["ISPY1"]) == [f"ISPY1_{1000 + i}" for i in range(4)]
    assert len(mamamia.select_cases(mamamia_release, ids, split="train", exclude_datasets=["DUKE"])) == 7
    (mamamia_release / mamamia.SPLITS_FILE).unlink()
    with pytest.raises(BadInputError, match="train_test_splits.csv does not exist: no 'test' split"):
        mamamia.select_cases(mamamia_release, ids, split="test")


@pytest.mark.slow
def test_cases_are_written_once_and_memory_mapped(tmp_path):
    from BreastDCESegLib import synth, training_mamamia
    from BreastDCESegLib.training_data import prepare_case

    root = tmp_path / "mm"
    synth.write_mama_mia(synth.make_cohort(2, first_seed=7203, size=(48, 48, 16)), root)  # 190 and 147 voxels
    ids = mamamia.list_cases(root)
    cache = tmp_path / "run" / "cases"
    cases = training_mamamia.cases(root, ids, None, "joint_zscore", (16, 32, 32), 2, cache=cache)
    assert all(isinstance(c.arrays, np.memmap) and isinstance(c.label, np.memmap) for c in cases)
    study, truth = mamamia.read_case(root, ids[0])
    direct = prepare_case(study, truth, None, "joint_zscore", (16, 32, 32), 2)
    assert np.array_equal(np.asarray(cases[0].arrays), direct.arrays) and cases[0].arrays.shape[0] == 2
    assert np.array_equal(cases[0].foreground, direct.foreground) and len(direct.foreground) > 100
    stamps = sorted(p.stat().st_mtime_ns for p in cache.glob("*.npy"))
    assert len(stamps) == 4
    again = training_mamamia.cases(root, ids, None, "joint_zscore", (16, 32, 32), 2, cache=cache)  # a resumed run
    assert sorted(p.stat().st_mtime_ns for p in cache.glob("*.npy")) == stamps
    assert np.array_equal(np.asarray(again[1].arrays), np.asarray(cases[1].arrays))
    other = training_mamamia.cases(root, ids[:1], None, "patterns_minmax", (16, 32, 32), 2, cache=cache)
    assert len(list(cache.glob("*.npy"))) == 2  # other preprocessing: the folder rebuilt for it
    assert not np.array_equal(np.asarray(other[0].arrays), np.asarray(cases[0].arrays))


@pytest.mark.slow
def test_a_leave_one_dataset_out_run_trains_on_the_other_datasets(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("monai")
    from BreastDCESegLib import synth
    from BreastDCESegLib.training import train

    root = tmp_path / "mm"
    phantoms = synth.make_cohort(5, first_seed=7201, size=(48, 48, 16))
    for ph, cid in zip(phantoms, ["DUKE_001", "DUKE_002", "DUKE_003", "DUKE_004", "NACT_01"]):
        ph.study.case_id = cid
    synth.write_mama_mia(phantoms, root)
    write_splits(root, ["DUKE_001", "DUKE_002", "DUKE_003", "NACT_01"], ["DUKE_004"])
    entry = train("resunet", "small", str(root), tmp_path / "run", epochs=1, iterations=1, patch_size=(16, 32, 32),
                  batch_size=1, quiet=True, model_id="no-nact", hold_out=["NACT"], val_fraction=0.3)
    assert entry["training_data"].endswith("(2 training, 1 validation cases; 1 test-split cases not used; "
                                           "datasets NACT held out (1 more cases not used))")
    assert set(entry["training"]["history"][0]["val_by_site"]) == {"DUKE"}
    assert sorted(p.name for p in (tmp_path / "run" / "cases").glob("*.npy")) == [
        "DUKE_001_arrays.npy", "DUKE_001_label.npy", "DUKE_003_arrays.npy", "DUKE_003_label.npy"]
    with pytest.raises(BadInputError, match="use it with --data <MAMA-MIA root>"):
        train("resunet", "small", "phantom", tmp_path / "run2", epochs=1, hold_out=["DUKE"])
