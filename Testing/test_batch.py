"""The headless batch on a real MAMA-MIA-layout phantom cohort, through real workers."""

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from BreastDCESegLib import batch, synth
from BreastDCESegLib.outputs import output_paths

ROOT = Path(__file__).resolve().parents[1]
SIZE = (64, 64, 24)
PHANTOM = {"size": SIZE, "n_post": 2, "p_no_lesion": 0.0}


def _break_case(root: Path, case: str, how: str) -> None:
    folder = root / "images" / case
    phases = sorted(folder.iterdir())
    if how == "garbage":  # a damaged post-contrast file
        phases[1].write_bytes(b"this is not a NIfTI file" * 10)
    else:  # only the pre-contrast phase left
        for p in phases[1:]:
            p.unlink()


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("mama")
    cases = synth.write_mama_mia(synth.make_cohort(3, first_seed=40, **PHANTOM), root)
    return root, sorted(cases)


@pytest.fixture(scope="module")
def mixed(cohort, tmp_path_factory):
    """A copy of the cohort with its second case broken, and one batch run over it."""
    src, cases = cohort
    root = tmp_path_factory.mktemp("mixed") / "in"
    shutil.copytree(src, root)
    _break_case(root, cases[1], "garbage")
    out = root.parent / "out"
    code = batch.main(["--input", str(root), "--output", str(out), "--model", "kinetic"])
    return root, out, cases, code


def _summary(out: Path) -> list[dict]:
    with open(out / "summary.csv", newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow
def test_bad_case_is_reported_and_batch_goes_on(mixed):
    root, out, cases, code = mixed
    assert code == 1  # a case failed; the others were processed
    rows = _summary(out)
    assert [r["case"] for r in rows] == cases
    assert [r["status"] for r in rows] == ["ok", "failed", "ok"]
    assert rows[1]["error"] and rows[1]["volume_ml"] == ""
    for row in (rows[0], rows[2]):
        assert float(row["volume_ml"]) > 0 and float(row["longest_diameter_mm"]) > 0
        assert row["t_stage"] in {"T1", "T2", "T3"} and float(row["seconds"]) > 0
    assert not (out / cases[1]).exists()


def test_outputs_per_case(mixed):
    root, out, cases, _ = mixed
    for case in (cases[0], cases[2]):
        paths = output_paths(out, case)
        label = sitk.ReadImage(str(paths["label"]))
        phase0 = sitk.ReadImage(str(root / "images" / case / f"{case}_0000.nii.gz"))
        assert label.GetSize() == phase0.GetSize()
        assert np.allclose(label.GetOrigin(), phase0.GetOrigin(), atol=1e-4)
        assert np.allclose(label.GetDirection(), phase0.GetDirection(), atol=1e-6)
        truth = sitk.GetArrayFromImage(sitk.ReadImage(str(root / "segmentations" / "expert" / f"{case}.nii.gz"))) > 0
        pred = sitk.GetArrayFromImage(label) == 1
        assert 2 * (pred & truth).sum() / (pred.sum() + truth.sum()) > 0.4
        report = json.loads(paths["report"].read_text())
        assert report["model"] == "kinetic"
        row = next(r for r in _summary(out) if r["case"] == case)
        assert float(row["volume_ml"]) == pytest.approx(report["tumor"]["volume_ml"], abs=1e-3)
        assert report["tumor"]["volume_ml"] == pytest.approx(pred.sum() * np.prod(label.GetSpacing()) / 1000, rel=1e-3)
        assert paths["segmentation"].stat().st_size > 0
    assert not list(out.rglob("*tmp*")) and not list(out.glob(".breastdceseg-staging/*.new"))


def test_rerun_does_not_overwrite(mixed, capsys):
    root, out, cases, _ = mixed
    label = output_paths(out, cases[0])["label"]
    before = label.stat().st_mtime_ns
    first = _summary(out)
    code = batch.main(["--input", str(root), "--output", str(out), "--model", "kinetic"])
    assert code == 1  # the broken case fails again
    assert label.stat().st_mtime_ns == before
    err = capsys.readouterr().err
    assert f"{cases[0]}: skipped" in err and f"{cases[2]}: skipped" in err
    rows = _summary(out)
    assert [r["status"] for r in rows] == ["ok", "failed", "ok"]  # a skip keeps the row of the run that wrote it
    assert rows[0] == first[0] and float(rows[0]["volume_ml"]) > 0
    (out / "summary.csv").unlink()  # without a row of their own, skipped cases take their report's numbers
    assert batch.main(["--input", str(root), "--output", str(out), "--model", "kinetic"]) == 1
    rows = _summary(out)
    assert [r["status"] for r in rows] == ["skipped", "failed", "skipped"]
    assert rows[0]["volume_ml"] == first[0]["volume_ml"]


def test_all_broken_exits_non_zero(cohort, tmp_path):
    src, cases = cohort
    root = tmp_path / "in"
    shutil.copytree(src, root)
    for case in cases:
        _break_case(root, case, "single-phase")
    code = batch.main(["--input", str(root), "--output", str(tmp_path / "out"), "--model", "kinetic"])
    assert code != 0
    rows = _summary(tmp_path / "out")
    assert [r["status"] for r in rows] == ["failed"] * 3
    assert all("phase" in r["error"] for r in rows)


@pytest.mark.slow
def test_script_with_separator_and_study_folders(cohort, tmp_path):
    """``python batch.py -- --input ...``: the argument style of ``Slicer --python-script``."""
    src, cases = cohort
    studies = tmp_path / "studies"  # a folder of study folders (one file per phase)
    shutil.copytree(src / "images" / cases[0], studies / "alpha")
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(ROOT / "BreastDCESegLib" / "batch.py"), "--no-splash", "--",
                           "--input", str(studies), "--output", str(out), "--model", "kinetic"],
                          capture_output=True, text=True, timeout=120, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""  # progress goes to stderr
    assert "[1/1] alpha" in proc.stderr
    rows = _summary(out)
    assert [(r["case"], r["status"]) for r in rows] == [("alpha", "ok")]
    assert {p.name for p in out.iterdir() if not p.name.startswith(".")} == {"alpha", "summary.csv"}
    assert {p.name for p in (out / "alpha").iterdir()} == {"alpha.nii.gz", "alpha.seg.nrrd", "alpha.json"}


