"""Hand a study to a local worker process through shared memory instead of files.

Writing every phase to disk and reading it back costs two copies of the study and a file
system round trip per run. For a worker on the same machine the phases go into one
shared-memory block (:mod:`multiprocessing.shared_memory`); the worker copies them out and
rebuilds the :class:`~BreastDCESegLib.study.DCEStudy` with the same geometry and times. When
shared memory is unavailable or too small (containers often mount a 64 MB ``/dev/shm``)
:func:`share_study` returns None and the caller writes files as before.

Usage::

    block = share_study(study)              # None: use runner.write_request instead
    descriptor = block.descriptor           # JSON-able, sent to the worker
    ...                                     # in the worker: study_from_shared(descriptor)
    block.release()                         # once the worker has answered
"""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

SHM_HEADROOM = 1.5  # /dev/shm must hold this multiple of the study before it is used


@dataclass
class SharedStudy:
    """A study in a shared-memory block owned by this process."""

    shm: Any
    descriptor: dict[str, Any]

    def release(self) -> None:
        """Free the block (the worker has copied the phases or has gone)."""
        with contextlib.suppress(Exception):
            self.shm.close()
        with contextlib.suppress(Exception):
            self.shm.unlink()


def _room_for(nbytes: int) -> bool:
    if os.name != "posix" or not os.path.isdir("/dev/shm"):
        return os.name == "nt"
    try:
        return shutil.disk_usage("/dev/shm").free > SHM_HEADROOM * nbytes
    except OSError:
        return False


def share_study(study) -> Optional[SharedStudy]:
    """Copy the phases of ``study`` (as float32, ``(n, z, y, x)``) into shared memory; None when
    shared memory cannot hold them."""
    from multiprocessing import shared_memory

    import SimpleITK as sitk

    shape = (len(study.phases), *sitk.GetArrayViewFromImage(study.reference).shape)
    nbytes = int(np.prod(shape)) * 4
    if not _room_for(nbytes):
        return None
    try:
        shm = shared_memory.SharedMemory(create=True, size=max(nbytes, 1))
    except OSError:
        return None
    block = np.ndarray(shape, dtype=np.float32, buffer=shm.buf)
    try:
        for k, phase in enumerate(study.phases):  # one copy per phase, straight from the image buffer
            block[k] = sitk.GetArrayViewFromImage(phase)
    except BaseException:
        block = None
        SharedStudy(shm, {}).release()
        raise
    block = None  # no view may outlive the mapping (SharedMemory.close would fail)
    ref = study.reference
    descriptor = {"name": shm.name, "shape": list(shape), "dtype": "float32",
                  "spacing": list(ref.GetSpacing()), "origin": list(ref.GetOrigin()),
                  "direction": list(ref.GetDirection()), "times": list(study.times), "case_id": study.case_id}
    return SharedStudy(shm, descriptor)


def _attach(name: str):
    """Open an existing block without letting this process's resource tracker remove it at exit."""
    from multiprocessing import resource_tracker, shared_memory

    try:
        return shared_memory.SharedMemory(name=name, track=False)  # Python >= 3.13
    except TypeError:
        shm = shared_memory.SharedMemory(name=name)
        with contextlib.suppress(Exception):
            resource_tracker.unregister(shm._name, "shared_memory")  # the owner unlinks it
        return shm


def study_from_shared(descriptor: dict[str, Any]):
    """The :class:`~BreastDCESegLib.study.DCEStudy` described by ``descriptor`` (phases copied out).

    Raises:
        BadInputError: the block is gone (the sender cancelled or exited) or has the wrong size.
    """
    import SimpleITK as sitk

    from .errors import BadInputError
    from .study import DCEStudy

    try:
        shm = _attach(str(descriptor["name"]))
    except (FileNotFoundError, KeyError) as exc:
        raise BadInputError(f"The shared-memory study {descriptor.get('name')} is gone ({exc}); "
                            "the sender cancelled or exited.") from None
    try:
        shape = tuple(int(v) for v in descriptor["shape"])
        if int(np.prod(shape)) * 4 > shm.size:
            raise BadInputError(f"The shared-memory study {descriptor['name']} is smaller than its shape {shape}.")
        block = np.ndarray(shape, dtype=np.float32, buffer=shm.buf)
        images = [sitk.GetImageFromArray(phase) for phase in block]  # each copied once, into its image
    finally:
        block = None  # no view may outlive the mapping
        shm.close()
    for image in images:
        image.SetSpacing(descriptor["spacing"])
        image.SetOrigin(descriptor["origin"])
        image.SetDirection(descriptor["direction"])
    return DCEStudy(phases=images, times=list(descriptor.get("times") or [None] * len(images)),
                    metadata={"handoff": "shared-memory"}, case_id=str(descriptor.get("case_id") or "study"))
