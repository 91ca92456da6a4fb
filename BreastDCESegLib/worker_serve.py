"""The warm worker: one process serving many segmentation requests, the model kept loaded.

:mod:`BreastDCESegLib.worker` runs one request and exits; this mode keeps the process (torch
imported, networks cached by :func:`BreastDCESegLib.inference.get_network`) alive between
requests, and reads the next case while the current one runs. The panel keeps one between
runs, the headless batch uses one for a whole cohort and the HTTP server runs N of them
(:class:`BreastDCESegLib.warm.WarmWorker` is the driver)::

    <python> -m BreastDCESegLib.worker_serve

Standard input carries one JSON command per line::

    {"op": "run", "job": "j1", "request_path": "/tmp/x/request.json"}      # phases in files
    {"op": "run", "job": "j2", "request": {...}, "shared": {...}}         # phases in shared memory
    {"op": "cancel", "job": "j1"}
    {"op": "exit"}

``request`` has the fields of ``request.json`` (see :mod:`BreastDCESegLib.worker`;
``output_dir`` absolute); ``shared`` describes a shared-memory block made by
:func:`BreastDCESegLib.handoff.share_study`. Standard output carries the worker's events
(started, progress, log, done, error), each with a ``"job"`` field, plus
``{"event": "ready", "pid": ...}`` once at start. Python warnings and logging records become
``log`` events without a ``job``. Jobs run one at a time, in order; the study of the next job is
read on a second thread while the current one runs. ``cancel`` stops a job at its next
progress report (or at once if it has not started): its final event is an ``error`` of kind
``cancelled``. End of input (the parent exited or closed the pipe), ``exit`` or SIGTERM end
the process; a running job is cancelled first.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import queue
import sys
import threading
import time
from pathlib import Path
from typing import Any, Optional

from .errors import BadInputError
from .worker import (EventWriter, Terminated, Worker, _install_signal_handlers, captured_diagnostics, error_fields,
                     event_stdout, read_request)
from .watchdog import start_parent_watchdog

EXIT_GRACE_S = 10.0  # after end of input, a job that does not stop at a progress report is abandoned


class Cancelled(Terminated):
    """Raised inside a job when its cancellation was asked for (the process goes on)."""


class JobEvents(EventWriter):
    """The events of one job: tagged with its id, sharing the process's stream; a progress report
    raises :class:`Cancelled` once the job is cancelled."""

    def __init__(self, base: EventWriter, job_id: str, cancelled: threading.Event):
        super().__init__(base.stream)
        self._lock = base._lock
        self.job_id = job_id
        self.cancelled = cancelled

    def emit(self, event: str, **fields: Any) -> None:
        super().emit(event, job=self.job_id, **fields)

    def progress(self, stage: str, fraction: float, message: str = "") -> None:
        if self.cancelled.is_set():
            raise Cancelled("cancel requested")
        super().progress(stage, fraction, message)


class WarmJob(Worker):
    """A :class:`~BreastDCESegLib.worker.Worker` whose study was (or is being) read ahead."""

    def __init__(self, request: dict[str, Any], events: JobEvents, study_future: "concurrent.futures.Future"):
        super().__init__(request, events)
        self.study_future = study_future

    def _debug_sleep(self, point: str) -> None:  # interruptible by cancel
        from .worker import SLEEP_POINTS

        if self.sleep_s > 0 and point in self.sleep_at:
            self.events.log("debug", f"debug_sleep_s: sleeping {self.sleep_s:g} s {SLEEP_POINTS[point]}")
            if self.events.cancelled.wait(self.sleep_s):
                raise Cancelled("cancel requested")

    def load(self):
        started = time.perf_counter()
        self.events.progress("load", 0.0, "reading the study (read ahead while the previous job ran)")
        study, seconds = self.study_future.result()
        self.seconds["load"] = seconds + (time.perf_counter() - started)
        self.events.progress("load", 1.0, f"{study.n_phases} phases, size {list(study.size)}")
        return study


def request_from_dict(request: dict[str, Any]) -> dict[str, Any]:
    """Check and complete a request given inline (shared-memory hand-off): no phase files."""
    if not isinstance(request, dict) or not request.get("output_dir"):
        raise BadInputError("An inline request must be a JSON object with an absolute 'output_dir'.")
    options = request.get("options") or {}
    if not isinstance(options, dict):
        raise BadInputError("The request's 'options' must be a JSON object.")
    return {"phases": [], "times": request.get("times"), "case_id": str(request.get("case_id") or "study"),
            "model": request.get("model"), "device": request.get("device") or "auto",
            "output_dir": str(Path(request["output_dir"]).resolve()), "options": options}


def _read_study(request: dict[str, Any], shared: Optional[dict[str, Any]]):
    """(study, seconds): from shared memory or from the phase files of the request."""
    started = time.perf_counter()
    if shared is not None:
        from .handoff import study_from_shared

        study = study_from_shared(shared)
        study.case_id = request["case_id"]
    else:
        from .io import read_study

        study = read_study(request["phases"], case_id=request["case_id"], times=request.get("times"))
    return study, time.perf_counter() - started


class Server:
    """The command loop of a warm worker process (see the module docstring)."""

    def __init__(self, events: EventWriter):
        self.events = events
        self.jobs: "queue.Queue[Optional[tuple]]" = queue.Queue()
        self.cancelled: dict[str, threading.Event] = {}
        self.reader = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="read-ahead")
        self.stopping = threading.Event()

    def _submit(self, command: dict[str, Any]) -> None:
        job_id = str(command.get("job") or "")
        events = JobEvents(self.events, job_id, self.cancelled.setdefault(job_id, threading.Event()))
        try:
            if "request_path" in command:
                request = read_request(command["request_path"])
            else:
                request = request_from_dict(command.get("request"))
        except BaseException as exc:  # noqa: BLE001 - a bad request fails its job, not the process
            events.emit("error", **error_fields(exc))
            return
        future = self.reader.submit(_read_study, request, command.get("shared"))
        self.jobs.put((request, events, future))

    def read_commands(self, stream) -> None:
        """Reader thread: run/cancel/exit commands until end of input."""
        for line in stream:
            try:
                command = json.loads(line)
            except json.JSONDecodeError:
                self.events.log("warning", "ignored a command line that is not JSON")
                continue
            op = command.get("op") if isinstance(command, dict) else None
            if op == "run":
                self._submit(command)
            elif op == "cancel":
                self.cancelled.setdefault(str(command.get("job")), threading.Event()).set()
            elif op == "exit":
                break
        self.stop()

    def stop(self) -> None:
        """Cancel every job and end the loop; the process exits even if a job does not stop."""
        self.stopping.set()
        for flag in list(self.cancelled.values()):
            flag.set()
        self.jobs.put(None)
        timer = threading.Timer(EXIT_GRACE_S, lambda: os._exit(0))
        timer.daemon = True
        timer.start()

    def run_one(self, request: dict[str, Any], events: JobEvents, future) -> None:
        if events.cancelled.is_set():
            future.cancel()
            events.emit("error", kind="cancelled", message="The job was cancelled before it started.")
            return
        try:
            WarmJob(request, events, future).run()
        except Cancelled as exc:
            events.emit("error", **error_fields(exc))
        except Terminated as exc:  # SIGTERM: report, then leave
            events.emit("error", **error_fields(exc))
            self.stop()
        except Exception as exc:  # noqa: BLE001 - every failure becomes an error event; the process goes on
            events.emit("error", **error_fields(exc))
        finally:
            self.cancelled.pop(events.job_id, None)

    def serve(self) -> int:
        self.events.emit("ready", pid=os.getpid())
        while True:
            item = self.jobs.get()
            if item is None or self.stopping.is_set():
                if item is not None:
                    item[1].emit("error", kind="cancelled", message="The worker is shutting down.")
                    continue
                break
            self.run_one(*item)
        self.reader.shutdown(wait=False, cancel_futures=True)
        return 0


def main(argv: Optional[list[str]] = None) -> int:
    """Entry point of ``python -m BreastDCESegLib.worker_serve``; returns the exit code."""
    stdin = sys.stdin
    with event_stdout() as events, captured_diagnostics(events):
        _install_signal_handlers()
        start_parent_watchdog()  # the pid of the process that started it (input end-of-file is watched here)
        server = Server(events)
        threading.Thread(target=server.read_commands, args=(stdin,), name="commands", daemon=True).start()
        try:
            return server.serve()
        except Terminated:
            return 0


if __name__ == "__main__":
    sys.exit(main())
