"""Motion estimates kept on disk, so a re-run on the same study in another process (a cohort segmented
again with another model, ``batch`` restarted, the test suite) skips the registrations, the slow part
of motion correction (:mod:`.motion`; about 3 s of a 256 x 256 x 80 six-phase study).

Off unless a folder is given: the environment variable ``BREASTDCESEG_MOTION_STORE`` (read when
:func:`.motion.correct` runs, so it reaches ``segment``, ``batch`` and the worker processes they
start) or :func:`use`. One JSON file per study, named by a digest of what the estimates depend on:
the phase arrays and grid and the threshold (the key :func:`.motion.correct` remembers them by in
process) and the estimator itself, the bytes of ``motion.py`` and the SimpleITK version, so an
estimate made by other code is never read back. A file that cannot be read or does not hold
estimates of the study's phases is ignored (the phases are registered again and the file
replaced); files are written whole (a temporary file renamed), so a killed run leaves none
half-written. ``BREASTDCESEG_MOTION_STORE_READ_ONLY=1`` reads and never writes.

Usage::

    export BREASTDCESEG_MOTION_STORE=~/.cache/breastdceseg/motion   # then segment / batch as usual

    from BreastDCESegLib import motion_store
    motion_store.use("/data/motion-estimates")                      # in this process, or
    motion_store.use("Testing/data/motion_estimates", read_only=True)
    motion_store.use(None)                                          # off in this process
    motion_store.reset()                                            # the environment decides again
    with motion_store.using(None):                                  # off inside, as it was afterwards
        ...
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any, Iterator, Optional

ENV = "BREASTDCESEG_MOTION_STORE"
READ_ONLY_ENV = "BREASTDCESEG_MOTION_STORE_READ_ONLY"
_CHOSEN: Optional[tuple[Optional[Path], bool]] = None  # use(): (folder or None, read only); None: the environment


def use(folder: Optional[os.PathLike | str], read_only: bool = False) -> None:
    """Keep the estimates of this process in ``folder`` (``read_only``: read them, write none);
    None: no store in this process, whatever the environment says."""
    global _CHOSEN
    _CHOSEN = (None if folder is None else Path(folder).expanduser(), bool(read_only))


def reset() -> None:
    """Back to the environment variables (:data:`ENV`, :data:`READ_ONLY_ENV`)."""
    global _CHOSEN
    _CHOSEN = None


@contextlib.contextmanager
def using(folder: Optional[os.PathLike | str], read_only: bool = False) -> Iterator[None]:
    """:func:`use` inside the block; afterwards the store is the one chosen before (or the environment's)."""
    global _CHOSEN
    before = _CHOSEN
    use(folder, read_only)
    try:
        yield
    finally:
        _CHOSEN = before


def location() -> tuple[Optional[Path], bool]:
    """(folder in use or None, read only)."""
    if _CHOSEN is not None:
        return _CHOSEN
    folder = os.environ.get(ENV, "").strip()
    read_only = os.environ.get(READ_ONLY_ENV, "").strip().lower() in ("1", "true", "yes", "on")
    return (Path(folder).expanduser() if folder else None), read_only


@functools.lru_cache(maxsize=1)
def estimator_fingerprint() -> str:
    """Digest of the estimator: the bytes of ``motion.py`` and the SimpleITK version."""
    import SimpleITK as sitk

    code = (Path(__file__).resolve().parent / "motion.py").read_bytes()
    return hashlib.blake2b(code + sitk.Version.VersionString().encode(), digest_size=8).hexdigest()


def _name(key: tuple) -> str:
    text = json.dumps([*key, estimator_fingerprint()], default=float)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest() + ".json"


def _valid(estimates: Any, n_moving: int) -> bool:
    def six(values: Any) -> bool:
        return (isinstance(values, list) and len(values) == 6
                and all(isinstance(v, (int, float)) and math.isfinite(v) for v in values))

    return (isinstance(estimates, list) and len(estimates) == n_moving
            and all(isinstance(e, list) and len(e) == 2 and six(e[0]) and (e[1] is None or six(e[1]))
                    for e in estimates))


def load(key: tuple, n_moving: int) -> Optional[tuple]:
    """The estimates stored under ``key`` (:func:`.motion.correct`'s, without the estimator) for a
    study of ``n_moving`` post-contrast phases, as :func:`.motion.correct` keeps them, or None."""
    folder, _ = location()
    if folder is None:
        return None
    try:
        stored = json.loads((folder / _name(key)).read_text())
    except (OSError, ValueError):
        return None
    estimates = stored.get("estimates") if isinstance(stored, dict) else None
    if not _valid(estimates, n_moving):
        return None
    return tuple((tuple(float(v) for v in params), None if dropped is None else tuple(float(v) for v in dropped))
                 for params, dropped in estimates)


def save(key: tuple, estimates: tuple) -> bool:
    """Store ``estimates`` under ``key``; False where no folder is in use, it is read only or cannot be
    written (the run goes on: the store only saves time)."""
    folder, read_only = location()
    if folder is None or read_only:
        return False
    from .io.atomic import write_json

    body = {"estimator": estimator_fingerprint(),
            "estimates": [[list(params), None if dropped is None else list(dropped)] for params, dropped in estimates]}
    try:
        write_json(folder / _name(key), body)  # under a temporary name, then renamed
    except OSError:
        return False
    return True
