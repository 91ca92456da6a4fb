"""Case outputs are all or nothing: failures and kills at every write and rename, locks, clean-up."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from BreastDCESegLib import cli, inference, outputs, synth
from BreastDCESegLib.errors import BadInputError, OutputExistsError

ROOT = Path(__file__).resolve().parents[1]
SIZE = (48, 48, 16)
STEPS_NEW = ["write:label", "write:segmentation", "write:report", "rename:publish"]
STEPS_EXCHANGE = STEPS_NEW[:3] + ["rename:exchange", "remove:old"]  # one atomic swap (Linux)
STEPS_TWO_RENAMES = STEPS_NEW[:3] + ["rename:exchange", "rename:old-aside", "rename:publish", "remove:old"]


class Injected(RuntimeError):
    pass


@pytest.fixture(scope="module")
def segmented():
    """Two phantom studies and their kinetic results (fast, small)."""
    pairs = []
    for seed in (11, 12):
        study = synth.make_phantom(seed=seed, size=SIZE, p_no_lesion=0.0).study
        study.case_id = "case1"
        pairs.append((study, inference.segment(study, "kinetic", device="cpu")))
    return pairs


def visible_state(out: Path, case: str = "case1"):
    """None (the case is absent) or its report; fails on any partial set in view."""
    names = sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) if out.exists() else []
    assert all(n == case for n in names), names  # nothing but the case folder, no loose files
    if not names:
        return None
    report = outputs.complete_report(out, case)
    assert report is not None, sorted(p.name for p in (out / case).iterdir())
    assert sorted(p.name for p in (out / case).iterdir()) == sorted(report["outputs"].values())
    return report


def label_voxels(out: Path, case: str = "case1") -> int:
    return int((sitk.GetArrayFromImage(sitk.ReadImage(str(outputs.output_paths(out, case)["label"]))) == 1).sum())


@pytest.mark.parametrize("overwrite, swap", [(False, True), (True, True), (True, False)])
def test_failure_at_every_step_leaves_no_partial_set(segmented, tmp_path, monkeypatch, overwrite, swap):
    (study_a, result_a), (study_b, result_b) = segmented
    if not swap or not sys.platform.startswith("linux"):  # where no atomic exchange exists: two renames
        monkeypatch.setattr(outputs, "exchange_paths", lambda a, b: False)
        swap = False
    steps = (STEPS_EXCHANGE if swap else STEPS_TWO_RENAMES) if overwrite else STEPS_NEW
    seen = []
    for step in steps:
        out = tmp_path / step.replace(":", "_")
        if overwrite:
            outputs.write_case_outputs(study_a, result_a, out)
        before = visible_state(out)

        def hook(name, step=step, out=out):
            seen.append(name)
            visible_state(out)  # at no moment is a partial set in view
            if name == step:
                raise Injected(name)

        previous = outputs.set_fault_hook(hook)
        try:
            with pytest.raises(Injected):
                outputs.write_case_outputs(study_b, result_b, out, overwrite=overwrite)
        finally:
            outputs.set_fault_hook(previous)
        after = visible_state(out)
        if step == "remove:old":  # the new set was already published
            assert after["tumor"] == outputs.case_report(study_b, result_b)["tumor"]
        else:
            assert after == before  # absent, or the old complete set, untouched
        staging = out / outputs.STAGING_DIR
        left = [p for p in staging.iterdir() if p.is_dir()]
        assert len(left) == (1 if step == "remove:old" else 0)  # only the replaced set, hidden, until the next run
        outputs.write_case_outputs(study_b, result_b, out, overwrite=True)  # a re-run completes the case
        assert not [p for p in staging.iterdir() if p.is_dir()]
        report = visible_state(out)
        assert report["tumor"]["volume_ml"] == pytest.approx(
            label_voxels(out) * np.prod(study_b.spacing) / 1000, rel=1e-6)
    seen.clear()  # a complete commit passes every step, in this order
    previous = outputs.set_fault_hook(seen.append)
    try:
        outputs.write_case_outputs(study_a, result_a, tmp_path / "full", overwrite=overwrite)
        if overwrite:
            outputs.write_case_outputs(study_b, result_b, tmp_path / "full", overwrite=True)
    finally:
        outputs.set_fault_hook(previous)
    assert seen[-len(steps):] == steps


DRIVER = """
import os, signal, sys
from BreastDCESegLib import cli, outputs
target = sys.argv[1]
def hook(step):
    if step == target:
        os.kill(os.getpid(), signal.SIGKILL)
