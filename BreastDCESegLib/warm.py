"""Drive a warm worker process (:mod:`BreastDCESegLib.worker_serve`): many runs, one process.

A :class:`WarmWorker` starts ``<python> -m BreastDCESegLib.worker_serve`` on first use and keeps
it (torch imported, model cached) until it has been idle for ``idle_timeout`` seconds, until
:meth:`WarmWorker.close`, or until this process exits (the worker ends when its input pipe
closes). Each :meth:`WarmWorker.submit` returns a :class:`WarmRun` with the interface of
:class:`~BreastDCESegLib.runner.WorkerRunner` (``poll``, ``wait``, ``cancel``, ``is_running``,
``events``, ``final``, ``returncode``), so the panel and the batch treat both alike.

Usage::

    warm = WarmWorker(idle_timeout=600)
    run = warm.submit_study(study, folder, "kinetic", "cpu")   # shared memory, or files as fallback
    final = drive(run, on_event=print)                          # the done/error event
    result = runner.load_outputs(final, folder, study)
    warm.close()
"""

from __future__ import annotations

import collections
import itertools
import json
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

from .processes import new_group_options
from .runner import (FINAL_EVENTS, STDERR_TAIL_LINES, RunEvents, default_python, kill_tree, parse_line,
                     worker_environment)

DEFAULT_IDLE_TIMEOUT_S = 600.0


class WarmRun(RunEvents):
    """One request in a :class:`WarmWorker`; the :class:`~BreastDCESegLib.runner.WorkerRunner` interface."""

    def __init__(self, owner: "WarmWorker", job_id: str, release: Optional[Callable[[], None]] = None):
        super().__init__()
        self.owner, self.job_id, self._release = owner, job_id, release
        self.process: Optional[subprocess.Popen] = None  # the worker process it was sent to
        self.started_at: Optional[float] = None  # time.monotonic() of its 'started' event
        self.worker_ended = threading.Event()  # the worker itself has sent this job's final event
        self._finished = threading.Event()

    def _deliver(self, event: dict[str, Any], from_canceller: bool = False) -> bool:
        if event.get("event") == "started" and self.started_at is None:
            self.started_at = time.monotonic()  # a queued run's timeout counts from here
        if not super()._deliver(event, from_canceller):
            return False
        self._finished.set()
        return True

    def _on_final(self, event: dict[str, Any]) -> None:
        self.returncode = 0 if event["event"] == "done" else 1
        if self._release is not None:  # the shared block freed before the final event is published: its
            self._release()            # reader may look for it at once (idempotent)

    def is_running(self) -> bool:
        return not self._finished.is_set()

    def wait(self, timeout: Optional[float] = None) -> Optional[dict[str, Any]]:
        """Block until the final event; it, or None when ``timeout`` expired."""
        return self.final if self._finished.wait(timeout) else None

    def cancel(self, timeout: float = 5.0, reason: str = "Cancelled by the user.", wait: bool = False) -> None:
        """Stop the job, then deliver a ``cancelled`` error: a job that has not stopped after
        ``timeout`` s (no progress report reached) is stopped by ending the worker process first.
        Returns at once (the stopping runs on a thread; safe from the GUI thread) unless ``wait``."""
        with self._lock:
            if self.final is not None or self._cancel_reason is not None:
                return
            self._cancel_reason = reason

        def stop() -> None:
            self.owner._send({"op": "cancel", "job": self.job_id})
            if not self.worker_ended.wait(timeout):
                self.owner.kill(f"run {self.job_id} did not stop within {timeout:g} s of its cancellation")
            self._deliver({"event": "error", "kind": "cancelled", "message": reason}, from_canceller=True)

        stopper = threading.Thread(target=stop, name="warm-cancel", daemon=True)
        stopper.start()
        if wait:
            stopper.join()

    @property
    def stderr_tail(self) -> str:
        return self.owner.stderr_tail


