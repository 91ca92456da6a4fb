"""The batch keeps two cases in flight with one warm worker: the order of submissions and
commits, rows in case order around skipped cases, the tumor measured once (by the batch), and
the same files as segmenting the same studies in this process."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import SimpleITK as sitk

from BreastDCESegLib import batch, batch_backend, inference, outputs, synth
from BreastDCESegLib.io import read_study
from BreastDCESegLib.warm import WarmCase
from process_state import ended

PHANTOM = {"size": (64, 64, 24), "n_post": 2, "p_no_lesion": 0.0}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    cases = sorted(synth.write_mama_mia(synth.make_cohort(3, first_seed=42, **PHANTOM), root))
    return root, cases


def _rows(out):
    with open(out / "summary.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_next_case_is_queued_before_the_previous_is_written(cohort, tmp_path, monkeypatch):
    root, cases = cohort
    log: list[tuple[str, str]] = []
    asked: list[dict] = []  # the options of each case
    worker_reports: dict[str, dict] = {}
    submit, write, result = batch_backend.WarmBackend.submit, outputs.write_case_outputs, WarmCase.result

    def logged_submit(self, study, model, device, options=None):
        log.append(("submit", study.case_id))
        asked.append(options)
        return submit(self, study, model, device, options)

    def logged_write(study, res, out_dir, case_id=None, **kw):
        paths = write(study, res, out_dir, case_id=case_id, **kw)
        log.append(("commit", case_id))
        return paths

    def kept_result(self, on_event=None, timeout=None):
        res = result(self, on_event, timeout)
        worker_reports[self.study.case_id] = res.extra["report"]
        return res

    monkeypatch.setattr(batch_backend.WarmBackend, "submit", logged_submit)
    monkeypatch.setattr(outputs, "write_case_outputs", logged_write)
    monkeypatch.setattr(WarmCase, "result", kept_result)
    out = tmp_path / "out"
    assert batch.main(["--input", str(root), "--output", str(out), "--model", "kinetic", "--device", "cpu",
                       "--tta"]) == 0
    a, b, c = cases
    assert log == [("submit", a), ("submit", b), ("commit", a), ("submit", c), ("commit", b), ("commit", c)]
    assert asked == [{"tta": True}] * 3
    rows = _rows(out)
    assert [(r["case"], r["status"]) for r in rows] == [(a, "ok"), (b, "ok"), (c, "ok")]
    assert set(worker_reports) == set(cases)
    assert not any("tumor" in r for r in worker_reports.values())  # measured once, by the batch

    for case in cases:  # the files of segmenting the same study in this process
        study = read_study(root / "images" / case, case_id=case)
        local = inference.segment(study, "kinetic", device="cpu", options={"tta": True})
        mine = outputs.write_case_outputs(study, local, tmp_path / "local", case_id=case,
                                          extra_report={"source": str(root / "images" / case)})
        theirs = outputs.output_paths(out, case)
        label = sitk.GetArrayFromImage(sitk.ReadImage(str(theirs["label"])))
        assert np.array_equal(label, sitk.GetArrayFromImage(sitk.ReadImage(str(mine["label"]))))
        assert label.sum() > 0
        report, expected = (json.loads(p.read_text()) for p in (theirs["report"], mine["report"]))
        assert report["tumor"] == expected["tumor"] and report["outputs"] == expected["outputs"]
        row = next(r for r in rows if r["case"] == case)
        assert float(row["volume_ml"]) == pytest.approx(expected["tumor"]["volume_ml"], abs=1e-3)
        assert sorted(p.name for p in theirs["label"].parent.iterdir()) == sorted(
            [f"{case}.nii.gz", f"{case}.seg.nrrd", f"{case}.json", f"{case}_prob.nii.gz", f"{case}_uncertainty.nii.gz"])
        spread = sitk.GetArrayFromImage(sitk.ReadImage(str(theirs["label"].parent / f"{case}_uncertainty.nii.gz")))
        assert np.array_equal(spread, sitk.GetArrayFromImage(local.uncertainty))  # the kinetic method's cut levels
    assert not list((out / ".breastdceseg-staging").glob("*.new"))

    # the middle case alone runs again: the skipped cases around it keep the order of the cases
    log.clear()
    (out / "summary.csv").unlink()
    outputs_b = outputs.output_paths(out, b)["label"].parent
    for p in outputs_b.iterdir():
        p.unlink()
    outputs_b.rmdir()
    assert batch.main(["--input", str(root), "--output", str(out), "--model", "kinetic", "--device", "cpu"]) == 0
    assert log == [("submit", b), ("commit", b)]
    assert [(r["case"], r["status"]) for r in _rows(out)] == [(a, "skipped"), (b, "ok"), (c, "skipped")]


def test_disk_full_stops_the_batch_and_the_queued_case_is_cancelled(cohort, tmp_path, monkeypatch):
    import errno

    root, cases = cohort
    workers = []
    submit = batch_backend.WarmBackend.submit

    def recorded_submit(self, study, model, device, options=None):
        handle = submit(self, study, model, device, options)
        workers.append(self.worker.pid)
        return handle

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(batch_backend.WarmBackend, "submit", recorded_submit)
    monkeypatch.setattr(outputs, "write_case_outputs", disk_full)
    out = tmp_path / "out"
    assert batch.main(["--input", str(root), "--output", str(out), "--model", "kinetic", "--device", "cpu"]) == 2
    a, b, c = cases
    assert [(r["case"], r["status"]) for r in _rows(out)] == [(a, "failed")]
    assert "errno 28" in _rows(out)[0]["error"]
    assert len(workers) == 2  # the second case was queued, never the third
    assert not any((out / case).exists() for case in cases)
    claim = outputs.case_claim(out, b)  # the queued case's claim was released
    assert claim.acquire(timeout=0)
    claim.release()
    assert ended(workers[0])
