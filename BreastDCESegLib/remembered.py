"""A small in-process memory of expensive per-study results, so that a re-run on the same study
(another model, other options, the panel's re-run in the warm worker) skips the work.

Entries are keyed by a tuple the caller builds from everything that changes the result: the
exact arrays read (:func:`digest`), their grid (:func:`geometry`) and the settings. The last
``capacity`` entries are kept (least recently used dropped first); values are copied in and out
when they have a ``copy`` method, so a caller changing what it got back changes nothing here.

Usage::

    from BreastDCESegLib.remembered import Remembered, digest, geometry
    MASKS = Remembered(4)
    key = (digest(arrays), geometry(image), threshold)
    mask = MASKS.recall(key)
    if mask is None:
        mask = compute()
        MASKS.remember(key, mask)
    MASKS.clear()
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Any, Iterable, Optional

import numpy as np


def digest(arrays: Iterable[np.ndarray]) -> str:
    """BLAKE2b digest (32 hex characters) of the arrays' bytes, shapes and dtypes, in order."""
    h = hashlib.blake2b(digest_size=16)
    for array in arrays:
        array = np.ascontiguousarray(array)
        h.update(f"{array.shape}{array.dtype}".encode())
        h.update(memoryview(array).cast("B"))
    return h.hexdigest()


def geometry(image: Any) -> tuple:
    """A SimpleITK image's grid (size, spacing, origin, direction), rounded as a dictionary key."""
    return (tuple(image.GetSize()), tuple(np.round(image.GetSpacing(), 6)), tuple(np.round(image.GetOrigin(), 4)),
            tuple(np.round(image.GetDirection(), 6)))


def _copied(value: Any) -> Any:
    return value.copy() if hasattr(value, "copy") else value


class Remembered:
    """A thread-safe least-recently-used memory of ``capacity`` entries (callers may segment from
    several threads of one process)."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._entries: "OrderedDict[tuple, Any]" = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def recall(self, key: Optional[tuple]) -> Any:
        """The value remembered under ``key`` (a copy), or None (also for a None key)."""
        if key is None:
            return None
        with self._lock:
            if key not in self._entries:
                return None
            self._entries.move_to_end(key)
            return _copied(self._entries[key])

    def remember(self, key: Optional[tuple], value: Any) -> None:
        """Keep ``value`` (a copy) under ``key``; a None key keeps nothing."""
        if key is None:
            return
        with self._lock:
            self._entries[key] = _copied(value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
