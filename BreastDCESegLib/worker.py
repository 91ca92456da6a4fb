"""The background worker: one segmentation in its own process, events as JSON lines.

The Slicer module (and the headless batch) never run a network in their own process.
They write the phases of a study and a ``request.json`` into a folder (see
:func:`BreastDCESegLib.runner.write_request`) and start::

    <python> -m BreastDCESegLib.worker request.json

``request.json``::

    {"phases": ["phase0.nrrd", "phase1.nrrd"],   # paths, relative to the request file allowed
     "times": [0.0, 90.0],                       # seconds after injection, or null
     "case_id": "case1", "model": "kinetic", "device": "auto",
     "output_dir": ".",                          # relative to the request file allowed
     "options": {}}                              # passed to inference.segment

Options the worker itself reads (all others go to the model):

* ``overwrite`` (bool, default False): replace existing outputs; ``compress_outputs`` (default True);
  ``tumor_summary`` (default True; False: no clinical measures in ``result.json``, the batch's own).
* ``debug_sleep_s`` (float, default 0), ``debug_sleep_at`` (default ``["load", "segment", "write"]``):
  *testing aid*, a sleep (announced by a ``log`` event) after loading, after segmenting and/or
  once every output is staged, so a test can cancel the worker at a known point.

Standard output carries only JSON objects, one per line, flushed::

    {"event": "started", "model": "kinetic", "device": "cpu", "pid": 1234, "case_id": "case1"}
    {"event": "progress", "stage": "load", "fraction": 1.0, "message": "2 phases"}
    {"event": "log", "level": "warning", "message": "..."}
    {"event": "done", "outputs": {"label": "tumor.nrrd", "probability": "prob.nrrd", "breast": "breast.nrrd",
                                  "result": "result.json"},   # + "uncertainty" (tta), "other_lesions"
     "output_dir": "/abs/out", "seconds": {"load": 0.1, ..., "write": 0.2, "total": 1.9}}
    {"event": "error", "kind": "bad-input", "message": "...", "detail": "traceback (internal only)"}

On CUDA out-of-memory, :func:`~BreastDCESegLib.inference.segment` retries with smaller batches, then on the CPU;
each warning it adds becomes a ``log`` event and is listed in ``done`` and ``result.json``.

Error kinds: ``bad-input``, ``out-of-memory``, ``missing-dependency``, ``internal`` (from the ``kind`` of
:mod:`BreastDCESegLib.errors` classes) and ``cancelled`` (terminated by a signal). Python warnings and ``logging``
records become ``log`` events; anything else printed goes to stderr. Outputs are renamed from temporary names
only when all are complete. Exit code 0 only after ``done``; 1 after ``error``; 2 for a wrong command line.
Never imports ``slicer``. A worker started by the runner stops when the runner's process dies (:mod:`.watchdog`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
import traceback
import warnings
from pathlib import Path
from typing import Any, Optional, TextIO

from .errors import BadInputError, BreastDCESegError
from .watchdog import start_parent_watchdog

OUTPUT_NAMES = {"label": "tumor.nrrd", "probability": "prob.nrrd", "breast": "breast.nrrd", "result": "result.json",
                "uncertainty": "uncertainty.nrrd", "other_lesions": "other_lesions.nrrd"}  # the last two when asked
WORKER_OPTIONS = ("overwrite", "debug_sleep_s", "debug_sleep_at", "compress_outputs", "tumor_summary")
SLEEP_POINTS = {"load": "after loading", "segment": "after segmenting", "write": "before renaming the outputs"}


class Terminated(BaseException):
    """Raised in the main thread when the worker receives SIGTERM/SIGINT (cancellation)."""


class EventWriter:  # ------------------------------------------------------------ event stream
    """Writes one JSON object per line to a text stream, flushed, from any thread."""

    def __init__(self, stream: TextIO):
        self.stream = stream
        self._lock = threading.Lock()
        self._reached: dict[str, float] = {}

    def emit(self, event: str, **fields: Any) -> None:
        line = json.dumps({"event": event, **fields}, default=_json_default)
        with self._lock:
            self.stream.write(line + "\n")
            self.stream.flush()

    def progress(self, stage: str, fraction: float, message: str = "") -> None:
        """A progress event; fractions are clipped to [0, 1] and never go back within a stage."""
        fraction = max(min(max(float(fraction), 0.0), 1.0), self._reached.get(stage, 0.0))
        self._reached[stage] = fraction
        self.emit("progress", stage=str(stage), fraction=round(fraction, 4), message=str(message))

    def log(self, level: str, message: str) -> None:
        self.emit("log", level=level, message=message)


class _EventLogHandler(logging.Handler):
    def __init__(self, events: EventWriter):
        super().__init__(level=logging.INFO)
        self.events = events

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.events.log(record.levelname.lower(), self.format(record))
        except Exception:  # never let logging kill the worker
            self.handleError(record)


def _json_default(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return repr(value)


@contextlib.contextmanager
def event_stdout():
    """Reserve the real stdout for events; everything else written to fd 1 goes to stderr.

    Yields an :class:`EventWriter` on a duplicate of the original stdout descriptor, then
    points descriptor 1 (C libraries) and ``sys.stdout`` (Python ``print``) at stderr.
    """
    sys.stdout.flush()
    event_fd = os.dup(1)
    os.dup2(2, 1)
    stream = os.fdopen(event_fd, "w", encoding="utf-8", buffering=1)
    old_stdout = sys.stdout
    sys.stdout = sys.stderr
    try:
        yield EventWriter(stream)
    finally:
        sys.stdout = old_stdout
        stream.close()


@contextlib.contextmanager
def captured_diagnostics(events: EventWriter):
    """Route Python warnings and logging records into ``log`` events."""
    handler = _EventLogHandler(events)
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(min(old_level or logging.INFO, logging.INFO))
    old_show = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        events.log("warning", f"{category.__name__}: {message} ({Path(filename).name}:{lineno})")

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = old_show
        root.removeHandler(handler)
        root.setLevel(old_level)


def _install_signal_handlers() -> None:
    def handler(signum, frame):
        raise Terminated(f"terminated by signal {signum}")

    for name in ("SIGTERM", "SIGINT", "SIGBREAK"):
        sig = getattr(signal, name, None)
        if sig is not None:
            with contextlib.suppress(ValueError, OSError):
                signal.signal(sig, handler)


# ----------------------------------------------------------------------------- request
def read_request(path: str | Path) -> dict[str, Any]:
    """Load and check ``request.json``; relative paths become absolute (relative to its folder).

    Raises:
        BadInputError: the file is missing, not JSON, or misses/garbles a field.
    """
    path = Path(path)
    try:
        request = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInputError(f"Request file {path} does not exist.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadInputError(f"Request file {path} is not valid JSON ({exc}).") from None
    if not isinstance(request, dict):
        raise BadInputError(f"Request file {path} must hold a JSON object.")
    phases = request.get("phases")
    if not isinstance(phases, list) or not all(isinstance(p, str) for p in phases):
        raise BadInputError(f"Request {path}: 'phases' must be a list of file paths.")
    if len(phases) < 2:
        raise BadInputError(
            f"Request {path} lists {len(phases)} phase(s); a DCE study needs a pre-contrast phase and "
            "at least one post-contrast phase. Add the post-contrast volumes.")
    base = path.resolve().parent
    request["phases"] = [str((base / p).resolve()) for p in phases]
    missing = [p for p in request["phases"] if not Path(p).exists()]
    if missing:
        raise BadInputError(f"Request {path}: phase file(s) not found: {', '.join(missing)}.")
    times = request.get("times")
    if times is not None and (not isinstance(times, list) or len(times) != len(phases)):
        raise BadInputError(f"Request {path}: 'times' must be null or a list of {len(phases)} numbers/nulls.")
    request["output_dir"] = str((base / str(request.get("output_dir") or ".")).resolve())
    options = request.get("options") or {}
    if not isinstance(options, dict):
        raise BadInputError(f"Request {path}: 'options' must be a JSON object.")
    request["options"] = options
    request.setdefault("model", None)
    request["device"] = request.get("device") or "auto"
    request["case_id"] = str(request.get("case_id") or "study")
    return request


def check_model(model: Optional[str]) -> None:
    """Fail early, before any data is read, when the model id is not in the registry."""
    try:
        from .models.registry import load_registry
    except ImportError:
        return  # registry not available: inference.segment reports the problem
    if model == "kinetic":
        return
    registry = load_registry()
    registry.get(model if model is not None else registry.default_id)


def planned_device(model: Optional[str], device: str) -> str:
    """The device the model will run on, as reported in the ``started`` event."""
    if model == "kinetic":
        return "cpu"  # weight-free method: numpy on the CPU whatever was asked
    if device != "auto":
        return device
    from .inference import resolve_device

    return str(resolve_device(device))


def _is_out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError"


# ----------------------------------------------------------------------------- stages
class Worker:
    """Runs one request, emitting events; :meth:`run` returns the process exit code."""

    def __init__(self, request: dict[str, Any], events: EventWriter):
        self.request = request
        self.events = events
        self.options = dict(request["options"])
        self.sleep_s = float(self.options.get("debug_sleep_s", 0.0) or 0.0)
        self.sleep_at = set(self.options.get("debug_sleep_at") or SLEEP_POINTS)
        self.seconds: dict[str, float] = {}

    def _debug_sleep(self, point: str) -> None:
        if self.sleep_s > 0 and point in self.sleep_at:
            self.events.log("debug", f"debug_sleep_s: sleeping {self.sleep_s:g} s {SLEEP_POINTS[point]}")
            time.sleep(self.sleep_s)

    def load(self):
        from .io import read_study

        started = time.perf_counter()
        self.events.progress("load", 0.0, f"reading {len(self.request['phases'])} phases")
        study = read_study(self.request["phases"], case_id=self.request["case_id"], times=self.request.get("times"))
        self.seconds["load"] = time.perf_counter() - started
        self.events.progress("load", 1.0, f"{study.n_phases} phases, size {list(study.size)}")
        return study

    def segment(self, study, device: str):
        """Run the model; out-of-memory retries (smaller batches, then the CPU) happen in inference."""
        from . import inference

        model_options = {k: v for k, v in self.options.items() if k not in WORKER_OPTIONS}
        return inference.segment(study, self.request["model"], device=device, progress=self.events.progress,
                                 options=model_options)

    def report(self, study, result) -> dict[str, Any]:
        report: dict[str, Any] = {
            "case_id": study.case_id,
            "model": result.model_id or self.request["model"],
            "device": result.device,
            "seconds": {k: round(float(v), 3) for k, v in {**self.seconds, **result.seconds}.items()},
            "warnings": list(result.warnings),
            "study": study.summary(),
        }
        try:
            from . import clinical
        except ImportError:
            report["warnings"].append("clinical measures unavailable (BreastDCESegLib.clinical missing)")
        else:
            if self.options.get("tumor_summary", True):  # False: the caller measures the tumor (the batch)
                report["tumor"] = clinical.summarize(result.tumor, study)
        extra = {k: v for k, v in (result.extra or {}).items() if _jsonable(v)}
        if extra:
            report["extra"] = extra
        return report

    def write(self, study, result) -> dict[str, str]:
        """Stage every output under a temporary name, then rename them all."""
        import SimpleITK as sitk

        from .io.atomic import atomic_path

        started = time.perf_counter()
        out = Path(self.request["output_dir"])
        out.mkdir(parents=True, exist_ok=True)
        images = {"label": result.tumor, "probability": result.probability, "breast": result.breast,
                  "uncertainty": result.uncertainty, "other_lesions": result.other_lesions}  # options tta, other_lesions
        names = {k: OUTPUT_NAMES[k] for k, img in images.items() if img is not None}
        names["result"] = OUTPUT_NAMES["result"]
        report = self.report(study, result)
        report["outputs"] = dict(names)
        overwrite = bool(self.options.get("overwrite", False))
        self.events.progress("write", 0.0, f"writing {len(names)} outputs to {out}")
        with contextlib.ExitStack() as stack:
            temps = {k: stack.enter_context(atomic_path(out / name, overwrite=overwrite)) for k, name in names.items()}
            for i, (key, image) in enumerate((k, images[k]) for k in names if k != "result"):
                if key not in ("probability", "uncertainty"):
                    image = sitk.Cast(image, sitk.sitkUInt8)
                sitk.WriteImage(image, str(temps[key]), useCompression=bool(self.options.get("compress_outputs", True)))
                self.events.progress("write", (i + 1) / len(names), f"staged {names[key]}")
            Path(temps["result"]).write_text(json.dumps(report, indent=2, default=_json_default), encoding="utf-8")
            self.events.progress("write", 0.99, "all outputs staged")
            self._debug_sleep("write")
        self.seconds["write"] = time.perf_counter() - started
        self.events.progress("write", 1.0, "outputs complete")
        return names

    def run(self) -> int:
        total = time.perf_counter()
        model = self.request["model"]
        device = planned_device(model, self.request["device"])
        self.events.emit("started", model=model, device=device, pid=os.getpid(), case_id=self.request["case_id"])
        check_model(model)
        study = self.load()
        self._debug_sleep("load")
        result = self.segment(study, device)
        for warning in result.warnings:  # e.g. "out of memory on cuda: ran on the CPU"
            self.events.log("warning", warning)
        for stage, secs in result.seconds.items():
            self.seconds.setdefault(stage, float(secs))
        self._debug_sleep("segment")
        outputs = self.write(study, result)
        self.seconds["total"] = time.perf_counter() - total
        self.events.emit("done", outputs=outputs, output_dir=self.request["output_dir"], model=result.model_id,
                         device=result.device, seconds={k: round(v, 3) for k, v in self.seconds.items()},
                         warnings=list(result.warnings))
        return 0


def _jsonable(value: Any) -> bool:
    try:
        return json.dumps(value) is not None
    except (TypeError, ValueError):
        return False


def error_fields(exc: BaseException) -> dict[str, Any]:
    """The ``error`` event fields for an exception (kind, message, and detail when internal)."""
    if isinstance(exc, Terminated):
        return {"kind": "cancelled", "message": f"The worker was cancelled ({exc})."}
    if isinstance(exc, BreastDCESegError):
        kind = exc.kind
    elif _is_out_of_memory(exc):
        kind = "out-of-memory"
    elif isinstance(exc, ImportError):
        kind = "missing-dependency"
    else:
        kind = "internal"
    fields = {"kind": kind, "message": str(exc) or type(exc).__name__, "type": type(exc).__name__}
    if kind == "internal":
        fields["detail"] = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return fields


def main(argv: Optional[list[str]] = None) -> int:
    """Entry point of ``python -m BreastDCESegLib.worker request.json``; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    with event_stdout() as events, captured_diagnostics(events):
        if len(argv) != 1 or argv[0] in ("-h", "--help"):
            events.emit("error", kind="bad-input",
                        message="usage: python -m BreastDCESegLib.worker request.json")
            return 2
        _install_signal_handlers()
        start_parent_watchdog()  # ends this worker when the process that started it dies
        try:
            return Worker(read_request(argv[0]), events).run()
        except BaseException as exc:  # noqa: BLE001 - every failure becomes an error event
            if isinstance(exc, SystemExit):
                raise
            events.emit("error", **error_fields(exc))
            return 1


if __name__ == "__main__":
    sys.exit(main())
