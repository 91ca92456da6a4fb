"""Python packages the module needs inside Slicer, checked without importing them, installed on demand.

torch is installed through the PyTorch extension (``PyTorchUtils``), which picks the wheel
matching the GPU driver; the other packages through ``slicer.packaging.pip_ensure`` (Slicer
5.11+; ``slicer.pydeps`` in some previews) or ``slicer.util.pip_install`` on older Slicer.
Nothing here runs at import time: the widget calls :func:`missing_requirements` on Apply and
:func:`install` after the user confirmed. A custom worker interpreter (a GPU server's
environment) is the user's to provision, so torch and MONAI are not installed for it; the
packages Slicer's own process uses (psutil, scipy, jsonschema) are checked on every path.

Usage::

    missing = missing_requirements(needs_torch=True)   # e.g. ["torch>=2.1,<3", "monai>=1.3,<1.7"]
    if missing and slicer.util.confirmOkCancelDisplay("Install " + ", ".join(missing) + "?"):
        install(missing)
"""

import importlib
import importlib.metadata
import importlib.util
import inspect
from typing import Callable, Optional, Sequence

import slicer

# Needed in Slicer's own process (runner: process-tree kill; mrml statistics; registry validation).
BASE_REQUIREMENTS = ("psutil>=5.9,<8", "scipy>=1.10,<2", "jsonschema>=4,<5")
# Needed by the worker for network models (it runs in PythonSlicer, Slicer's own environment).
NETWORK_REQUIREMENTS = ("monai>=1.3,<1.7", "safetensors>=0.4,<1")
TORCH_REQUIREMENT = ">=2.1,<3"
REQUESTER = "BreastDCESeg"


def _satisfied(text: str) -> bool:
    from packaging.requirements import Requirement

    requirement = Requirement(text)
    try:
        installed = importlib.metadata.version(requirement.name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return requirement.specifier.contains(installed, prereleases=True)


def missing_requirements(needs_torch: bool, worker_in_slicer: bool = True, model_requirements=()) -> list:
    """Requirement strings not satisfied in Slicer's Python (torch first when it is missing).

    ``worker_in_slicer=False`` (the worker runs in another interpreter): only what Slicer's own
    process needs (:data:`BASE_REQUIREMENTS`). ``model_requirements``: what the model's family
    needs on top (``nnunetv2==2.6.0`` for nnU-Net models), for a worker in Slicer's Python."""
    needs_torch = needs_torch and worker_in_slicer
    wanted = BASE_REQUIREMENTS + (NETWORK_REQUIREMENTS if needs_torch else ()) \
        + (tuple(model_requirements) if worker_in_slicer else ())
    missing = [text for text in wanted if not _satisfied(text)]
    if needs_torch and importlib.util.find_spec("torch") is None:
        missing.insert(0, "torch" + TORCH_REQUIREMENT)
    return missing


def pip_ensure_function() -> Optional[Callable]:
    """Slicer's ``pip_ensure`` where this Slicer has one."""
    for name in ("slicer.packaging", "slicer.pydeps"):
        try:
            return importlib.import_module(name).pip_ensure
        except (ImportError, AttributeError):
            continue
    return None


def install_torch() -> None:
    from BreastDCESegLib.errors import MissingDependencyError

    try:
        import PyTorchUtils
    except ImportError as exc:
        raise MissingDependencyError("PyTorch is needed for this model: install the 'PyTorch' extension from the "
                                     "Extensions Manager, restart Slicer and press Apply again.") from exc
    logic = PyTorchUtils.PyTorchUtilsLogic()
    if logic.installTorch(askConfirmation=False, torchVersionRequirement=TORCH_REQUIREMENT) is None:
        raise MissingDependencyError("PyTorch was not installed. Install it in the 'PyTorch Utils' module "
                                     f"(version {TORCH_REQUIREMENT}) and press Apply again.")


def install(requirements: Sequence[str]) -> None:
    """Install ``requirements`` (as returned by :func:`missing_requirements`); the caller asked the user."""
    if any(text.startswith("torch") for text in requirements):
        install_torch()
    others = [text for text in requirements if not text.startswith("torch")]
    if not others:
        return
    ensure = pip_ensure_function()
    if ensure is None:
        slicer.util.pip_install(" ".join(others))
        return
    from packaging.requirements import Requirement

    accepted = inspect.signature(ensure).parameters
    options = {key: value for key, value in (("prompt_install", False), ("requester", REQUESTER)) if key in accepted}
    ensure([Requirement(text) for text in others], **options)
