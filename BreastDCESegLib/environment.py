"""Which models can run in this Python environment, and what to install for the others.

The network models need the deep-learning stack (PyTorch, MONAI, safetensors), which is
the package's ``[deep]`` extra; the weight-free ``kinetic`` model and everything else
(reading studies, kinetics, measures, outputs) need only the light dependencies. A model
whose packages are missing stops before any work with one line that says what to install
and that ``--model kinetic`` needs none of it.

Usage::

    from BreastDCESegLib import environment
    environment.missing_packages(spec)        # [] or e.g. ["torch", "monai"]
    environment.require_model(spec)           # raises MissingDependencyError (one line)
    environment.require_model_id(None)        # the registry default, same check

Presence is checked with :func:`importlib.util.find_spec` (nothing is imported), so the
check costs milliseconds even where torch is installed.
"""

from __future__ import annotations

import importlib.util
from typing import Any, Optional

from .errors import MissingDependencyError

#: import names of the deep-learning stack, in the order they are reported
DEEP_PACKAGES = ("torch", "monai", "safetensors")
#: the one command that installs them
DEEP_INSTALL = "pip install 'breastdceseg[deep]'"
#: the command that installs what nnU-Net models need (the ``nnunet`` family)
NNUNET_INSTALL = "pip install 'breastdceseg[nnunet]'"


def is_installed(module: str) -> bool:
    """True when ``module`` can be imported (found on the path; not imported)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken parent package, or a module with no spec
        return False


def required_packages(spec: Any) -> tuple[str, ...]:
    """Import names a registry model needs beyond the light dependencies."""
    if spec is None or getattr(spec, "is_kinetic", False):
        return ()
    if getattr(spec, "family", "") == "nnunet":  # nnU-Net results folders run through nnunetv2
        return ("torch", "nnunetv2")
    weights = str(getattr(spec, "weights", "") or "")
    return DEEP_PACKAGES if weights.endswith(".safetensors") else DEEP_PACKAGES[:2]


def missing_packages(spec: Any) -> list[str]:
    """The packages ``spec`` needs that this environment lacks (empty when it can run)."""
    return [name for name in required_packages(spec) if not is_installed(name)]


def missing_message(model_id: str, missing: list[str]) -> str:
    """The one-line explanation for a model that cannot run here."""
    if "nnunetv2" in missing:
        return (f"Model '{model_id}' needs {', '.join(missing)}, not installed in this Python environment: "
                f"run {NNUNET_INSTALL}, or use --model kinetic, which needs neither.")
    return (f"Model '{model_id}' needs {', '.join(missing)}, not installed in this Python environment: "
            f"run {DEEP_INSTALL} (or scripts/setup_env.sh in a clone), or use --model kinetic, "
            "which needs neither.")


def require_model(spec: Any) -> None:
    """Raise :class:`MissingDependencyError` (one line) when ``spec`` cannot run here."""
    missing = missing_packages(spec)
    if missing:
        raise MissingDependencyError(missing_message(spec.id, missing))


def require_model_id(model_id: Optional[str], registry: Any = None) -> None:
    """:func:`require_model` for a registry id (``None``: the registry default; "kinetic" always runs)."""
    if model_id == "kinetic":
        return
    from .models.registry import load_registry

    registry = registry or load_registry()
    require_model(registry.get(model_id))


def require_packages(names: tuple[str, ...], what: str) -> None:
    """Raise :class:`MissingDependencyError` (one line) when any of ``names`` is missing;
    ``what`` names the task (``"Training"``)."""
    missing = [name for name in names if not is_installed(name)]
    if missing:
        raise MissingDependencyError(f"{what} needs {', '.join(missing)}, not installed in this Python "
                                     f"environment: run {DEEP_INSTALL} (or scripts/setup_env.sh in a clone).")


def runs_here(spec: Any) -> str:
    """``"yes"`` or ``"needs torch, monai"``: the ``runs here`` column of ``breastdceseg models``."""
    missing = missing_packages(spec)
    return "yes" if not missing else "needs " + ", ".join(missing)