class WarmWorker:
    """A long-lived worker process; see the module docstring.

    Args:
        python: interpreter (default :func:`~BreastDCESegLib.runner.default_python`).
        env: extra environment variables for the worker (e.g. ``CUDA_VISIBLE_DEVICES``).
        idle_timeout: seconds without a run after which the process is ended (None: never).
    """

    def __init__(self, python: Optional[str] = None, env: Optional[dict[str, str]] = None,
                 idle_timeout: Optional[float] = DEFAULT_IDLE_TIMEOUT_S):
        self.python = python or default_python()
        self.env = dict(env or {})
        self.idle_timeout = idle_timeout
        self.process: Optional[subprocess.Popen] = None
        self.pid: Optional[int] = None
        self._runs: dict[str, WarmRun] = {}
        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self._stderr: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        self._last_active = time.monotonic()
        self._idle_thread: Optional[threading.Thread] = None

    # ------------------------------------------------------------------ process
    def is_alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> "WarmWorker":
        """Start the process now (else on the first submit), e.g. while the first study is read."""
        with self._lock:
            self._ensure_started()
            self._last_active = time.monotonic()
        return self

    def _ensure_started(self) -> subprocess.Popen:
        if self.is_alive():
            return self.process
        self._stderr.clear()
        process = subprocess.Popen(  # a process group of its own: its tree is killed with or without psutil
            [self.python, "-u", "-m", "BreastDCESegLib.worker_serve"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self._environment(), text=True,
            encoding="utf-8", errors="replace", bufsize=1, **new_group_options())
        self.process, self.pid = process, process.pid
        threading.Thread(target=self._read_stdout, args=(process,), name="warm-stdout", daemon=True).start()
        threading.Thread(target=self._read_stderr, args=(process,), name="warm-stderr", daemon=True).start()
        if self.idle_timeout is not None and (self._idle_thread is None or not self._idle_thread.is_alive()):
            self._idle_thread = threading.Thread(target=self._idle_watch, name="warm-idle", daemon=True)
            self._idle_thread.start()
        return process

    def _environment(self) -> dict[str, str]:
        """The worker's environment; it watches this process's pid (ends when it dies) besides its input."""
        from .watchdog import PARENT_PID_VARIABLE

        return worker_environment({**self.env, PARENT_PID_VARIABLE: str(os.getpid())}, python=self.python)

    def _send(self, command: dict[str, Any]) -> bool:
        with self._lock:
            process = self.process
            if process is None or process.poll() is not None or process.stdin is None:
                return False
            try:
                process.stdin.write(json.dumps(command) + "\n")
                process.stdin.flush()
            except (BrokenPipeError, OSError, ValueError):
                return False
            return True

    def _read_stdout(self, process: subprocess.Popen) -> None:
        for line in process.stdout:
            if not line.strip():
                continue
            event = parse_line(line)
            job = event.pop("job", None)
            if event.get("event") == "ready":
                continue
            with self._lock:
                run = self._runs.get(str(job)) if job is not None else None
                if run is None and job is None and len(self._runs) == 1:
                    run = next(iter(self._runs.values()))  # a log line of the library, during the only run
            if run is None:
                continue
            if event.get("event") in FINAL_EVENTS:
                run.worker_ended.set()
                with self._lock:
                    self._runs.pop(run.job_id, None)
            run._deliver(event)
        code = process.wait()
        with self._lock:
            orphans = [r for r in self._runs.values() if r.process is process]
            for run in orphans:
                self._runs.pop(run.job_id, None)
        tail = "\n".join(self._stderr) or "(no output on stderr)"
        for run in orphans:
            run.worker_ended.set()
            run._deliver({"event": "error", "kind": "internal", "exit_code": code, "stderr_tail": tail,
                          "message": f"The worker process ended (exit code {code}) before the run finished. "
                                     f"Last lines of its error output:\n{tail}"})

    def _read_stderr(self, process: subprocess.Popen) -> None:
        for line in process.stderr:
            self._stderr.append(line.rstrip("\r\n"))

    def _idle_watch(self) -> None:
        while self.idle_timeout is not None:
            time.sleep(min(1.0, self.idle_timeout / 4))
            with self._lock:
                if self.process is None:
                    return
                if not self._runs and time.monotonic() - self._last_active > self.idle_timeout:
                    self._close_locked()
                    return

    def _close_locked(self, timeout: float = 5.0) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        try:
            process.stdin.write(json.dumps({"op": "exit"}) + "\n")
            process.stdin.close()
        except (BrokenPipeError, OSError, ValueError):
            pass
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            kill_tree(process.pid, timeout, popen=process)

    def close(self, timeout: float = 5.0) -> None:
        """End the worker process (running jobs are cancelled); a later submit starts a new one."""
        with self._lock:
            runs = list(self._runs.values())
        for run in runs:
            run.cancel(timeout, wait=True)
        with self._lock:
            self._close_locked(timeout)

    def kill(self, reason: str = "") -> None:
        """End the worker process now; its unfinished runs end with an ``internal`` error."""
        with self._lock:
            process = self.process
        if process is not None and process.poll() is None:
            kill_tree(process.pid, 5.0, popen=process)

    @property
    def stderr_tail(self) -> str:
        return "\n".join(self._stderr)

    # ------------------------------------------------------------------ runs
    def _new_run(self, release: Optional[Callable[[], None]] = None) -> WarmRun:
        run = WarmRun(self, f"r{next(self._ids)}", release)
        run.process = self.process
        self._runs[run.job_id] = run
        self._last_active = time.monotonic()
        return run

    def _start(self, command: dict[str, Any], release: Optional[Callable[[], None]] = None) -> WarmRun:
        with self._lock:
            self._ensure_started()
            run = self._new_run(release)
            sent = self._send({**command, "op": "run", "job": run.job_id})
        if not sent:
            run._deliver({"event": "error", "kind": "internal", "message": "Could not send the run to the worker "
                          f"process (it ended). Last lines of its error output:\n{self.stderr_tail}"})
        return run

    def submit(self, request_path: str | Path) -> WarmRun:
        """Run a ``request.json`` written by :func:`~BreastDCESegLib.runner.write_request`."""
        return self._start({"request_path": str(Path(request_path).resolve())})

    def submit_study(self, study, folder: str | Path, model: Optional[str], device: str = "auto",
                     options: Optional[dict[str, Any]] = None, shared: bool = True) -> WarmRun:
        """Run ``study`` with outputs in ``folder``: phases through shared memory when possible,
        else written to ``folder`` as for the one-shot worker."""
        from .handoff import share_study
        from .runner import write_request

        folder = Path(folder).resolve()
        block = share_study(study) if shared else None
        if block is None:
            return self.submit(write_request(study, folder, model, device, options))
        folder.mkdir(parents=True, exist_ok=True)
        options = {"compress_outputs": False, **(options or {})}  # read back at once by this machine
        request = {"times": list(study.times), "case_id": study.case_id, "model": model, "device": device,
                   "output_dir": str(folder), "options": options}
        return self._start({"request": request, "shared": block.descriptor}, release=block.release)


def drive(run, on_event: Optional[Callable[[dict[str, Any]], None]] = None,
          timeout: Optional[float] = None) -> dict[str, Any]:
    """Wait for a run (any runner with ``wait``/``poll``/``cancel``), passing its events to
    ``on_event``; a run longer than ``timeout`` s is cancelled. The time counts from the run's
    ``started`` event when the runner records it (``started_at``: a run queued behind another
    is not charged for the wait), else from this call. Returns the final event."""
    called = time.monotonic()
    armed = timeout is not None
    while True:
        ended = run.wait(0.05) is not None
        for event in run.poll():
            if on_event is not None:
                on_event(event)
        if ended:
            for event in run.poll():
                if on_event is not None:
                    on_event(event)
            return run.final
        since = getattr(run, "started_at", None) or called
        if armed and time.monotonic() > since + timeout:
            run.cancel(reason=f"The worker took longer than {timeout:g} s and was stopped.")
            armed = False


class WarmCase:
    """A study submitted to a :class:`WarmWorker` whose result is collected later, so that the
    caller can queue the next study (the worker reads it while this one runs) and write this
    one's outputs while the next one runs. Outputs come back uncompressed in a job folder of
    :mod:`~BreastDCESegLib.jobdirs`, removed once read.

    Usage::

        first = WarmCase(warm, study1, "kinetic", "cpu")
        second = WarmCase(warm, study2, "kinetic", "cpu")   # queued behind the first
        result1 = first.result(on_event=print)              # the worker already runs study2
    """

    def __init__(self, warm: WarmWorker, study, model: Optional[str], device: str = "auto",
                 options: Optional[dict[str, Any]] = None):
        self.warm, self.study, self.model, self.device, self.options = warm, study, model, device, options
        self.run: Optional[WarmRun] = None
        self.folder: Optional[Path] = None
        self._submit()

    def _submit(self) -> None:
        from . import jobdirs

        self.folder = jobdirs.create_job_dir("warm")  # under the known parent: pruned if this process is killed
        self.run = self.warm.submit_study(self.study, self.folder, self.model, self.device, self.options)

    def _orphaned(self, final: dict[str, Any]) -> bool:
        """The worker process ended before this run started (it was queued behind a run that
        crashed the process): the run never began and is sent again to a new process."""
        return final.get("event") == "error" and self.run.started_at is None and "exit_code" in final

    def result(self, on_event: Optional[Callable[[dict[str, Any]], None]] = None,
               timeout: Optional[float] = None):
        """Wait for the run (cancelled after ``timeout`` s from its start) and return its
        :class:`~BreastDCESegLib.results.SegmentationResult`; raises the error of an ``error`` event."""
        from . import jobdirs
        from .runner import error_from_event, load_outputs

        try:
            final = drive(self.run, on_event, timeout)
            if self._orphaned(final):
                jobdirs.remove_job_dir(self.folder)
                self._submit()
                final = drive(self.run, on_event, timeout)
            if final["event"] != "done":
                raise error_from_event(final)
            return load_outputs(final, self.folder, self.study)
        finally:
            jobdirs.remove_job_dir(self.folder)

    def cancel(self) -> None:
        """Stop the run (waits until it has stopped) and remove its job folder."""
        from . import jobdirs

        if self.run is not None and self.run.is_running():
            self.run.cancel(wait=True)
        jobdirs.remove_job_dir(self.folder)


def run_segmentation_warm(warm: WarmWorker, study, model: Optional[str], device: str = "auto",
                          options: Optional[dict[str, Any]] = None,
                          on_event: Optional[Callable[[dict[str, Any]], None]] = None,
                          timeout: Optional[float] = None):
    """:func:`~BreastDCESegLib.runner.run_segmentation` through a warm worker (blocking)."""
    return WarmCase(warm, study, model, device, options).result(on_event, timeout)
