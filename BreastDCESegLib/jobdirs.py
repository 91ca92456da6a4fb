"""Temporary job folders: one per run, under one known parent, never left behind.

A job folder holds a copy of a patient's images (the phases written for the worker) and
the worker's outputs, so it must not outlive its run. Every folder is created under
:func:`jobs_root` (``$BREASTDCESEG_JOBS``, else ``<system temp>/breastdceseg-jobs-<user>``,
mode 0700) with an owner record beside it (``<name>.owner.json``: pid, process start time,
creation time). A folder is removed:

* when its run ends (:func:`job_dir` context manager, or :func:`remove_job_dir`);
* at interpreter exit and on SIGTERM/SIGINT, for every folder this process still owns
  (:func:`install_signal_cleanup`, installed by the command line and the batch);
* at the next start of any run (:func:`prune`, called by :func:`create_job_dir` once per
  process) when its owner process is gone, i.e. the run was killed (SIGKILL, power loss);
  folders that earlier versions left in the system's temporary folder are removed then too
  (:func:`prune_legacy`).

Usage::

    from BreastDCESegLib import jobdirs

    with jobdirs.job_dir("segment") as folder:     # <root>/segment-<pid>-<random>/
        ...                                         # removed on exit, error or signal

    folder = jobdirs.create_job_dir("panel")       # the caller removes it (or it is
    jobdirs.remove_job_dir(folder)                  #   pruned once this process is gone)

    # e.g. a long-lived panel keeping failed runs for inspection, pruning old ones:
    jobdirs.prune(older_than_s=24 * 3600, include_own=True)
"""

from __future__ import annotations

import atexit
import contextlib
import getpass
import json
import os
import re
import shutil
import signal
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Iterator, Optional

OWNER_SUFFIX = ".owner.json"
_owned: set[Path] = set()
_lock = threading.Lock()
_pruned_roots: set[Path] = set()
_signals_installed = False


def jobs_root() -> Path:
    """The parent of every job folder (created, private to the user)."""
    env = os.environ.get("BREASTDCESEG_JOBS")
    if env:
        root = Path(env)
    else:
        try:
            user = getpass.getuser()
        except Exception:  # noqa: BLE001 - no user name (containers): the uid will do
            user = str(getattr(os, "getuid", lambda: 0)())
        root = Path(tempfile.gettempdir()) / f"breastdceseg-jobs-{''.join(c for c in user if c.isalnum()) or 'user'}"
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    return root


def _process_start(pid: int) -> Optional[float]:
    import psutil

    try:
        return float(psutil.Process(pid).create_time())
    except (psutil.Error, OSError):
        return None


def owner_alive(owner: dict) -> bool:
    """True when the process that made a folder still runs (same pid and same start time)."""
    pid = int(owner.get("pid") or 0)
    if pid <= 0:
        return False
    started = _process_start(pid)
    if started is None:
        return False
    recorded = owner.get("process_start")
    return recorded is None or abs(float(recorded) - started) < 1.0  # else the pid was reused


def read_owner(folder: Path) -> Optional[dict]:
    """The owner record of a job folder, or None when missing/unreadable."""
    try:
        return json.loads(folder.with_name(folder.name + OWNER_SUFFIX).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def create_job_dir(prefix: str = "job", parent: Optional[Path] = None) -> Path:
    """A new, empty job folder owned by this process (stale folders are pruned first).

    The caller removes it with :func:`remove_job_dir`; if the process dies first, the next
    run's :func:`prune` removes it.
    """
    root = Path(parent) if parent is not None else jobs_root()
    root.mkdir(parents=True, exist_ok=True)
    if root.resolve() not in _pruned_roots:
        _pruned_roots.add(root.resolve())
        prune(root)
        if parent is None:
            prune_legacy()
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in prefix) or "job"
    folder = root / f"{safe}-{os.getpid()}-{uuid.uuid4().hex[:10]}"
    owner = {"pid": os.getpid(), "process_start": _process_start(os.getpid()), "created": time.time()}
    record = folder.with_name(folder.name + OWNER_SUFFIX)
    record.write_text(json.dumps(owner), encoding="utf-8")  # before the folder: never an ownerless folder
    folder.mkdir(mode=0o700)
    with _lock:
        _owned.add(folder)
    _install_atexit()
    return folder


