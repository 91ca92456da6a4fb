"""The worker's parent watchdog: a worker whose Slicer (or batch process) died stops too.

The runner (:class:`BreastDCESegLib.runner.WorkerRunner`) starts the worker with its own pid in
``BREASTDCESEG_PARENT_PID`` and a stdin pipe it never writes (``BREASTDCESEG_WATCH_STDIN=1``).
The watchdog, a daemon thread in the worker, decides the parent is gone when

* stdin reaches end-of-file (the operating system closed the pipe: the parent died), or
* the parent pid no longer exists, or the worker's direct parent changed (re-parented), checked
  every ``interval_s`` seconds (Slicer starts ``PythonSlicer``, a launcher, so the direct parent
  is not always the runner; the pid names the runner itself).

Then it terminates the worker's process group (the worker and anything it started) with
SIGTERM, so that the worker unwinds (temporary outputs removed), and exits hard after
``grace_s`` seconds if a long native call does not return. Without the variables (a worker run
by hand) nothing is watched.

Usage (the worker's ``main`` does this)::

    start_parent_watchdog()
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from typing import Callable, Optional

PARENT_PID_VARIABLE = "BREASTDCESEG_PARENT_PID"
WATCH_STDIN_VARIABLE = "BREASTDCESEG_WATCH_STDIN"


def pid_exists(pid: int) -> bool:
    """Whether process ``pid`` exists (never signals it; psutil on Windows, where os.kill kills)."""
    if os.name == "nt":
        try:
            import psutil
        except ImportError:
            return True  # unknown: rely on the stdin pipe
        return psutil.pid_exists(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def terminate_self(grace_s: float) -> None:
    """SIGTERM to this process's group (or this process), then a hard exit after ``grace_s`` s."""
    try:  # stderr may be a pipe nobody reads any more
        print("breastdceseg worker: the process that started it is gone; stopping.", file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass
    try:
        if os.name != "nt" and os.getpgrp() == os.getpid():
            os.killpg(os.getpgrp(), signal.SIGTERM)
        else:
            os.kill(os.getpid(), signal.SIGTERM)
    except OSError:
        os._exit(3)
    time.sleep(grace_s)
    os._exit(3)


def start_parent_watchdog(interval_s: float = 0.5, grace_s: float = 10.0,
                          on_orphaned: Optional[Callable[[], None]] = None) -> list[threading.Thread]:
    """Start the watchdog threads (none when the runner did not ask for them); returns them."""
    parent = os.environ.get(PARENT_PID_VARIABLE, "")
    if not parent.isdigit():
        return []
    parent_pid, direct_parent = int(parent), os.getppid()
    fired = threading.Event()

    def orphaned() -> None:
        if not fired.is_set():
            fired.set()
            (on_orphaned or (lambda: terminate_self(grace_s)))()

    def poll_parent() -> None:
        while not fired.is_set():
            if not pid_exists(parent_pid) or (os.name != "nt" and os.getppid() != direct_parent):
                orphaned()
                return
            time.sleep(interval_s)

    def read_stdin(fd: int) -> None:  # os.read: no buffer lock held at interpreter shutdown
        try:
            while os.read(fd, 4096):
                pass
        except OSError:
            pass
        orphaned()

    threads = [threading.Thread(target=poll_parent, name="parent-watchdog", daemon=True)]
    if os.environ.get(WATCH_STDIN_VARIABLE) == "1" and sys.stdin is not None:
        threads.append(threading.Thread(target=read_stdin, args=(sys.stdin.fileno(),), name="stdin-watchdog",
                                        daemon=True))
    for thread in threads:
        thread.start()
    return threads
