"""The warm worker as a real subprocess: many runs in one process, shared-memory hand-off,
cancel without losing the process, bad requests, crash recovery, idle timeout, parent death."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from BreastDCESegLib import inference, synth
from BreastDCESegLib import runner as rn
from BreastDCESegLib.runner import WorkerError
from BreastDCESegLib.warm import WarmCase, WarmWorker, drive, run_segmentation_warm
from process_state import ended

ROOT = Path(__file__).resolve().parents[1]
PHANTOM = {"size": (64, 64, 24), "n_post": 3, "p_no_lesion": 0.0, "p_unknown_times": 0.0}
SLEEP = {"debug_sleep_s": 30, "debug_sleep_at": ["segment"]}


@pytest.fixture(scope="module")
def phantom():
    return synth.make_phantom(seed=11, **PHANTOM)


@pytest.fixture(scope="module")
def warm():
    worker = WarmWorker(idle_timeout=None)
    yield worker
    worker.close()


def _wait_for(condition, timeout=20.0) -> bool:
    """True once ``condition()`` holds; fails the test when ``timeout`` seconds pass first."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)
    return True


def test_many_runs_one_process_same_result_shared_memory(warm, phantom, tmp_path):
    local = inference.segment(phantom.study, "kinetic", device="cpu")
    pids, names = set(), []
    for i in range(3):
        run = warm.submit_study(phantom.study, tmp_path / f"run{i}", "kinetic", "cpu")
        final = drive(run)
        assert final["event"] == "done", final
        pids.add(run.events[0]["pid"])
        names.append(run._release.__self__.descriptor["name"])
        assert sorted(p.name for p in (tmp_path / f"run{i}").iterdir()) == sorted(
            ["tumor.nrrd", "prob.nrrd", "breast.nrrd", "result.json"])  # no phase files written
        result = rn.load_outputs(final, tmp_path / f"run{i}", phantom.study)
        assert np.array_equal(result.tumor_array(), local.tumor_array()) and local.tumor_array().sum() == 187
        motion = [e["message"] for e in run.events if e["event"] == "progress" and e.get("stage") == "motion"]
        if i == 0:  # the worker's first run: each post-contrast phase registered
            assert motion[:3] == [f"aligning phase {k} of 3 to the pre-contrast phase" for k in (1, 2, 3)], motion
        else:  # the panel's re-run: the registrations of the first run are remembered in the warm process
            assert motion == ["no phase moved (estimates remembered from an earlier run)"], motion
    assert pids == {warm.pid} and len(pids) == 1
    if os.path.isdir("/dev/shm"):
        assert not any(os.path.exists(f"/dev/shm/{n.lstrip('/')}") for n in names)  # blocks released


def test_file_handoff_read_ahead_keeps_order(warm, phantom, tmp_path):
    requests = [rn.write_request(phantom.study, tmp_path / f"r{i}", "kinetic", "cpu") for i in range(2)]
    runs = [warm.submit(r) for r in requests]  # the second study is read while the first runs
    finals = [drive(r) for r in runs]
    assert [f["event"] for f in finals] == ["done", "done"]
    for run in runs:
        kinds = [e["event"] for e in run.events]
        assert kinds[0] == "started" and kinds[-1] == "done" and kinds.count("started") == 1
        assert [e["stage"] for e in run.events if e["event"] == "progress"][:2] == ["load", "load"]


def test_cancel_keeps_the_process_and_bad_request_fails_alone(warm, phantom, tmp_path):
    pid = warm.pid
    run = warm.submit_study(phantom.study, tmp_path / "c", "kinetic", "cpu", SLEEP)
    _wait_for(lambda: any("debug_sleep_s" in e.get("message", "") for e in run.events))
    started = time.monotonic()
    run.cancel()  # returns at once; the cancelled event comes once the job has stopped
    assert run.wait(5)["kind"] == "cancelled" and run.worker_ended.is_set()
    assert time.monotonic() - started < 5 and warm.pid == pid and warm.is_alive()
    assert not (tmp_path / "c" / "tumor.nrrd").exists()

    request = rn.write_request(phantom.study, tmp_path / "bad", "kinetic")
    (tmp_path / "bad" / "phase_0001.nrrd").unlink()
    final = drive(warm.submit(request))
    assert final["event"] == "error" and final["kind"] == "bad-input" and "not found" in final["message"]
    assert run_segmentation_warm(warm, phantom.study, "kinetic", "cpu").tumor_array().sum() == 187
    assert warm.pid == pid


@pytest.mark.slow
def test_crash_gives_an_error_and_the_next_run_a_new_process(warm, phantom, tmp_path):
    run = warm.submit_study(phantom.study, tmp_path / "a", "kinetic", "cpu", SLEEP)
    _wait_for(lambda: any("debug_sleep_s" in e.get("message", "") for e in run.events))
    first = warm.pid
    psutil.Process(first).kill()
    final = run.wait(10)
    assert final["kind"] == "internal" and "ended" in final["message"]
    assert run_segmentation_warm(warm, phantom.study, "kinetic", "cpu").tumor_array().sum() == 187
    assert warm.pid != first



@pytest.mark.slow
def test_a_case_queued_behind_a_crash_runs_again_in_a_new_process(warm, phantom):
    """The batch queues case k+1 while case k runs; a crash of k must not fail k+1 too."""
    crashing = WarmCase(warm, phantom.study, "kinetic", "cpu", SLEEP)
    queued = WarmCase(warm, phantom.study, "kinetic", "cpu", {"tumor_summary": False})
    _wait_for(lambda: any("debug_sleep_s" in e.get("message", "") for e in crashing.run.events))
    first = warm.pid
    psutil.Process(first).kill()
    with pytest.raises(WorkerError, match="ended"):
        crashing.result()
    result = queued.result()
    assert result.tumor_array().sum() == 187 and warm.pid != first
    assert queued.run.events[0]["pid"] == warm.pid  # sent again, once, to the new process
    assert "tumor" not in result.extra["report"] and result.extra["report"]["case_id"] == phantom.study.case_id
    assert not crashing.folder.exists() and not queued.folder.exists()  # job folders removed

@pytest.mark.slow
def test_idle_timeout_and_parent_death_end_the_process():
    worker = WarmWorker(idle_timeout=0.5)
    worker._ensure_started()
    pid = worker.pid
    assert _wait_for(lambda: ended(pid) and not worker.is_alive(), 10)   # idle timeout

    script = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(ROOT)!r})
        from BreastDCESegLib.warm import WarmWorker
        w = WarmWorker(idle_timeout=None)
        w._ensure_started()
        print(w.pid, flush=True)
        os._exit(0)   # the parent dies without closing the worker
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                         env=rn.worker_environment())
    orphan = int(out.stdout.strip())
    assert _wait_for(lambda: ended(orphan), 15)   # the parent died
