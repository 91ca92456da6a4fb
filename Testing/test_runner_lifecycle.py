"""The worker's process lifecycle: a clean environment for a foreign interpreter, cancel (kill
first, report after, never blocking, with or without psutil) and the parent watchdog.

Real processes throughout: a fake worker (a small script standing in for the interpreter,
which ignores SIGTERM and starts a child) for the kill, the real worker for the watchdog.
"""

import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

from BreastDCESegLib import processes
from BreastDCESegLib import runner as rn
from BreastDCESegLib import synth

posix_only = pytest.mark.skipif(os.name == "nt", reason="shell-script interpreter and signals: POSIX")
LAUNCHER = {"PYTHONHOME": "/opt/Slicer-5.10/lib/Python", "PYTHONPATH": "/opt/Slicer-5.10/lib/Python/site",
            "PYTHONNOUSERSITE": "1", "LD_LIBRARY_PATH": "/opt/Slicer-5.10/lib/Slicer-5.10"}


def _gone(pid: int) -> bool:
    """Dead or a zombie (without psutil: one variant of a test hides it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists():
        return stat.read_text().rsplit(")", 1)[-1].split()[0] in "ZX"
    state = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True).stdout.strip()
    return not state or state.startswith("Z")


def _wait_gone(pids, timeout=20.0) -> bool:
    deadline = time.monotonic() + timeout
    while not all(_gone(p) for p in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# ----------------------------------------------------------------------------- environment
def test_foreign_interpreter_environment_drops_launcher_variables(monkeypatch):
    for key, value in LAUNCHER.items():
        monkeypatch.setenv(key, value)
    own = processes.worker_environment()
    assert own["PYTHONHOME"] == LAUNCHER["PYTHONHOME"]  # our own interpreter keeps its environment
    assert own["PYTHONPATH"].split(os.pathsep)[1] == LAUNCHER["PYTHONPATH"]
    foreign = processes.worker_environment({"CUDA_VISIBLE_DEVICES": "1"}, python="/opt/conda/envs/seg/bin/python")
    assert not {"PYTHONHOME", "PYTHONNOUSERSITE"} & set(foreign)
    assert foreign["PYTHONPATH"] == str(processes.PACKAGE_PARENT)  # only this package, not Slicer's site
    assert foreign["CUDA_VISIBLE_DEVICES"] == "1" and foreign["PYTHONUNBUFFERED"] == "1"


def test_warm_worker_of_a_foreign_interpreter_gets_the_clean_environment(monkeypatch):
    from BreastDCESegLib.warm import WarmWorker

    for key, value in LAUNCHER.items():
        monkeypatch.setenv(key, value)
    env = WarmWorker(python="/opt/conda/envs/seg/bin/python", idle_timeout=None)._environment()
    assert not {"PYTHONHOME", "PYTHONNOUSERSITE"} & set(env) and env["PYTHONPATH"] == str(processes.PACKAGE_PARENT)
    assert env["BREASTDCESEG_PARENT_PID"] == str(os.getpid())


def test_inside_slicer_foreign_interpreter_starts_from_startup_environment(monkeypatch):
    for key, value in LAUNCHER.items():
        monkeypatch.setenv(key, value)
    startup = {"PATH": "/usr/bin:/bin", "HOME": "/home/reader", "LD_LIBRARY_PATH": "/usr/local/cuda/lib64"}
    fake = types.SimpleNamespace(app=object(), util=types.SimpleNamespace(startupEnvironment=lambda: dict(startup)))
    monkeypatch.setitem(sys.modules, "slicer", fake)
    env = processes.worker_environment(python="/opt/conda/envs/seg/bin/python")
    assert env["LD_LIBRARY_PATH"] == "/usr/local/cuda/lib64"  # the user's, not the launcher's
    assert env["HOME"] == "/home/reader" and "PYTHONHOME" not in env
    assert env["PYTHONPATH"] == str(processes.PACKAGE_PARENT)


@pytest.mark.skipif(sys.prefix == sys.base_prefix, reason="needs a virtual environment (a second interpreter)")
def test_foreign_interpreter_really_starts_under_a_launcher_environment(monkeypatch, tmp_path):
    """Another installation's interpreter under Slicer-like PYTHONHOME: it must start and run the
    worker (with the launcher's variables it dies with 'Fatal Python error' before any event)."""
    for key, value in LAUNCHER.items():
        monkeypatch.setenv(key, value)
    study = synth.make_phantom(seed=3, size=(24, 24, 8), n_post=1, p_no_lesion=0.0, p_unknown_times=0.0).study
    base_python = os.path.realpath(sys._base_executable)
    runner = rn.WorkerRunner(python=base_python).start(rn.write_request(study, tmp_path, "kinetic"))
    final = runner.wait(60)
    assert final is not None
    # that interpreter ran our package with its own standard library (it may lack SimpleITK)
    assert "Fatal Python error" not in runner.stderr_tail
    assert runner.events[0]["event"] == "started" or "No module named" in runner.stderr_tail, runner.stderr_tail


# ----------------------------------------------------------------------------- cancel
FAKE_WORKER = """
import json, signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)      # a worker stuck in native code
child = subprocess.Popen([sys.executable, "-c",
                          "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)"])
print(json.dumps({"event": "started", "pid": __import__("os").getpid(), "child": child.pid}), flush=True)
time.sleep(120)
print(json.dumps({"event": "done", "outputs": {}}), flush=True)
"""


@pytest.fixture
def fake_interpreter(tmp_path):
    """An executable standing in for the worker's interpreter: runs FAKE_WORKER whatever its arguments."""
    script = tmp_path / "fake_worker.py"
    script.write_text(FAKE_WORKER)
    python = tmp_path / "python"
    python.write_text(f"#!/bin/sh\nexec '{sys.executable}' '{script}'\n")
    python.chmod(0o755)
    (tmp_path / "request.json").write_text("{}")
    return python


@pytest.mark.slow
@posix_only
@pytest.mark.parametrize("with_psutil", [True, False], ids=["psutil", "no-psutil"])
def test_cancel_kills_the_tree_first_then_reports_without_blocking(fake_interpreter, tmp_path, monkeypatch,
                                                                   with_psutil):
    if not with_psutil:
        monkeypatch.setitem(sys.modules, "psutil", None)  # `import psutil` raises ImportError in the runner
    runner = rn.WorkerRunner(python=str(fake_interpreter)).start(tmp_path / "request.json")
    deadline = time.monotonic() + 30
    while not runner.events:
        assert time.monotonic() < deadline, runner.stderr_tail
        time.sleep(0.02)
    started = runner.poll()[0]
    pids = [started["pid"], started["child"]]
    assert all(not _gone(p) for p in pids)

    runner.cancel(timeout=1.0)  # SIGTERM is ignored: only the SIGKILL after 1 s ends them
    assert runner.is_running() and runner.final is None  # returned at once; nothing reported yet
    assert runner.cancelling

    seen = []
    while not any(e["event"] == "error" for e in seen):
        assert time.monotonic() < deadline + 30, "no cancelled event"
        new = runner.poll()
        if any(e["event"] == "error" for e in new):
            # at the moment the report arrives, the worker and its child are already dead
            assert _gone(pids[0]) and _wait_gone([pids[1]], 5.0)
        seen.extend(new)
        time.sleep(0.01)
    assert [e["event"] for e in seen] == ["error"] and seen[0]["kind"] == "cancelled"
    assert runner.returncode == -signal.SIGKILL
    assert not runner.is_running() and runner.final is seen[0]


@pytest.mark.slow
@posix_only
def test_kill_group_without_psutil_kills_grandchildren(tmp_path):
    code = ("import subprocess, sys, time; "
            "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
            "print(c.pid, flush=True); time.sleep(60)")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                              **processes.new_group_options())
    child = int(parent.stdout.readline())
    processes.kill_group(parent.pid, timeout=2.0, popen=parent)
    assert parent.returncode == -signal.SIGTERM
    assert _wait_gone([child], 5.0)