def remove_job_dir(folder: Path) -> None:
    """Remove a job folder and its owner record (missing ones are fine)."""
    folder = Path(folder)
    shutil.rmtree(folder, ignore_errors=True)
    with contextlib.suppress(OSError):
        folder.with_name(folder.name + OWNER_SUFFIX).unlink()
    with _lock:
        _owned.discard(folder)


@contextlib.contextmanager
def job_dir(prefix: str = "job", parent: Optional[Path] = None) -> Iterator[Path]:
    """A job folder for the duration of a ``with`` block (removed on exit, error or signal)."""
    folder = create_job_dir(prefix, parent)
    try:
        yield folder
    finally:
        remove_job_dir(folder)


def prune(parent: Optional[Path] = None, older_than_s: Optional[float] = None,
          include_own: bool = False) -> list[Path]:
    """Remove job folders under ``parent`` (default :func:`jobs_root`); returns those removed.

    Always removed: folders whose owner process is gone (or without an owner record and
    older than one hour). With ``older_than_s``, also folders of live owners created longer
    ago than that; with ``include_own``, this process's own folders are candidates too
    (otherwise they are kept: they may be in use).
    """
    root = Path(parent) if parent is not None else jobs_root()
    if not root.is_dir():
        return []
    removed, now = [], time.time()
    for entry in root.iterdir():
        if entry.name.endswith(OWNER_SUFFIX):
            folder = entry.with_name(entry.name[: -len(OWNER_SUFFIX)])
            if not folder.exists() and now - _mtime(entry) > 60 and not owner_alive(read_owner(folder) or {}):
                with contextlib.suppress(OSError):
                    entry.unlink()  # a record whose folder is already gone
            continue
        if not entry.is_dir():
            continue
        owner = read_owner(entry)
        own = owner is not None and int(owner.get("pid") or 0) == os.getpid()
        if own and not include_own:
            continue
        if owner is None:
            stale = now - _mtime(entry) > 3600
        else:
            created = float(owner.get("created") or _mtime(entry))
            stale = not owner_alive(owner) or (older_than_s is not None and now - created > older_than_s)
        if stale:
            remove_job_dir(entry)
            removed.append(entry)
    return removed


LEGACY_NAME = re.compile(r"^(breastdceseg|BreastDCESeg)-[a-z0-9_]{8}$")


def prune_legacy(temp: Optional[Path] = None, older_than_s: float = 3600.0) -> list[Path]:
    """Remove job folders that versions before :mod:`jobdirs` left directly in the system's
    temporary folder (``breastdceseg-*``/``BreastDCESeg-*`` from ``mkdtemp``, holding a
    ``request.json``), when they belong to this user and are older than ``older_than_s``."""
    temp = Path(temp or tempfile.gettempdir())
    removed, now, uid = [], time.time(), getattr(os, "getuid", lambda: None)()
    try:
        entries = list(temp.iterdir())
    except OSError:
        return []
    for entry in entries:
        if not LEGACY_NAME.match(entry.name):  # exactly what mkdtemp(prefix=...) made, nothing else
            continue
        try:
            info = entry.lstat()
            if (not entry.is_dir() or entry.is_symlink() or (uid is not None and info.st_uid != uid)
                    or now - info.st_mtime < older_than_s or not (entry / "request.json").is_file()):
                continue
        except OSError:
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    return removed


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return time.time()


def cleanup_owned() -> None:
    """Remove every job folder this process still owns (at exit, on a signal)."""
    with _lock:
        folders = list(_owned)
    for folder in folders:
        remove_job_dir(folder)


def _install_atexit() -> None:
    if not getattr(_install_atexit, "done", False):
        atexit.register(cleanup_owned)
        _install_atexit.done = True  # type: ignore[attr-defined]


def install_signal_cleanup() -> None:
    """On SIGTERM/SIGINT, remove this process's job folders, then end as the signal would.

    Call once from the main thread of a command-line program (the batch, the CLI); a
    host application with its own signal handling (Slicer) relies on :func:`job_dir` and
    :func:`prune` instead.
    """
    global _signals_installed
    if _signals_installed or threading.current_thread() is not threading.main_thread():
        return
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(signum)

        def handler(sig, frame, previous=previous):
            cleanup_owned()
            if callable(previous) and previous not in (signal.SIG_IGN, signal.SIG_DFL):
                return previous(sig, frame)  # e.g. Python's KeyboardInterrupt for SIGINT
            if previous == signal.SIG_IGN:
                return None
            raise SystemExit(128 + sig)  # unwinds: finally blocks stop workers, remove folders

        signal.signal(signum, handler)
    _signals_installed = True
