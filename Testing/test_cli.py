"""The breastdceseg command end to end on small phantom cohorts (real files, real subprocess)."""

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from BreastDCESegLib import cli, synth

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--size", "96", "96", "32"]


def _run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "BreastDCESegLib.cli", *args], cwd=cwd or ROOT,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("cohort")
    assert cli.main(["phantom", "--output", str(root), "--n", "3", "--seed", "700", *SMALL, "--phases", "4"]) == 0
    return root


def test_phantom_writes_mama_mia_layout(cohort):
    cases = sorted(p.name for p in (cohort / "images").iterdir())
    assert len(cases) == 3
    for case in cases:
        phases = sorted((cohort / "images" / case).glob("*.nii.gz"))
        assert [p.name for p in phases] == [f"{case}_000{k}.nii.gz" for k in range(4)]
        assert (cohort / "segmentations" / "expert" / f"{case}.nii.gz").exists()


def test_segment_evaluate_round_trip(cohort, tmp_path):
    pred = tmp_path / "pred"
    assert cli.main(["segment", "--input", str(cohort), "--output", str(pred), "--model", "kinetic", "--quiet"]) == 0
    cases = sorted(p.name for p in (cohort / "images").iterdir())
    for case in cases:
        label = sitk.ReadImage(str(pred / case / f"{case}.nii.gz"))
        phase0 = sitk.ReadImage(str(cohort / "images" / case / f"{case}_0000.nii.gz"))
        assert label.GetSize() == phase0.GetSize()
        assert np.allclose(label.GetOrigin(), phase0.GetOrigin(), atol=1e-4)
        assert np.allclose(label.GetDirection(), phase0.GetDirection(), atol=1e-6)
        report = json.loads((pred / case / f"{case}.json").read_text())
        assert report["model"] == "kinetic"
        assert len(report["phase_times_s"]) == 4
        voxels = int((sitk.GetArrayFromImage(label) == 1).sum())
        assert report["tumor"]["volume_ml"] == pytest.approx(voxels * np.prod(label.GetSpacing()) / 1000, rel=1e-3)
        assert report["tumor"]["t_stage"] in {"T0", "T1", "T2", "T3"}
        assert (pred / case / f"{case}.seg.nrrd").exists()
    out_csv = tmp_path / "eval.csv"
    assert cli.main(["evaluate", "--truth", str(cohort / "segmentations" / "expert"), "--pred", str(pred),
                     "--output", str(out_csv)]) == 0
    rows = list(csv.DictReader(out_csv.open()))
    assert [r["case"] for r in rows] == cases
    assert [float(r["dice"]) for r in rows] == pytest.approx([0.962, 0.984, 0.942], abs=0.002)  # measured


@pytest.mark.slow
def test_segment_refuses_to_overwrite(cohort, tmp_path):
    case = sorted(p.name for p in (cohort / "images").iterdir())[0]
    study_dir = cohort / "images" / case
    assert cli.main(["segment", "--input", str(study_dir), "--output", str(tmp_path), "--model", "kinetic",
                     "--quiet"]) == 0
    label = tmp_path / case / f"{case}.nii.gz"
    before = label.stat().st_mtime_ns
    proc = _run("segment", "--input", str(study_dir), "--output", str(tmp_path), "--model", "kinetic", "--quiet")
    assert proc.returncode == 0  # complete outputs are skipped, never overwritten: the one rule of segment/batch/demo
    assert "skipped" in proc.stderr and "--overwrite" in proc.stderr
    assert label.stat().st_mtime_ns == before
    assert cli.main(["segment", "--input", str(study_dir), "--output", str(tmp_path), "--model", "kinetic",
                     "--quiet", "--overwrite"]) == 0
    assert label.stat().st_mtime_ns >= before
    assert not list(tmp_path.rglob("*.tmp*")) and not list(tmp_path.glob(".breastdceseg-staging/*.*.new"))


@pytest.fixture(scope="module")
def dicom_cohort(tmp_path_factory):
    """Two phantom studies as DICOM, one folder each with one subfolder per series, and their truth."""
    root = tmp_path_factory.mktemp("dicom_cohort")
    (root / "truth").mkdir()
    for seed in (700, 701):
        ph = synth.make_phantom(seed=seed, size=(96, 96, 32), n_post=3)
        synth.write_dicom(ph, root / "studies" / f"patient{seed}")
        sitk.WriteImage(ph.tumor, str(root / "truth" / f"patient{seed}.nii.gz"))
    return root


def _dice_table(truth: Path, pred: Path, out_csv: Path) -> dict:
    assert cli.main(["evaluate", "--truth", str(truth), "--pred", str(pred), "--output", str(out_csv)]) == 0
    return {r["case"]: float(r["dice"]) for r in csv.DictReader(out_csv.open())}


