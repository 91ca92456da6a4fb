"""The background worker as a real subprocess: event stream, outputs, cancellation, errors.

Every test starts a real ``python -m BreastDCESegLib.worker`` (or a deliberately broken
interpreter) on small phantom studies written to real files; nothing is mocked.
"""

import json
import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import SimpleITK as sitk

from BreastDCESegLib import runner as rn
from BreastDCESegLib import synth
from BreastDCESegLib.errors import BadInputError
from process_state import ended

ROOT = Path(__file__).resolve().parents[1]
SIZE = (64, 64, 24)
PHANTOM = {"size": SIZE, "n_post": 3, "p_no_lesion": 0.0, "p_unknown_times": 0.0}
OUTPUT_NAMES = {"tumor.nrrd", "prob.nrrd", "breast.nrrd", "result.json"}


@pytest.fixture(scope="module")
def phantom():
    return synth.make_phantom(seed=11, **PHANTOM)


def _request(study, folder, model="kinetic", options=None):
    return rn.write_request(study, folder, model, device="auto", options=options)


def _run_worker(request: Path, timeout=120):
    """Run the worker exactly as the runner does; returns (events, returncode, stderr, pid)."""
    proc = subprocess.Popen([sys.executable, "-m", "BreastDCESegLib.worker", str(request)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=rn.worker_environment(), cwd=str(request.parent))
    out, err = proc.communicate(timeout=timeout)
    lines = [line for line in out.splitlines() if line.strip()]
    events = [json.loads(line) for line in lines]  # every stdout line must be a JSON object
    assert all(isinstance(e, dict) and "event" in e for e in events)
    return events, proc.returncode, err, proc.pid


def _outputs_in(folder: Path) -> set:
    return {p.name for p in folder.iterdir()} & OUTPUT_NAMES


def _leftovers(folder: Path) -> list:
    """Files that are neither inputs (phases, request) nor finished outputs: temporaries."""
    return [p.name for p in folder.iterdir()
            if p.name not in OUTPUT_NAMES and p.name != "request.json" and not p.name.startswith("phase")]


def _check_progress(events):
    reached = {}
    for e in (e for e in events if e["event"] == "progress"):
        assert 0.0 <= e["fraction"] <= 1.0
        assert e["fraction"] >= reached.get(e["stage"], 0.0), f"fraction went back in stage {e['stage']}"
        reached[e["stage"]] = e["fraction"]
    return reached


def _dice(a, b):
    a, b = a.astype(bool), b.astype(bool)
    return 2.0 * (a & b).sum() / max(a.sum() + b.sum(), 1)


@pytest.fixture(scope="module")
def done_run(phantom, tmp_path_factory):
    folder = tmp_path_factory.mktemp("worker_ok")
    request = _request(phantom.study, folder)
    events, code, err, pid = _run_worker(request)
    return folder, events, code, err, pid


# ----------------------------------------------------------------------------- success
def test_event_order_and_exit_code(done_run):
    folder, events, code, err, pid = done_run
    assert code == 0, err
    kinds = [e["event"] for e in events]
    assert kinds[0] == "started" and kinds[-1] == "done"
    assert set(kinds[1:-1]) <= {"progress", "log"}
    assert events[0]["model"] == "kinetic" and events[0]["device"] == "cpu" and events[0]["pid"] == pid
    reached = _check_progress(events)
    assert {"load", "write"} <= set(reached)
    assert reached["load"] == 1.0 and reached["write"] == 1.0
    stages = [e["stage"] for e in events if e["event"] == "progress"]
    assert stages.index("load") < stages.index("write")
    assert len(set(stages)) >= 3  # the model reports at least one stage of its own
    done = events[-1]
    assert done["outputs"]["label"] == "tumor.nrrd" and done["outputs"]["result"] == "result.json"
    assert Path(done["output_dir"]) == folder.resolve()
    assert {"load", "write", "total"} <= set(done["seconds"])
    assert done["seconds"]["total"] >= done["seconds"]["load"] + done["seconds"]["write"]


def test_outputs_on_study_grid(done_run, phantom):
    folder, events, *_ = done_run
    study = phantom.study
    assert _outputs_in(folder) == set(events[-1]["outputs"].values())
    assert not _leftovers(folder)
    label = sitk.ReadImage(str(folder / "tumor.nrrd"))
    assert label.GetSize() == study.size
    assert np.allclose(label.GetSpacing(), study.spacing, atol=1e-6)
    assert np.allclose(label.GetOrigin(), study.origin, atol=1e-4)
    assert np.allclose(label.GetDirection(), study.direction, atol=1e-6)
    assert label.GetPixelID() == sitk.sitkUInt8
    pred = sitk.GetArrayFromImage(label)
    truth = sitk.GetArrayFromImage(phantom.tumor)
    assert set(np.unique(pred)) <= {0, 1}
    assert _dice(pred, truth) > 0.5


def test_result_json(done_run, phantom):
    folder, events, *_ = done_run
    report = json.loads((folder / "result.json").read_text())
    assert report["model"] == "kinetic" and report["device"] == "cpu"
    assert report["study"]["n_phases"] == phantom.study.n_phases
    assert report["study"]["size_xyz"] == list(SIZE)
    assert report["seconds"]["load"] > 0
    assert isinstance(report["warnings"], list)
    voxels = int(sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "tumor.nrrd"))).sum())
    tumor = report["tumor"]
    assert tumor["volume_ml"] == pytest.approx(voxels * phantom.study.voxel_volume_mm3 / 1000.0, rel=1e-3)
    assert tumor["t_stage"] in {"T1", "T2", "T3"} and tumor["longest_diameter_mm"] > 0


