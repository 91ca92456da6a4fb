"""Arguments and paths checked before any model runs; one exit-code rule for segment, batch and demo."""

from __future__ import annotations

import errno
import math
import os

import pytest

from BreastDCESegLib import batch, cli, outputs, preflight, synth
from BreastDCESegLib.io.files import write_study_phases

SIZE = ["--size", "40", "40", "12"]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("cohort")
    synth.write_mama_mia(synth.make_cohort(2, first_seed=400, size=(40, 40, 12), n_post=2, p_no_lesion=0.0), root)
    return root


def _no_model_ran(monkeypatch):
    """Make any model run fail the test: the checks must stop the command first."""
    from BreastDCESegLib import inference, runner

    def boom(*a, **k):
        raise AssertionError("a model ran")

    monkeypatch.setattr(inference, "segment", boom)
    monkeypatch.setattr(runner, "run_segmentation", boom)


@pytest.mark.slow
def test_bad_arguments_stop_before_any_model_with_exit_2(cohort, tmp_path, capsys, monkeypatch):
    _no_model_ran(monkeypatch)
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    seg = ["segment", "--input", str(cohort), "--model", "kinetic"]
    cases = [
        (seg + ["--output", str(tmp_path / "o"), "--device", "banana"], "is not a device"),
        (seg + ["--output", str(a_file)], "is a file, not a folder"),
        (seg + ["--output", str(a_file / "sub")], "not writable"),
        (["segment", "--input", str(tmp_path / "absent"), "--output", str(tmp_path / "o"), "--model", "kinetic"],
         "does not exist"),
        (seg + ["--output", str(tmp_path / "o"), "--model", "no-such-model"], "Unknown model"),
        (["demo", "--output", str(a_file), "--model", "kinetic", *SIZE], "is a file"),
        (["demo", "--output", str(tmp_path / "d"), "--device", "cuda:x", "--model", "kinetic", *SIZE],
         "is not a device"),
    ]
    try:
        import torch

        if not torch.cuda.is_available():
            cases.append((seg + ["--output", str(tmp_path / "o"), "--device", "cuda"], "CUDA is not available"))
    except ImportError:
        cases.append((seg + ["--output", str(tmp_path / "o"), "--device", "cuda"], "needs PyTorch"))
    for argv, message in cases:
        assert cli.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and "Traceback" not in err, (argv, err)
    assert not (tmp_path / "o").exists() and not (tmp_path / "d").exists()  # no output folder made in vain
    for bad in ("0", "-5", "nan", "inf", "soon"):
        assert batch.main(["--input", str(cohort), "--output", str(tmp_path / "b"), "--timeout", bad]) == 2
        assert "seconds" in capsys.readouterr().err
    assert batch.main(["--input", str(cohort), "--output", str(tmp_path / "b"), "--device", "banana"]) == 2
    assert not (tmp_path / "b").exists() or not list((tmp_path / "b").glob("*/"))
    assert preflight.positive_seconds("2.5") == 2.5 and math.isfinite(preflight.positive_seconds("1e3"))


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_folder(cohort, tmp_path, capsys):
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o500)
    try:
        assert cli.main(["segment", "--input", str(cohort), "--output", str(out), "--model", "kinetic"]) == 2
        assert "not writable" in capsys.readouterr().err
    finally:
        out.chmod(0o700)