def test_segment_runs_a_folder_of_dicom_studies_case_by_case(dicom_cohort, tmp_path):
    """A folder of DICOM studies was read as one study mixing patients, and refused."""
    pred = tmp_path / "pred"
    assert cli.main(["segment", "--input", str(dicom_cohort / "studies"), "--output", str(pred), "--model", "kinetic",
                     "--quiet"]) == 0
    assert sorted(p.name for p in pred.iterdir() if p.is_dir() and not p.name.startswith(".")) == [
        "patient700", "patient701"]
    # the Dice of each study segmented in memory (0.9622, 0.9839)
    assert _dice_table(dicom_cohort / "truth", pred, tmp_path / "eval.csv") == pytest.approx(
        {"patient700": 0.962, "patient701": 0.984}, abs=0.002)


def test_segment_reads_one_dicom_study_whose_series_are_subfolders(dicom_cohort, tmp_path):
    study = dicom_cohort / "studies" / "patient701"
    assert sorted(p.name for p in study.iterdir()) == ["S003", "S004", "S005", "S006"]  # one per phase
    pred = tmp_path / "pred"
    assert cli.main(["segment", "--input", str(study), "--output", str(pred), "--model", "kinetic", "--quiet"]) == 0
    cases = [p.name for p in pred.iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert len(cases) == 1
    truth = tmp_path / "truth"
    truth.mkdir()
    shutil.copy(dicom_cohort / "truth" / "patient701.nii.gz", truth / f"{cases[0]}.nii.gz")
    assert _dice_table(truth, pred, tmp_path / "eval.csv") == pytest.approx({cases[0]: 0.984}, abs=0.002)


def test_segment_bad_input_names_the_problem(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = _run("segment", "--input", str(empty), "--output", str(tmp_path / "out"), "--model", "kinetic")
    assert proc.returncode == 1
    assert str(empty) in proc.stderr or "empty" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not [p for p in (tmp_path / "out").iterdir() if not p.name.startswith(".")]


@pytest.mark.slow
def test_demo_small_with_kinetic(tmp_path):
    out = tmp_path / "demo"
    proc = _run("demo", "--output", str(out), "--model", "kinetic", *SMALL, "--seed", "11")
    assert proc.returncode == 0, proc.stderr
    assert "Dice" in proc.stdout and "not for clinical use" in proc.stdout
    report = json.loads(next(out.glob("*/*.json")).read_text())
    assert 0.0 <= report["demo"]["against_phantom_truth"]["dice"] <= 1.0
    png = next(out.glob("*/*_overlay.png"))
    assert report["outputs"][png.name] == png.name  # committed with the case's other files
    from PIL import Image

    import numpy as np
    img = np.asarray(Image.open(png).convert("RGB"))
    assert img.shape[0] == 192 + 34                  # the 96 x 96 slice at scale 2, then the caption strip
    lesion = report["tumor"]["volume_ml"] > 0 or report["demo"]["against_phantom_truth"]["volume_truth_ml"] > 0
    assert img.shape[1] == (192 + 4 + 192 if lesion else 192)   # the lesion zoomed beside the slice
    red = (img[..., 0] == 235) & (img[..., 1] == 40) & (img[..., 2] == 40)
    assert red[:192, :192].any() == (report["tumor"]["volume_ml"] > 0)   # the AI contour on the slice


def test_console_progress_lines_in_a_log_and_on_a_terminal():
    import io

    from BreastDCESegLib.console import ConsoleProgress

    def feed(progress):
        for i in range(101):
            progress("tumor", i / 100, "resunet-demo on cpu" if i == 0 else "")
        progress("tumor", 1.0, "961 tumor voxels")
        progress("postprocess", 0.0, "back to the study grid")
        progress.close()

    log = io.StringIO()
    feed(ConsoleProgress(prefix="", stream=log, tty=False))
    lines = log.getvalue().splitlines()
    assert [line.split()[1] for line in lines[:5]] == ["0%", "25%", "50%", "75%", "100%"]
    assert lines[5].endswith("961 tumor voxels") and lines[6].startswith("postprocess")
    assert len(lines) == 7
    screen = io.StringIO()
    feed(ConsoleProgress(prefix="", stream=screen, tty=True))
    text = screen.getvalue()
    assert text.count("\r") == 103 and text.count("\n") == 2     # one rewritten line per stage
    quiet = io.StringIO()
    feed(ConsoleProgress(stream=quiet, quiet=True))
    assert quiet.getvalue() == ""