outputs.set_fault_hook(hook)
sys.exit(cli.main(sys.argv[2:]))
"""


@pytest.mark.slow
def test_segment_killed_mid_commit_leaves_no_partial_set_and_rerun_completes(tmp_path):
    study_dir = tmp_path / "case1"  # the folder names the case
    from BreastDCESegLib.io.files import write_study_phases

    phantom = synth.make_phantom(seed=21, size=SIZE, p_no_lesion=0.0)
    write_study_phases(phantom.study, study_dir, ext=".nii.gz", case_id="case1")
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    # a kill while staging, while publishing a new case, at the exchange of a replacement and
    # before the old set is removed (every step, with and without exchange, is failed in-process above)
    for overwrite, steps in ((False, ["write:segmentation", "rename:publish"]),
                             (True, ["rename:exchange", "remove:old"])):
        for step in steps:
            out = tmp_path / f"out-{overwrite}-{step.replace(':', '_')}"
            args = ["segment", "--input", str(study_dir), "--output", str(out), "--model", "kinetic", "--quiet"]
            if overwrite:
                assert cli.main(args) == 0
            before = visible_state(out)
            proc = subprocess.run([sys.executable, "-c", DRIVER, step, *args] + (["--overwrite"] if overwrite else []),
                                  env=env, capture_output=True, text=True, timeout=120)
            assert proc.returncode == -signal.SIGKILL, proc.stderr
            after = visible_state(out)
            assert after == before or step == "remove:old"
            assert cli.main(args + ["--overwrite"]) == 0  # the re-run completes the case and tidies up
            assert visible_state(out) is not None
            staging = out / outputs.STAGING_DIR
            assert not [p for p in staging.iterdir() if p.is_dir()]


def test_case_ids_that_cannot_name_a_folder_are_refused(segmented, tmp_path):
    study, result = segmented[0]
    for bad in ("..", ".", ".hidden", "a/b", "a\\b", " x", "a\nb"):
        with pytest.raises(BadInputError, match="cannot name an output folder"):
            outputs.write_case_outputs(study, result, tmp_path, case_id=bad)
    with pytest.raises(BadInputError):
        outputs.check_case_id("")
    assert not list(tmp_path.iterdir()) or all(p.name.startswith(".") for p in tmp_path.iterdir())


def test_a_folder_that_is_not_a_case_is_never_replaced(segmented, tmp_path):
    study, result = segmented[0]
    mine = tmp_path / "case1"
    mine.mkdir()
    (mine / "notes.txt").write_text("my work")
    for overwrite in (False, True):
        with pytest.raises(OutputExistsError):
            outputs.write_case_outputs(study, result, tmp_path, overwrite=overwrite)
    assert (mine / "notes.txt").read_text() == "my work" and len(list(mine.iterdir())) == 1
    assert outputs.complete_cases(tmp_path) == []


def test_two_writers_of_one_case_never_mix(segmented, tmp_path):
    (study_a, result_a), (study_b, result_b) = segmented
    volumes = {outputs.case_report(s, r)["tumor"]["volume_ml"] for s, r in segmented}
    assert len(volumes) == 2  # two different results under one case id
    for overwrite in (False, True):
        out = tmp_path / f"o{overwrite}"
        errors = []

        def write(study, result):
            try:
                outputs.write_case_outputs(study, result, out, overwrite=overwrite)
            except OutputExistsError as exc:
                errors.append(exc)

        threads = [threading.Thread(target=write, args=pair) for pair in segmented]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(errors) == (0 if overwrite else 1)
        report = visible_state(out)
        assert report["tumor"]["volume_ml"] in volumes  # the label and the report come from one writer
        winner = next(s for s, r in segmented
                      if outputs.case_report(s, r)["tumor"]["volume_ml"] == report["tumor"]["volume_ml"])
        assert report["tumor"]["volume_ml"] == pytest.approx(  # (the two phantoms differ in voxel size)
            label_voxels(out) * np.prod(winner.spacing) / 1000, rel=1e-6)


def test_clean_staging_puts_back_an_old_set_and_removes_unfinished_ones(segmented, tmp_path):
    study, result = segmented[0]
    outputs.write_case_outputs(study, result, tmp_path)
    staging = tmp_path / outputs.STAGING_DIR
    os.rename(tmp_path / "case1", staging / "case1.aaaa.old")  # killed between moving aside and publishing
    (staging / "case1.bbbb.new").mkdir()
    (staging / "case1.bbbb.new" / "case1.nii.gz").write_bytes(b"half")
    assert visible_state(tmp_path) is None
    removed = outputs.clean_staging(tmp_path)
    assert [p.name for p in removed] == ["case1.bbbb.new"]
    assert visible_state(tmp_path)["tumor"] == outputs.case_report(study, result)["tumor"]
    with outputs.case_lock(tmp_path, "case1"):  # a live writer's staging is left alone
        (staging / "case1.cccc.new").mkdir()
        assert outputs.clean_staging(tmp_path) == []
    assert [p.name for p in outputs.clean_staging(tmp_path)] == ["case1.cccc.new"]


def test_a_json_document_that_fails_to_serialise_leaves_the_previous_one(tmp_path):
    """``write_json`` (benchmark results, the user registry, training checkpoints): the folder is
    created, the file replaced whole, and a failure while writing keeps the previous document."""
    import json

    from BreastDCESegLib.io.atomic import write_json

    path = tmp_path / "results" / "site_eval.json"
    assert write_json(path, {"mean_dice": 0.741}) == path
    assert path.read_text(encoding="utf-8") == '{\n  "mean_dice": 0.741\n}\n'
    with pytest.raises(TypeError):
        write_json(path, {"mean_dice": 0.8, "study": object()})
    assert json.loads(path.read_text(encoding="utf-8")) == {"mean_dice": 0.741}
    assert sorted(p.name for p in path.parent.iterdir()) == ["site_eval.json"]   # no temporary left