def test_load_outputs(done_run, phantom):
    folder, events, *_ = done_run
    result = rn.load_outputs(events[-1], folder, phantom.study)
    on_disk = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "tumor.nrrd")))
    assert np.array_equal(result.tumor_array(), on_disk)
    assert result.model_id == "kinetic"
    assert result.tumor.GetOrigin() == phantom.study.origin
    assert result.tumor_volume_ml == pytest.approx(on_disk.sum() * phantom.study.voxel_volume_mm3 / 1000.0)
    assert (result.breast is not None) == ("breast" in events[-1]["outputs"])


# ----------------------------------------------------------------------------- runner
@pytest.mark.slow
def test_runner_poll_from_another_thread(phantom, tmp_path):
    runner = rn.WorkerRunner().start(_request(phantom.study, tmp_path))
    seen = []

    def consume():  # what the Slicer widget's QTimer does, on a thread of its own here
        while runner.is_running():
            seen.extend(runner.poll())
            time.sleep(0.02)
        seen.extend(runner.poll())

    t = threading.Thread(target=consume)
    t.start()
    t.join(120)
    assert not t.is_alive()
    assert [e["event"] for e in seen] == [e["event"] for e in runner.events]
    assert seen[0]["event"] == "started" and seen[-1]["event"] == "done"
    assert runner.wait(1) is runner.final and runner.returncode == 0
    _check_progress(seen)


def test_run_segmentation_blocking(phantom):
    events = []
    result = rn.run_segmentation(phantom.study, "kinetic", options={"tta": True}, on_event=events.append)
    assert events[0]["event"] == "started" and events[-1]["event"] == "done"
    assert not Path(events[-1]["output_dir"]).exists()  # its temporary folder is gone
    assert result.tumor.GetSize() == phantom.study.size
    assert _dice(result.tumor_array(), sitk.GetArrayFromImage(phantom.tumor)) > 0.5
    assert "uncertainty" in events[-1]["outputs"]  # the kinetic method's spread over cut levels (option tta)
    spread = sitk.GetArrayFromImage(result.uncertainty)
    assert spread.shape == result.tumor_array().shape and 0.0 < float(spread.max()) <= 0.5


@pytest.mark.slow
@pytest.mark.parametrize("point,where", [("load", "after loading"), ("write", "before renaming the outputs")])
def test_cancel_mid_run_leaves_no_outputs(phantom, tmp_path, point, where):
    options = {"debug_sleep_s": 30, "debug_sleep_at": [point]}
    runner = rn.WorkerRunner().start(_request(phantom.study, tmp_path, options=options))
    deadline = time.monotonic() + 60
    while not any(e["event"] == "log" and where in e["message"] for e in runner.events):
        assert runner.is_running() and time.monotonic() < deadline, runner.events
        time.sleep(0.05)
    pid = runner.process.pid
    runner.cancel(wait=True)
    assert not runner.is_running() and runner.process.poll() is not None
    assert ended(pid)
    assert runner.final["event"] == "error" and runner.final["kind"] == "cancelled"
    assert [e for e in runner.events if e["event"] in ("done", "error")] == [runner.final]
    assert _outputs_in(tmp_path) == set()
    assert not _leftovers(tmp_path)  # SIGTERM unwinds: staged temporaries are removed too
    if point == "write":
        staged = [e for e in runner.events if e["event"] == "progress" and e["message"] == "all outputs staged"]
        assert staged  # it really was cancelled with every output written under a temporary name


