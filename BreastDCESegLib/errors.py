"""Exception types shared by every stage.

Each carries a message meant for a person: what is wrong, which file, what to do.
The worker maps them onto the ``error`` event kinds of the JSON-lines protocol::

    BadInputError          -> "bad-input"
    MissingDependencyError -> "missing-dependency"
    DeviceOutOfMemoryError -> "out-of-memory"
    anything else          -> "internal"
"""

from __future__ import annotations


class BreastDCESegError(Exception):
    """Base class of the errors this package raises on purpose."""

    kind = "internal"


class BadInputError(BreastDCESegError, ValueError):
    """The input data cannot be used (wrong shape, no post-contrast phase, unreadable file...)."""

    kind = "bad-input"


class ModelError(BreastDCESegError):
    """A model cannot be found, verified or loaded (unknown id, checksum mismatch...)."""

    kind = "bad-input"


class MissingDependencyError(BreastDCESegError, ImportError):
    """An optional dependency (torch, MONAI, highdicom...) is needed but not installed."""

    kind = "missing-dependency"


class DeviceOutOfMemoryError(BreastDCESegError, MemoryError):
    """The accelerator ran out of memory even after the retries."""

    kind = "out-of-memory"


class UsageError(BreastDCESegError, ValueError):
    """An argument or path of a command cannot be used (unknown device, CUDA absent, output
    folder not writable, timeout <= 0); the command stops before any model runs, exit code 2."""

    kind = "bad-input"


class OutputExistsError(BreastDCESegError, FileExistsError):
    """An output file exists and overwriting was not asked for."""

    kind = "bad-input"
