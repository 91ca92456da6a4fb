"""Start the background worker, read its events, cancel it, load its outputs.

The worker (:mod:`BreastDCESegLib.worker`) runs in a separate interpreter so that torch
never runs in Slicer's GUI process. By default that interpreter is the current one
(``sys.executable``; inside the Slicer application, ``PythonSlicer`` found on ``PATH``).
A user may configure another one, e.g. the conda environment of a GPU server mounted
locally: ``WorkerRunner(python="/opt/conda/envs/seg/bin/python")``. That interpreter needs
numpy, SimpleITK (and torch/MONAI for the networks); this package is put on its
``PYTHONPATH`` by the runner, so it does not need to be installed there.

Usage (non-blocking, e.g. from a QTimer in the Slicer widget)::

    request = write_request(study, tmp_folder, "kinetic")
    runner = WorkerRunner()
    runner.start(request)
    ...
    for event in runner.poll():        # call periodically; never blocks
        if event["event"] == "progress": ...
    if runner.final is not None and runner.final["event"] == "done":
        result = load_outputs(runner.final, tmp_folder, study)

Blocking::

    result = run_segmentation(study, "kinetic", on_event=print)

Events are dicts as described in :mod:`BreastDCESegLib.worker`. A line on stdout that is
not a JSON object becomes ``{"event": "log", "level": "info", "message": line}``. When the
process ends without ``done`` or ``error`` the runner adds an ``error`` event of kind
``internal`` with the exit code and the end of stderr; :meth:`WorkerRunner.cancel` returns at
once, kills the worker's process tree (:mod:`.processes`, with or without psutil) and only then
adds an ``error`` event of kind ``cancelled``. Exactly one final event (``done`` or ``error``) is
delivered per run. The worker's environment is clean for another installation's interpreter,
and the worker stops by itself when this process dies (:mod:`.watchdog`).
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import queue
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

from .errors import (BadInputError, BreastDCESegError, DeviceOutOfMemoryError, MissingDependencyError)
from .io.atomic import write_json
from .processes import default_python, kill_tree, new_group_options, worker_environment  # noqa: F401 (re-exported)
from .results import SegmentationResult
from .watchdog import PARENT_PID_VARIABLE, WATCH_STDIN_VARIABLE

PACKAGE_PARENT = Path(__file__).resolve().parent.parent
STDERR_TAIL_LINES = 40
FINAL_EVENTS = ("done", "error")


class WorkerError(BreastDCESegError):
    """The worker failed (``internal``) or was cancelled; ``event`` is the error event."""

    def __init__(self, message: str, kind: str = "internal", event: Optional[dict] = None):
        super().__init__(message)
        self.kind = kind
        self.event = event or {}


def error_from_event(event: dict[str, Any]) -> BreastDCESegError:
    """The exception matching an ``error`` event (same classes the worker mapped from)."""
    kind, message = event.get("kind", "internal"), event.get("message", "the worker failed")
    classes = {"bad-input": BadInputError, "missing-dependency": MissingDependencyError,
               "out-of-memory": DeviceOutOfMemoryError}
    if kind in classes:
        exc = classes[kind](message)
        exc.event = event
        return exc
    detail = event.get("detail")
    return WorkerError(f"{message}\n{detail}" if detail and kind == "internal" else message, kind, event)


def parse_line(line: str) -> dict[str, Any]:
    """One stdout line -> an event dict (non-JSON text becomes a ``log`` event)."""
    text = line.rstrip("\r\n")
    try:
        event = json.loads(text)
    except json.JSONDecodeError:
        event = None
    if isinstance(event, dict) and isinstance(event.get("event"), str):
        return event
    return {"event": "log", "level": "info", "message": text}


class RunEvents:
    """The events of one run, shared by :class:`WorkerRunner`, :class:`~.warm.WarmRun` and
    :class:`~.remote.RemoteRunner`: every event in order (``events``), the ones not yet read
    (``poll``), and exactly one final event (``final``, ``done`` or ``error``).

    Once ``_cancel_reason`` is set a final event is taken only from the canceller
    (``from_canceller=True``): the ``cancelled`` error then comes after the run has stopped,
    whatever the run itself sent meanwhile.
    """

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []  # every event delivered, in order
        self.final: Optional[dict[str, Any]] = None
        self.returncode: Optional[int] = None
        self._queue: "queue.Queue[dict[str, Any]]" = queue.Queue()
        self._lock = threading.Lock()
        self._cancel_reason: Optional[str] = None

    def poll(self) -> list[dict[str, Any]]:
        """Events received since the last call (never blocks; safe from any thread)."""
        out = []
        while True:
            try:
                out.append(self._queue.get_nowait())
            except queue.Empty:
                return out

    def _deliver(self, event: dict[str, Any], from_canceller: bool = False) -> bool:
        """Record ``event``; True when it became the final event (False: recorded, not final, or dropped)."""
        with self._lock:
            is_final = event.get("event") in FINAL_EVENTS
            if is_final:
                if (self._cancel_reason is not None and not from_canceller) or self.final is not None:
                    return False
                self.final = event
                self._on_final(event)
            self.events.append(event)
            self._queue.put(event)
            return is_final

    def _on_final(self, event: dict[str, Any]) -> None:
        """Called under the lock when ``event`` becomes the final event."""


class WorkerRunner(RunEvents):
    """One worker process at a time: start, poll events, cancel, wait.

    Args:
        python: interpreter to run the worker with (default: :func:`default_python`).
        env: extra environment variables for the worker (e.g. ``CUDA_VISIBLE_DEVICES``).
    """

    def __init__(self, python: Optional[str] = None, env: Optional[dict[str, str]] = None):
        super().__init__()
        self.python = python or default_python()
        self.env = dict(env or {})
        self.process: Optional[subprocess.Popen] = None
        self._finished = threading.Event()
        self._stderr: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        self._threads: list[threading.Thread] = []
        self._killer: Optional[threading.Thread] = None

    # ------------------------------------------------------------------ lifecycle
    def start(self, request_path: str | Path) -> "WorkerRunner":
        """Launch ``<python> -m BreastDCESegLib.worker request.json`` and start reading it."""
        if self.process is not None:
            raise RuntimeError("this WorkerRunner already started a worker; create a new one")
        request_path = Path(request_path).resolve()
        command = [self.python, "-u", "-m", "BreastDCESegLib.worker", str(request_path)]
        # stdin: a pipe we never write; it closes when this process dies (the worker's watchdog).
        # A process group of its own: the whole tree can be killed, with or without psutil.
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            cwd=str(request_path.parent), text=True,
            env=worker_environment({**self.env, PARENT_PID_VARIABLE: str(os.getpid()), WATCH_STDIN_VARIABLE: "1"},
                                   python=self.python),
            encoding="utf-8", errors="replace", bufsize=1, **new_group_options())
        readers = [threading.Thread(target=self._read_stdout, name="worker-stdout", daemon=True),
                   threading.Thread(target=self._read_stderr, name="worker-stderr", daemon=True)]
        watcher = threading.Thread(target=self._watch, args=(readers,), name="worker-watch", daemon=True)
        self._threads = readers + [watcher]
        for t in self._threads:
            t.start()
        return self

    def is_running(self) -> bool:
        """True from :meth:`start` until the process has ended and the final event is known."""
        return self.process is not None and not self._finished.is_set()

    def wait(self, timeout: Optional[float] = None) -> Optional[dict[str, Any]]:
        """Block until the worker has ended; the final event, or None if ``timeout`` expired."""
        if self.process is None:
            raise RuntimeError("the worker was not started")
        if not self._finished.wait(timeout):
            return None
        return self.final

    def cancel(self, timeout: float = 5.0, reason: str = "Cancelled by the user.", wait: bool = False) -> None:
        """Kill the worker and its children (terminate, then kill after ``timeout`` s), then report.

        Returns at once (the kill runs on a thread; safe from the GUI thread) unless ``wait``.
        The ``error`` event of kind ``cancelled`` is delivered only once the process has ended and
        the kill is complete, so its receiver may remove the work folder. Nothing happens when the
        run already ended or is already being cancelled.
        """
        with self._lock:
            if self.process is None or self._finished.is_set() or self.final is not None or self._killer:
                return
            self._cancel_reason = reason
            self._killer = threading.Thread(target=kill_tree, args=(self.process.pid, timeout, self.process),
                                            name="worker-kill", daemon=True)
        self._killer.start()
        if wait:
            self._finished.wait()

    @property
    def cancelling(self) -> bool:
        """True once :meth:`cancel` was called, until the ``cancelled`` event is delivered."""
        return self._killer is not None and not self._finished.is_set()

    # ------------------------------------------------------------------ threads
    def _read_stdout(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            if line.strip():
                self._deliver(parse_line(line))

    def _read_stderr(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        for line in self.process.stderr:
            self._stderr.append(line.rstrip("\r\n"))

    def _watch(self, readers: list[threading.Thread]) -> None:
        assert self.process is not None
        for t in readers:
            t.join()
        self.returncode = self.process.wait()
        with contextlib.suppress(OSError, ValueError):
            self.process.stdin.close()
        if self._killer is not None:
            self._killer.join()
            self._deliver({"event": "error", "kind": "cancelled", "message": self._cancel_reason,
                           "exit_code": self.returncode}, from_canceller=True)
        if self.final is None:
            tail = "\n".join(self._stderr) or "(no output on stderr)"
            self._deliver({"event": "error", "kind": "internal", "exit_code": self.returncode,
                           "message": f"The worker ended without a result (exit code {self.returncode}). "
                                      f"Last lines of its error output:\n{tail}",
                           "stderr_tail": tail})
        elif self.final.get("event") == "done" and self.returncode != 0:
            self._deliver({"event": "log", "level": "warning",
                           "message": f"the worker exited with code {self.returncode} after 'done'"})
        self._finished.set()

    @property
    def stderr_tail(self) -> str:
        return "\n".join(self._stderr)


# ----------------------------------------------------------------------------- files
def write_request(study, folder: str | Path, model: Optional[str], device: str = "auto",
                  options: Optional[dict[str, Any]] = None) -> Path:
    """Write the study's phases (``phase_000k.nrrd``: uncompressed NRRD, geometry and times
    kept) and ``request.json`` into ``folder`` (a fresh one: existing files are not replaced).

    Outputs of the worker go to the same ``folder``. Returns the path of ``request.json``.
    """
    from .io.files import write_study_phases

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    phase_paths = write_study_phases(study, folder, ext=".nrrd", case_id="phase", compress=False)
    request = {
        "phases": [Path(p).name for p in phase_paths],
        "times": list(study.times),
        "case_id": study.case_id,
        "model": model,
        "device": device,
        "output_dir": ".",
        "options": dict(options or {}),
    }
    return write_json(folder / "request.json", request)


def load_outputs(done_event: dict[str, Any], folder: Optional[str | Path] = None,
                 study=None) -> SegmentationResult:
    """Read the files named by a ``done`` event into a :class:`SegmentationResult`.

    ``folder`` defaults to the event's ``output_dir``. With ``study``, the masks are checked
    against (and snapped to) the study grid. The uncertainty map (float32, option ``tta``) and
    the other enhancing lesions (uint8, option ``other_lesions``) are loaded when the event lists them.
    """
    import SimpleITK as sitk

    from .study import same_grid

    if done_event.get("event") != "done":
        raise ValueError(f"load_outputs needs a 'done' event, got {done_event.get('event')!r}")
    folder = Path(folder if folder is not None else done_event["output_dir"])
    outputs = done_event.get("outputs") or {}
    missing = [k for k in ("label", "result") if k not in outputs]
    missing += [str(v) for v in outputs.values() if not (folder / str(v)).is_file()]
    if missing:  # only a complete set of outputs is loaded
        raise WorkerError(f"The worker reported a result but its outputs in {folder} are incomplete "
                          f"(missing: {', '.join(missing)}); nothing was loaded. Run the case again.")
    images = {}
    for key, pixel in (("label", sitk.sitkUInt8), ("probability", sitk.sitkFloat32), ("breast", sitk.sitkUInt8),
                       ("uncertainty", sitk.sitkFloat32), ("other_lesions", sitk.sitkUInt8)):  # the last two when asked
        if key in outputs:
            try:
                image = sitk.Cast(sitk.ReadImage(str(folder / outputs[key])), pixel)
            except RuntimeError as exc:
                raise WorkerError(f"The worker's {outputs[key]} in {folder} cannot be read (damaged); "
                                  "nothing was loaded. Run the case again.") from exc
            if study is not None:
                if not same_grid(image, study.reference, tol=1e-3):
                    raise WorkerError(f"The worker's {outputs[key]} in {folder} is not on the study grid "
                                      f"(size {image.GetSize()} vs {study.size}).")
                image.CopyInformation(study.reference)
            images[key] = image
    report = json.loads((folder / outputs["result"]).read_text(encoding="utf-8"))
    return SegmentationResult(
        tumor=images["label"], breast=images.get("breast"), probability=images.get("probability"),
        uncertainty=images.get("uncertainty"), other_lesions=images.get("other_lesions"),
        model_id=str(report.get("model") or done_event.get("model") or ""),
        device=str(report.get("device") or done_event.get("device") or "cpu"),
        seconds={k: float(v) for k, v in (done_event.get("seconds") or report.get("seconds") or {}).items()},
        warnings=list(report.get("warnings", [])),
        extra={"report": report})


def run_segmentation(study, model: Optional[str], device: str = "auto", options: Optional[dict[str, Any]] = None,
                     on_event: Optional[Callable[[dict[str, Any]], None]] = None, python: Optional[str] = None,
                     env: Optional[dict[str, str]] = None, work_dir: Optional[str | Path] = None,
                     timeout: Optional[float] = None) -> SegmentationResult:
    """Segment ``study`` in a worker process and return the result (blocking).

    The phases and outputs live in ``work_dir`` (default: a job folder of
    :mod:`~BreastDCESegLib.jobdirs`, removed at the end, on a signal, or by the next run
    when this process was killed). ``on_event`` sees every event. Raises the error matching an ``error`` event
    (:func:`error_from_event`); a run longer than ``timeout`` s is cancelled.
    """
    from . import jobdirs

    own_dir = work_dir is None
    folder = jobdirs.create_job_dir("worker") if own_dir else Path(work_dir)
    runner: Optional[WorkerRunner] = None
    try:
        runner = WorkerRunner(python=python, env=env).start(write_request(study, folder, model, device, options))
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            finished = runner.wait(0.05) is not None  # every event is queued before the run counts as ended
            events = runner.poll()
            for event in events:
                if on_event is not None:
                    on_event(event)
            if finished and not events:
                break
            if deadline is not None and time.monotonic() > deadline:
                runner.cancel(reason=f"The worker took longer than {timeout:g} s and was stopped.")
                deadline = None
        final = runner.final or {"event": "error", "kind": "internal", "message": "no final event"}
        if final["event"] != "done":
            raise error_from_event(final)
        return load_outputs(final, folder, study)
    except BaseException:  # e.g. Ctrl-C: no worker outlives its caller
        if runner is not None:
            runner.cancel(reason="The caller stopped.", wait=True)
        raise
    finally:
        if own_dir:
            jobdirs.remove_job_dir(folder)
