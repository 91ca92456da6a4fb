"""Batch: concurrent runs into one folder, summary.csv, discovery, temporary job folders."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from BreastDCESegLib import batch, jobdirs, synth
from BreastDCESegLib.io.files import write_study_phases
from BreastDCESegLib.outputs import STAGING_DIR, complete_cases, complete_report
from BreastDCESegLib.summary import read_summary, update_summary

ROOT = Path(__file__).resolve().parents[1]
PHANTOM = {"size": (40, 40, 12), "n_post": 2, "p_no_lesion": 0.0}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("cohort")
    cases = synth.write_mama_mia(synth.make_cohort(3, first_seed=300, **PHANTOM), root)
    return root, sorted(cases)


@pytest.mark.slow
def test_two_concurrent_batches_into_one_folder(cohort, tmp_path):
    root, cases = cohort
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", BREASTDCESEG_JOBS=str(tmp_path / "jobs"))
    command = [sys.executable, "-m", "BreastDCESegLib.batch", "--input", str(root), "--output", str(out),
               "--model", "kinetic"]
    procs = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [r[1][-2000:] for r in results]
    assert complete_cases(out) == cases
    rows = read_summary(out / "summary.csv")
    assert sorted(r["case"] for r in rows) == cases  # one row per case, none lost
    assert {r["status"] for r in rows} <= {"ok", "skipped"} and all(r["status"] == "ok" for r in rows)
    for row in rows:  # every row's numbers are those of the case's report
        report = complete_report(out, row["case"])
        assert float(row["volume_ml"]) == pytest.approx(report["tumor"]["volume_ml"], abs=1e-3)
    done = sum(err.count(": ok (") for _, err in results)
    assert done == len(cases)  # each case segmented once, by one of the two batches
    assert not [p for p in (out / STAGING_DIR).iterdir() if p.is_dir()]
    assert not list(out.glob(".*tmp"))
    jobs = tmp_path / "jobs"  # the workers' job folders lived under the known parent, and are gone
    assert jobs.is_dir() and not list(jobs.iterdir())


def test_summary_cells_are_plain_text_and_rows_merge(tmp_path):
    trace = ("The worker ended without a result (exit code 1). Last lines of its error output:\n"
             "Traceback (most recent call last):\n  File \"w.py\", line 3, in <module>\n    boom()\n"
             "ZeroDivisionError: division by zero\n\x1b[31mred text\x1b[0m")
    fields = ["case", "status", "error", "volume_ml"]
    update_summary(tmp_path, [{"case": "a", "status": "ok", "error": "", "volume_ml": 1.5}], fields)
    update_summary(tmp_path, [{"case": "b", "status": "failed", "error": trace, "volume_ml": ""}], fields)
    update_summary(tmp_path, [{"case": "a", "status": "skipped", "error": "exists", "volume_ml": 1.5}], fields)
    rows = read_summary(tmp_path / "summary.csv")
    assert [(r["case"], r["status"]) for r in rows] == [("a", "ok"), ("b", "failed")]
    assert rows[1]["error"] == ("The worker ended without a result (exit code 1). Last lines of its error output: "
                                "ZeroDivisionError: division by zero red text")
    assert not list(tmp_path.glob(".summary.csv*"))


def test_a_study_folder_with_a_subfolder_is_one_study(tmp_path):
    study = synth.make_phantom(seed=5, **PHANTOM).study
    folder = tmp_path / "patient7"
    write_study_phases(study, folder, ext=".nii.gz", case_id="p7")
    (folder / "notes").mkdir()
    (folder / "notes" / "readme.txt").write_text("report")
    cases = batch.discover_cases(folder)
    assert [(c.case_id, c.source) for c in cases] == [("patient7", str(folder))]
    assert cases[0].load().n_phases == 3
    # '.' as input names the case after the folder, never '' or '.'
    old = os.getcwd()
    os.chdir(folder)
    try:
        assert [c.case_id for c in batch.discover_cases(".")] == ["patient7"]
    finally:
        os.chdir(old)


def test_the_series_subfolders_of_one_dicom_study_are_one_case(tmp_path):
    """A PACS export (one subfolder per series) was split into one failing case per series."""
    export = tmp_path / "export"
    for seed in (5, 6):
        synth.write_dicom(synth.make_phantom(seed=seed, **PHANTOM), export / f"patient{seed}")
    study = export / "patient5"
    assert sorted(p.name for p in study.iterdir()) == ["S003", "S004", "S005"]
    cases = batch.discover_cases(study)
    assert [(c.case_id, c.source) for c in cases] == [("patient5", str(study))]
    assert cases[0].load().n_phases == 3
    # two studies (two StudyInstanceUIDs): a cohort, one case per study folder; with one left, a cohort of one
    assert [(c.case_id, c.source) for c in batch.discover_cases(export)] == [
        ("patient5", str(study)), ("patient6", str(export / "patient6"))]
    assert [c.case_id for c in batch.discover_cases(export, exclude=export / "patient6")] == ["patient5"]


def test_job_folders_removed_on_exit_signal_and_when_stale(tmp_path, monkeypatch):
    parent = tmp_path / "jobs"
    monkeypatch.setenv("BREASTDCESEG_JOBS", str(parent))
    with jobdirs.job_dir("t") as folder:
        (folder / "phase_0000.nrrd").write_bytes(b"x")
        assert folder.parent == parent and jobdirs.read_owner(folder)["pid"] == os.getpid()
    assert not folder.exists() and not list(parent.iterdir())
    # a folder whose owner died (a killed run) is removed by the next run; a live owner's stays
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = parent / f"worker-{dead.stdout.strip()}-abc"
    stale.mkdir()
    (parent / (stale.name + jobdirs.OWNER_SUFFIX)).write_text(json.dumps({"pid": int(dead.stdout), "created": 0}))
    live = jobdirs.create_job_dir("live", parent=tmp_path / "other")
    assert jobdirs.prune(parent) == [stale] and not stale.exists()
    assert jobdirs.prune(live.parent) == [] and live.exists()
    assert jobdirs.prune(live.parent, older_than_s=0.0, include_own=True) == [live]
    # SIGTERM: the folders of the signalled process go with it
    code = ("import sys, time; from BreastDCESegLib import jobdirs; jobdirs.install_signal_cleanup();"
            "f = jobdirs.create_job_dir('sig'); print(f, flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)))
    folder = Path(proc.stdout.readline().strip())
    assert folder.is_dir()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    assert not folder.exists() and not Path(str(folder) + jobdirs.OWNER_SUFFIX).exists()


def test_output_folder_inside_the_input_is_not_a_case(tmp_path):
    studies = tmp_path / "studies"
    for name in ("s1", "pred/s0"):  # pred/ holds an earlier run's case folder
        write_study_phases(synth.make_phantom(seed=8, **PHANTOM).study, studies / name, ext=".nii.gz", case_id="x")
    assert [c.case_id for c in batch.discover_cases(studies)] == ["pred", "s1"]
    assert [c.case_id for c in batch.discover_cases(studies, exclude=studies / "pred")] == ["s1"]


def test_folders_left_by_earlier_versions_are_pruned(tmp_path):
    def folder(name, request=True, age=7200.0):
        path = tmp_path / name
        path.mkdir()
        (path / "phase_0000.nrrd").write_bytes(b"x")
        if request:
            (path / "request.json").write_text("{}")
        os.utime(path, (time.time() - age, time.time() - age))
        return path

    old = folder("breastdceseg-ab12cd_3")
    panel = folder("BreastDCESeg-zz99yy88")
    recent = folder("breastdceseg-qq11ww22", age=10.0)            # may belong to a run of now
    foreign = folder("breastdceseg-x1y2z3w4", request=False)        # not a job folder
    live_kind = folder("breastdceseg-remote-abcdefgh")              # not what mkdtemp(prefix) made
    assert sorted(jobdirs.prune_legacy(tmp_path)) == sorted([old, panel])
    assert recent.exists() and foreign.exists() and live_kind.exists()
