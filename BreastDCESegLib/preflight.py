"""Checks before any model runs, and one line per failure after.

Every command (``segment``, ``batch``, ``demo``, ``evaluate``) validates its arguments and
paths first — device name and availability, input present, output folder creatable and
writable with some free space, timeout a positive number — and stops with one line and exit
code 2 (:class:`~BreastDCESegLib.errors.UsageError`). Failures of the environment during a
run (disk full, read-only folder, permission denied) also stop the run with exit code 2
(:func:`environment_failure`); anything else is reported for its case, in one line of
plain text (:func:`one_line`), and the cohort goes on.

Usage::

    from BreastDCESegLib import preflight
    preflight.check_device("cuda")             # UsageError when CUDA is not available here
    preflight.check_output_dir("pred")         # created, writable, free space
    parser.add_argument("--timeout", type=preflight.positive_seconds)
    preflight.one_line(exc)                    # 'internal error: ZeroDivisionError: division by zero'
"""

from __future__ import annotations

import argparse
import errno
import math
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Optional

from .errors import BreastDCESegError, UsageError

EXIT_CODES = ("exit codes: 0 every case ok or skipped (complete outputs already there are kept, never "
              "overwritten without --overwrite); 1 at least one case failed (the others were processed); "
              "2 nothing ran or the run stopped: bad arguments or paths, device not available, a missing "
              "package, or a failure of the machine (disk full, read-only folder)")
DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
MIN_FREE_MB = 50
ENVIRONMENT_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, getattr(errno, "EDQUOT", -1)}
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-_]")
_PROBE = ("import json, torch; print(json.dumps({'cuda': torch.cuda.is_available(), 'n': torch.cuda.device_count(), "
          "'mps': bool(getattr(torch.backends, 'mps', None) and torch.backends.mps.is_available()), "
          "'version': torch.__version__}))")


# ----------------------------------------------------------------------------- arguments
def positive_seconds(text: str) -> float:
    """argparse type: a finite number of seconds > 0 (``0``, ``-5``, ``nan``, ``inf`` refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give a finite number of seconds greater than 0")
    return value


def check_device(device: str, python: Optional[str] = None) -> str:
    """``device`` if it names a device that exists for the worker's interpreter (``python``,
    default this one); else :class:`UsageError`."""
    device = str(device or "auto")
    if not DEVICE_PATTERN.match(device):
        raise UsageError(f"--device {device!r} is not a device: use auto, cpu, cuda, cuda:N or mps.")
    if device in ("auto", "cpu"):
        return device
    info = _torch_devices(python)
    if info is None:
        raise UsageError(f"--device {device} needs PyTorch, which is not installed for "
                         f"{python or 'this Python'}; use --device cpu (or auto), or install PyTorch.")
    if device == "mps" and not info.get("mps"):
        raise UsageError("--device mps: Apple MPS is not available here; use --device cpu or auto.")
    if device.startswith("cuda"):
        index = int(device.split(":")[1]) if ":" in device else 0
        if not info.get("cuda"):
            raise UsageError(f"--device {device}: CUDA is not available (PyTorch {info.get('version')}, "
                             "no usable NVIDIA GPU or a CPU-only build); use --device cpu or auto.")
        if index >= int(info.get("n") or 0):
            raise UsageError(f"--device {device}: only {info.get('n')} CUDA device(s) (cuda:0..."
                             f"cuda:{int(info.get('n')) - 1}).")
    return device


def _torch_devices(python: Optional[str]) -> Optional[dict]:
    import json
    import sys

    if python is None or Path(python).resolve() == Path(sys.executable).resolve():
        try:
            import torch
        except ImportError:
            return None
        return {"cuda": torch.cuda.is_available(), "n": torch.cuda.device_count(), "version": torch.__version__,
                "mps": bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())}
    try:
        proc = subprocess.run([python, "-c", _PROBE], capture_output=True, text=True, timeout=180)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UsageError(f"--python {python} cannot be run ({exc}).") from exc
    if proc.returncode != 0:
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def check_model(model_id: Optional[str]) -> None:
    """:class:`UsageError` when ``model_id`` is not in the registry (None: the default), or its
    weights are at a refused place (a non-http URL, a path outside the registry's folder) or
    of another size than declared."""
    from .errors import ModelError
    from .models.registry import load_registry

    try:
        spec = load_registry().get(model_id)
        if spec.weights and not spec.is_url:  # where the weights are and their size; hashing comes later
            from .models.weights_source import check_local_path, verify_size

            path = check_local_path(spec.weights, spec.source, spec.id)
            if path.is_file():
                verify_size(path, spec.bytes, spec.id)
        elif spec.weights:
            from .models.weights_source import check_url

            check_url(spec.weights, spec.id)
    except ModelError as exc:
        raise UsageError(plain_text(str(exc))) from exc


def check_input(path: str | Path, what: str = "--input") -> Path:
    """``path`` when it exists, else :class:`UsageError`."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"{what} {path} does not exist.")
    return path


def check_output_dir(path: str | Path, what: str = "--output") -> Path:
    """Create ``path`` if needed and check that files can be written there (with some space)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{what} {path} is a file, not a folder; give a folder for the outputs.")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".breastdceseg-write-test-"):
            pass
    except OSError as exc:
        raise UsageError(f"{what} {path} is not writable ({exc.strerror or exc}); choose another folder.") from exc
    free_mb = shutil.disk_usage(path).free / 2**20
    if free_mb < MIN_FREE_MB:
        raise UsageError(f"{what} {path}: only {free_mb:.0f} MB free on its disk; free some space "
                         f"(at least {MIN_FREE_MB} MB) or choose another folder.")
    return path


# ----------------------------------------------------------------------------- failures
def environment_failure(exc: BaseException) -> Optional[str]:
    """One line when ``exc`` is a failure of the machine (disk full, read-only, no permission)
    that will fail every further case too; None otherwise."""
    if isinstance(exc, OSError) and exc.errno in ENVIRONMENT_ERRNOS:
        where = f" {exc.filename}" if exc.filename else ""
        return f"cannot write{where}: {exc.strerror or exc} (errno {exc.errno}); nothing further was written."
    return None


def plain_text(message: str, limit: int = 400) -> str:
    """``message`` as one line of plain text: no ANSI escapes, no traceback frames."""
    text = _ANSI.sub("", str(message))
    lines, in_traceback = [], False
    for raw in text.splitlines():
        line = "".join(c for c in raw if c.isprintable()).strip()
        if line.startswith("Traceback (most recent call last)"):
            in_traceback = True
            continue
        if in_traceback and (raw.startswith((" ", "\t")) or not line or line.startswith("^")):
            continue  # a frame, its source line, or a caret marker
        in_traceback = False
        if line:
            lines.append(line)
    out = " ".join(lines)
    return out if len(out) <= limit else out[: limit - 1] + "…"


def one_line(exc: BaseException, limit: int = 1000) -> str:
    """The per-case message: our errors as they are; others named as internal errors."""
    if isinstance(exc, BreastDCESegError):
        return plain_text(str(exc), limit) or type(exc).__name__
    return plain_text(f"internal error: {type(exc).__name__}: {exc}", limit)
