"""Atomic output paths: write under a temporary name, rename into place at the end.

A crashed or killed writer therefore never leaves a half-written output under the final
name, and an existing output is never replaced unless ``overwrite=True``.

Usage::

    from BreastDCESegLib.io.atomic import atomic_path

    with atomic_path("out/tumor.nrrd") as tmp:      # tmp: out/.tmp-<random>-tumor.nrrd
        sitk.WriteImage(label, str(tmp))             # the real name appears only on success

    write_json("results/site_eval.json", summary)   # the same for one JSON document

The temporary name ends with the final file name, so writers that pick a format from the
extension (SimpleITK, ``.seg.nrrd``, ``.nii.gz``) still do. It also works for folders
(a DICOM series): the caller creates the temporary folder and fills it.

:class:`FileLock` is an inter-process lock that the operating system releases when its
holder dies (one writer per case id, one writer of ``summary.csv`` at a time).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Iterator, Optional, Union

from ..errors import OutputExistsError

PathLike = Union[str, "os.PathLike[str]"]


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        with contextlib.suppress(OSError):
            path.unlink()


def check_writable(final_path: PathLike, overwrite: bool = False) -> Path:
    """Raise :class:`OutputExistsError` if ``final_path`` exists and ``overwrite`` is False."""
    final = Path(final_path)
    if final.exists() and not overwrite:
        raise OutputExistsError(
            f"Output {final} already exists; choose another name or ask for overwrite=True.")
    return final


@contextlib.contextmanager
def atomic_path(final_path: PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``final_path``; rename it to ``final_path`` on success.

    On an exception inside the block the temporary file (or folder) is removed and the
    exception propagates; ``final_path`` is left as it was.

    Raises:
        OutputExistsError: ``final_path`` exists and ``overwrite`` is False (checked before
            and again after the block, so nothing is replaced that appeared meanwhile).
    """
    final = check_writable(final_path, overwrite)
    final.parent.mkdir(parents=True, exist_ok=True)
    temp = final.parent / f".tmp-{uuid.uuid4().hex[:12]}-{final.name}"
    try:
        yield temp
        if not temp.exists():
            raise FileNotFoundError(f"nothing was written to the temporary output {temp} for {final}")
        check_writable(final, overwrite)
        if temp.is_dir() and final.is_dir():
            _remove(final)  # os.replace cannot replace a non-empty folder
        os.replace(temp, final)
    finally:
        _remove(temp)


def write_json(path: PathLike, data: Any) -> Path:
    """``data`` as indented JSON (UTF-8, trailing newline) at ``path``, written atomically;
    an existing file is replaced, its folder created when missing."""
    final = Path(path)
    with atomic_path(final, overwrite=True) as tmp:
        tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return final


# ----------------------------------------------------------------------------- locks
class FileLock:
    """An exclusive inter-process lock on ``path`` (``fcntl.flock``; ``msvcrt`` on Windows).

    The operating system releases the lock when its holder exits or is killed, so a
    crashed writer never leaves a lock behind; the lock file itself stays (removing it
    would let two processes lock two different files of the same name).

    Usage::

        with FileLock("out/.breastdceseg-staging/case1.lock", timeout=600):
            ...                                   # one writer of case1 at a time
        lock = FileLock(path)
        if lock.acquire(timeout=0):               # try once, do not wait
            try: ...
            finally: lock.release()
    """

    def __init__(self, path: PathLike, timeout: Optional[float] = None, poll: float = 0.05):
        self.path = Path(path)
        self.timeout = timeout
        self.poll = poll
        self._fd: Optional[int] = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, timeout: Optional[float] = -1.0) -> bool:
        """Take the lock; wait up to ``timeout`` s (None: forever, 0: try once). True when taken."""
        if self._fd is not None:
            return True
        timeout = self.timeout if timeout == -1.0 else timeout
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(str(self.path), os.O_RDWR | os.O_CREAT, 0o600)
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        while True:
            if _try_lock(fd):
                self._fd = fd
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, 0)
                    os.write(fd, str(os.getpid()).encode())
                return True
            if deadline is not None and time.monotonic() >= deadline:
                os.close(fd)
                return False
            time.sleep(self.poll)

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            _unlock(fd)
            os.close(fd)

    def __enter__(self) -> "FileLock":
        if not self.acquire():
            raise TimeoutError(f"{self.path} is held by another process (pid {self.holder() or '?'}) "
                               f"for more than {self.timeout:g} s.")
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def holder(self) -> Optional[int]:
        """The pid written by the last holder (informative only)."""
        with contextlib.suppress(OSError, ValueError):
            return int(self.path.read_text().strip() or 0) or None
        return None


if os.name == "nt":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False

    def _unlock(fd: int) -> None:
        with contextlib.suppress(OSError):
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError:
            return False

    def _unlock(fd: int) -> None:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)


def fsync_tree(folder: PathLike) -> None:
    """Flush every file of ``folder`` and the folder itself to disk (best effort)."""
    folder = Path(folder)
    for path in [p for p in folder.rglob("*") if p.is_file()] + [folder]:
        with contextlib.suppress(OSError):
            fd = os.open(str(path), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def exchange_paths(a: PathLike, b: PathLike) -> bool:
    """Swap two existing paths in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``).

    Returns False, changing nothing, where the system or file system cannot (other
    platforms, old kernels, some network file systems); the caller then renames twice.
    """
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(str(a)), at_fdcwd, os.fsencode(str(b)), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EPERM):
        return False
    raise OSError(err, os.strerror(err), str(a), None, str(b))