# ----------------------------------------------------------------------------- watchdog
PARENT = """
import json, sys, time
sys.path.insert(0, {root!r})
from BreastDCESegLib import runner
r = runner.WorkerRunner().start({request!r})
while not any(e["event"] == "log" and "after loading" in e.get("message", "") for e in r.events):
    time.sleep(0.02)
print(r.process.pid, flush=True)
time.sleep(120)
"""


@posix_only
def test_worker_exits_when_its_parent_dies(tmp_path):
    study = synth.make_phantom(seed=4, size=(24, 24, 8), n_post=1, p_no_lesion=0.0, p_unknown_times=0.0).study
    request = rn.write_request(study, tmp_path, "kinetic", options={"debug_sleep_s": 120, "debug_sleep_at": ["load"]})
    code = PARENT.format(root=str(Path(__file__).resolve().parents[1]), request=str(request))
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        worker_pid = int(parent.stdout.readline())
        assert not _gone(worker_pid)
        parent.send_signal(signal.SIGKILL)  # Slicer crashed: no cancel, no cleanup
        parent.wait(10)
        assert _wait_gone([worker_pid], 20.0), "the worker outlived its parent"
        assert not (tmp_path / "tumor.nrrd").exists() and not (tmp_path / "result.json").exists()
    finally:
        if parent.poll() is None:
            parent.kill()
        if 'worker_pid' in locals() and not _gone(worker_pid):
            os.kill(worker_pid, signal.SIGKILL)


def test_run_segmentation_uses_only_the_public_runner_interface():
    import inspect

    source = inspect.getsource(rn.run_segmentation)
    assert "._finished" not in source and "._queue" not in source