def test_bad_arguments():
    assert batch.main(["--output", "x"]) == 2
    assert batch.arguments_after_separator(["--no-main-window", "--", "--input", "a"]) == ["--input", "a"]


@pytest.mark.slow
def test_scene_nodes_under_slicer_core(cohort, tmp_path):
    """``--scene`` under plain Python: the study volumes and the AI segmentation as MRML nodes."""
    pytest.importorskip("slicer")
    from BreastDCESegLib import mrml

    src, cases = cohort
    study_dir = src / "images" / cases[0]  # a single study folder, one file per phase
    args = batch.build_parser().parse_args(["--input", str(study_dir), "--output", str(tmp_path),
                                            "--model", "kinetic", "--scene"])
    scene = mrml.new_scene()
    rows = batch.run(args, scene)
    assert [(r["case"], r["status"]) for r in rows] == [(cases[0], "ok")]
    n_phases = len(list(study_dir.iterdir()))
    assert scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") >= n_phases
    assert scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == 1
    seg = scene.GetNthNodeByClass(0, "vtkMRMLSegmentationNode")
    in_scene = mrml.segment_array(seg, mrml.tumor_segment_id(seg))
    on_disk = sitk.GetArrayFromImage(sitk.ReadImage(str(output_paths(tmp_path, cases[0])["label"]))) == 1
    assert in_scene.shape == on_disk.shape and int(in_scene.sum()) == int(on_disk.sum()) > 0