@pytest.mark.slow
def test_kill_tree_kills_children(tmp_path):
    code = ("import subprocess, sys, time; "
            "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
            "print(c.pid, flush=True); time.sleep(60)")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    assert psutil.pid_exists(child)
    rn.kill_tree(parent.pid, timeout=2)
    parent.wait(5)
    psutil.wait_procs([psutil.Process(child)] if psutil.pid_exists(child) else [], timeout=5)
    assert ended(child)


# ----------------------------------------------------------------------------- errors
def test_one_phase_is_bad_input(phantom, tmp_path):
    request = _request(phantom.study, tmp_path)
    data = json.loads(request.read_text())
    data["phases"], data["times"] = data["phases"][:1], data["times"][:1]
    request.write_text(json.dumps(data))
    events, code, err, _ = _run_worker(request)
    assert code != 0
    assert events[-1]["event"] == "error" and events[-1]["kind"] == "bad-input"
    assert "post-contrast" in events[-1]["message"] and "detail" not in events[-1]
    assert _outputs_in(tmp_path) == set()


def test_nan_volume_is_bad_input(phantom, tmp_path):
    request = _request(phantom.study, tmp_path)
    phase1 = tmp_path / json.loads(request.read_text())["phases"][1]
    image = sitk.ReadImage(str(phase1))
    arr = sitk.GetArrayFromImage(image).astype(np.float32)  # phases may be stored as int16
    arr[3, 10, 10] = np.nan
    broken = sitk.GetImageFromArray(arr)
    broken.CopyInformation(image)
    sitk.WriteImage(broken, str(phase1))
    events, code, err, _ = _run_worker(request)
    assert code == 1
    assert [e["event"] for e in events][0] == "started"
    assert events[-1]["event"] == "error" and events[-1]["kind"] == "bad-input"
    assert "NaN" in events[-1]["message"]
    assert _outputs_in(tmp_path) == set() and not _leftovers(tmp_path)


@pytest.mark.slow
def test_unknown_model_is_a_clear_error(phantom, tmp_path):
    events, code, err, _ = _run_worker(_request(phantom.study, tmp_path, model="no-such-model"))
    assert code == 1
    final = events[-1]
    assert final["event"] == "error" and final["kind"] == "bad-input"
    assert "no-such-model" in final["message"]
    assert not any(e["event"] == "progress" for e in events)  # refused before reading any data
    assert _outputs_in(tmp_path) == set()


@pytest.mark.slow
def test_run_segmentation_raises_matching_error(phantom, tmp_path):
    with pytest.raises(BadInputError, match="no-such-model"):
        rn.run_segmentation(phantom.study, "no-such-model", work_dir=tmp_path)


def _fake_python(folder: Path, body: str) -> str:
    path = folder / "fake-python"
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


@pytest.mark.skipif(os.name == "nt", reason="shell script interpreter")
def test_crash_gives_synthesized_error_with_stderr_tail(phantom, tmp_path):
    python = _fake_python(tmp_path, "echo '{\"event\": \"started\", \"model\": \"kinetic\"}'\n"
                                    "echo 'not json at all'\n"
                                    "echo 'loading libcuda' >&2\necho 'Segmentation fault (core dumped)' >&2\nexit 139")
    runner = rn.WorkerRunner(python=python).start(_request(phantom.study, tmp_path))
    final = runner.wait(30)
    assert [e["event"] for e in runner.events] == ["started", "log", "error"]
    assert runner.events[1] == {"event": "log", "level": "info", "message": "not json at all"}
    assert final["kind"] == "internal" and final["exit_code"] == 139
    assert "exit code 139" in final["message"] and "Segmentation fault (core dumped)" in final["message"]
    assert "loading libcuda" in final["stderr_tail"]
    assert not runner.is_running()


def test_event_stdout_keeps_stray_output_off_stdout():
    code = ("import os, warnings, logging\n"
            "from BreastDCESegLib.worker import event_stdout, captured_diagnostics\n"
            "with event_stdout() as ev, captured_diagnostics(ev):\n"
            "    print('stray print')\n"
            "    os.write(1, b'stray C-level write\\n')\n"
            "    warnings.warn('careful')\n"
            "    logging.getLogger('x').warning('logged')\n"
            "    ev.progress('s', 0.5, 'half')\n"
            "    ev.progress('s', 0.2, 'late callback')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=rn.worker_environment(),
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [e["event"] for e in events] == ["log", "log", "progress", "progress"]
    assert "careful" in events[0]["message"] and events[0]["level"] == "warning"
    assert events[1]["message"] == "x: logged"
    assert [e["fraction"] for e in events[2:]] == [0.5, 0.5]
    assert "stray print" in proc.stderr and "stray C-level write" in proc.stderr
