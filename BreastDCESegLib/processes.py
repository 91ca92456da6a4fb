"""The worker's process: which interpreter, which environment, how its process tree is killed.

Three things the runner (:mod:`BreastDCESegLib.runner`) needs to get right on every platform:

* **The interpreter.** Slicer's own ``PythonSlicer`` by default (inside the application), else
  ``sys.executable``; a user may configure another one (a GPU server's environment).
* **The environment.** Slicer's launcher sets ``PYTHONHOME``, ``PYTHONPATH``,
  ``PYTHONNOUSERSITE`` and library paths (``LD_LIBRARY_PATH``...) for *its* Python. An
  interpreter of another installation must not inherit them, or it loads Slicer's standard
  library and extension modules. For such a *foreign* interpreter the environment starts from
  the one Slicer was launched with (``slicer.util.startupEnvironment()``), or, outside Slicer,
  from this process's environment without the Python variables. Either way only this
  package's folder is put on ``PYTHONPATH``.
* **The kill.** The worker runs in a process group (session) of its own, so its whole tree can
  be killed with or without psutil: psutil walks the descendants (also those that left the
  group); without psutil, ``os.killpg`` (POSIX) or ``taskkill /T /F`` (Windows) does it.
  ``SIGTERM`` first, ``SIGKILL`` for whatever is still alive after ``timeout`` seconds.

Usage::

    env = worker_environment({"CUDA_VISIBLE_DEVICES": "0"}, python="/opt/conda/envs/seg/bin/python")
    proc = subprocess.Popen([...], env=env, **new_group_options())
    kill_tree(proc.pid, timeout=5.0, popen=proc)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

from .watchdog import pid_exists

PACKAGE_PARENT = Path(__file__).resolve().parent.parent
# Set by the launcher of another Python installation (Slicer's): never handed to a foreign interpreter.
PYTHON_VARIABLES = ("PYTHONHOME", "PYTHONPATH", "PYTHONNOUSERSITE", "PYTHONSTARTUP", "PYTHONEXECUTABLE",
                    "PYTHONPLATLIBDIR", "PYTHONSAFEPATH", "VIRTUAL_ENV", "CONDA_PREFIX", "__PYVENV_LAUNCHER__")


def default_python() -> str:
    """The interpreter for the worker: ``PythonSlicer`` inside Slicer, else ``sys.executable``."""
    slicer = sys.modules.get("slicer")
    if slicer is not None and getattr(slicer, "app", None) is not None:
        found = shutil.which("PythonSlicer")
        if found:
            return found
        candidate = Path(sys.executable).with_name("PythonSlicer" + (".exe" if os.name == "nt" else ""))
        if candidate.exists():
            return str(candidate)
    return sys.executable


def is_foreign(python: Optional[str]) -> bool:
    """True when ``python`` is not this installation's interpreter (not :func:`default_python`)."""
    if not python:
        return False
    mine = {os.path.normcase(os.path.abspath(p)) for p in (default_python(), sys.executable)}
    return os.path.normcase(os.path.abspath(python)) not in mine


def startup_environment() -> Optional[dict[str, str]]:
    """The environment Slicer was started with (before its launcher changed it), inside Slicer."""
    slicer = sys.modules.get("slicer")
    util = getattr(slicer, "util", None) if slicer is not None else None
    startup = getattr(util, "startupEnvironment", None)
    if getattr(slicer, "app", None) is None or startup is None:
        return None
    return {str(k): str(v) for k, v in dict(startup()).items()}


def worker_environment(extra: Optional[dict[str, str]] = None, python: Optional[str] = None) -> dict[str, str]:
    """The worker's environment: this package importable, unbuffered UTF-8 I/O, ``extra`` on top.

    For this installation's interpreter, this process's environment. For a foreign ``python``,
    Slicer's startup environment (or this one outside Slicer) without :data:`PYTHON_VARIABLES`.
    """
    if is_foreign(python):
        env = startup_environment() or dict(os.environ)
        for key in PYTHON_VARIABLES:
            env.pop(key, None)
        inherited: list[str] = []
    else:
        env = dict(os.environ)
        inherited = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env.update(extra or {})
    paths = [str(PACKAGE_PARENT)] + inherited + [p for p in (extra or {}).get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    return env


def new_group_options() -> dict[str, Any]:
    """``subprocess.Popen`` keywords that start the child in a process group of its own."""
    if os.name == "nt":
        return {"creationflags": getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)
                | getattr(subprocess, "CREATE_NO_WINDOW", 0)}
    return {"start_new_session": True}


def _wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _ended(popen: subprocess.Popen) -> bool:
    """Whether our child ended (``poll`` may return None while another thread is in ``wait``)."""
    popen.poll()
    return popen.returncode is not None


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def kill_group(pid: int, timeout: float = 5.0, popen: Optional[subprocess.Popen] = None) -> None:
    """Kill ``pid`` and its process group without psutil (``pid`` leads the group, see
    :func:`new_group_options`): SIGTERM, then SIGKILL after ``timeout`` s; ``taskkill /T`` on Windows."""
    if os.name == "nt":
        subprocess.run(["taskkill", "/PID", str(pid), "/T", "/F"], capture_output=True, check=False)
        if popen is not None:
            popen.wait()
        return
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return
    if pgid != pid or pgid == os.getpgid(0):  # not a group of its own: never signal our own group
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        exited = _wait_for(lambda: _ended(popen) if popen is not None else not pid_exists(pid), timeout)
        if not exited:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        # the leader (our child) is reaped by poll() or a thread in wait(); the others by their new parent
        if not _wait_for(lambda: (popen is None or _ended(popen)) and not _group_alive(pgid), timeout):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
    if popen is not None:
        popen.wait()


def kill_tree(pid: int, timeout: float = 5.0, popen: Optional[subprocess.Popen] = None) -> None:
    """Terminate a process and all its descendants; kill those still alive after ``timeout``.

    ``popen``: the :class:`subprocess.Popen` of ``pid`` when it is our child, so that its exit
    status is collected by ``subprocess`` (not reaped behind its back). Without psutil the
    process group of ``pid`` is killed instead (:func:`kill_group`).
    """
    try:
        import psutil
    except ImportError:
        kill_group(pid, timeout, popen)
        return
    try:
        root = psutil.Process(pid)
        children = root.children(recursive=True)  # before the root dies and they are re-parented
    except psutil.NoSuchProcess:
        return
    for p in [root] + children:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.terminate()
    if popen is not None:
        try:
            popen.wait(timeout)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait()
    else:
        children.append(root)
    _, alive = psutil.wait_procs(children, timeout=timeout)
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    psutil.wait_procs(alive, timeout=timeout)