def test_existing_outputs_same_rule_in_segment_batch_and_demo(cohort, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    args = ["segment", "--input", str(cohort), "--output", str(out), "--model", "kinetic", "--quiet"]
    assert cli.main(args) == 0
    cases = outputs.complete_cases(out)
    assert len(cases) == 2
    stamps = {c: outputs.output_paths(out, c)["label"].stat().st_mtime_ns for c in cases}
    capsys.readouterr()
    _no_model_ran(monkeypatch)  # from here on, existing outputs must be recognised before any model runs
    ghost = out / outputs.STAGING_DIR / "ghost.0123.new"  # left by a run killed while staging another case
    ghost.mkdir()
    assert cli.main(args) == 0  # a re-run after everything was done: exit 0, every case skipped
    assert not ghost.exists()  # stale staging is cleaned at the start of every run
    err = capsys.readouterr().err
    assert all(f"{c}: skipped" in err for c in cases) and "--overwrite" in err
    assert batch.main(["--input", str(cohort), "--output", str(out), "--model", "kinetic"]) == 0
    err = capsys.readouterr().err
    assert all(f"{c}: skipped" in err for c in cases)
    assert {c: outputs.output_paths(out, c)["label"].stat().st_mtime_ns for c in cases} == stamps
    # a half-finished earlier run: one case's folder is gone; the re-run does only that one
    monkeypatch.undo()
    import shutil

    shutil.rmtree(out / cases[0])
    assert cli.main(args) == 0
    assert outputs.complete_cases(out) == cases
    assert outputs.output_paths(out, cases[1])["label"].stat().st_mtime_ns == stamps[cases[1]]


def test_demo_checks_its_outputs_before_running(tmp_path, capsys, monkeypatch):
    out = tmp_path / "demo"
    argv = ["demo", "--output", str(out), "--model", "kinetic", *SIZE, "--seed", "5"]
    assert cli.main(argv) == 0
    capsys.readouterr()
    _no_model_ran(monkeypatch)
    assert cli.main(argv) == 0  # the same rule as segment and batch
    second = capsys.readouterr().out
    assert "nothing was run" in second and "--overwrite" in second
    assert "generating" not in second  # stopped before even making the phantom


def test_a_failing_case_is_one_line_and_the_cohort_goes_on(cohort, tmp_path, capsys, monkeypatch):
    from BreastDCESegLib import inference

    real = inference.segment
    calls = []

    def flaky(study, *a, **k):
        calls.append(study.case_id)
        if len(calls) == 1:
            raise ZeroDivisionError("division by zero")
        return real(study, *a, **k)

    monkeypatch.setattr(inference, "segment", flaky)
    out = tmp_path / "out"
    assert cli.main(["segment", "--input", str(cohort), "--output", str(out), "--model", "kinetic", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert f"{calls[0]}: FAILED: internal error: ZeroDivisionError: division by zero" in err
    assert "Traceback" not in err
    assert outputs.complete_cases(out) == [calls[1]]  # the next case was still segmented


def test_disk_full_stops_with_one_line_and_exit_2(cohort, tmp_path, capsys):
    def full(step):
        if step == "write:segmentation":
            raise OSError(errno.ENOSPC, "No space left on device", "x.seg.nrrd")

    previous = outputs.set_fault_hook(full)
    try:
        code = cli.main(["segment", "--input", str(cohort), "--output", str(tmp_path / "o"), "--model", "kinetic",
                         "--quiet"])
    finally:
        outputs.set_fault_hook(previous)
    assert code == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and "Traceback" not in err and err.count("FAILED") == 0
    assert outputs.complete_cases(tmp_path / "o") == [] and not list((tmp_path / "o").glob("[!.]*"))


def test_five_dimensional_file_is_named_as_such(tmp_path):
    import numpy as np
    import SimpleITK as sitk

    from BreastDCESegLib.errors import BadInputError
    from BreastDCESegLib.io import read_study

    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((2, 2, 3, 4, 5), np.float32)), str(tmp_path / "five.nii.gz"))
    with pytest.raises(BadInputError, match="five.nii.gz is a 5-D image"):
        read_study(tmp_path / "five.nii.gz")


def test_study_folder_name_dot_dot_gives_a_real_case_name(tmp_path, monkeypatch):
    study = synth.make_phantom(seed=9, size=(40, 40, 12), n_post=1).study
    inner = tmp_path / "patient3" / "inner"
    inner.mkdir(parents=True)
    write_study_phases(study, tmp_path / "patient3", ext=".nii.gz", case_id="p3")
    monkeypatch.chdir(inner)
    assert [c.case_id for c in batch.discover_cases("..")] == ["patient3"]


def test_the_exit_code_rule_is_in_the_help_of_all_three(capsys):
    for command in ("segment", "demo"):
        with pytest.raises(SystemExit) as info:
            cli.main([command, "--help"])
        assert info.value.code == 0
        assert "exit codes: 0 every case ok or skipped" in " ".join(capsys.readouterr().out.split())
    assert batch.main(["--help"]) == 0
    assert "exit codes: 0 every case ok or skipped" in " ".join(capsys.readouterr().out.split())


def test_batch_turns_an_unreadable_input_into_one_line(cohort, tmp_path, capsys, monkeypatch):
    def unreadable(*a, **k):
        raise PermissionError(errno.EACCES, "Permission denied", str(cohort))

    monkeypatch.setattr(batch, "discover_cases", unreadable)
    assert batch.main(["--input", str(cohort), "--output", str(tmp_path / "o"), "--model", "kinetic"]) == 2
    err = capsys.readouterr().err
    assert err == f"error: Permission denied: {cohort}\n"


def test_train_checks_device_and_paths_first(tmp_path, capsys):
    pytest.importorskip("torch")
    for argv, message in ((["--device", "banana"], "is not a device"), (["--data", str(tmp_path / "none")], "does not exist")):
        assert cli.main(["train", "--family", "resunet", "--out", str(tmp_path / "run"), *argv]) == 2
        assert message in capsys.readouterr().err
