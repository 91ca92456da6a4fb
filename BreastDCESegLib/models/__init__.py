"""Segmentation models: the network families of the five source papers, the registry,
and the weight-free kinetic method.

Importing this package does not import torch; ``build_network`` imports the family
module (and torch/MONAI) when called::

    from BreastDCESegLib.models import FAMILIES, build_network, family_module
    net = build_network("tsesnet", "small")          # nn.Module
    logits = net(x)                                  # x (B, P, D, H, W) -> (B, 1, D, H, W)
    loss = family_module("tsesnet").make_loss()(net.forward_train(x), target)

Each family module defines ``CONFIGS`` ({"small": ..., "paper": ...}), ``MIN_PHASES``,
``INPUT`` ("phases" or "pre"), ``build(config="small", **overrides)`` and ``make_loss()``;
a family whose network reads only its leading phases says how many in ``PHASES_READ``.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

FAMILIES: dict[str, str] = {
    "breast_unet": "BreastDCESegLib.models.breast_unet",
    "st_transformer": "BreastDCESegLib.models.st_transformer",
    "tsesnet": "BreastDCESegLib.models.tsesnet",
    "rst2g": "BreastDCESegLib.models.rst2g",
    "resunet": "BreastDCESegLib.models.resunet",
    "heterogeneity": "BreastDCESegLib.models.heterogeneity",
}
# published networks run with their authors' checkpoints (imported by the user), not trained here;
# their modules keep the contract above except ``make_loss`` and the small/paper configurations
PUBLISHED_FAMILIES: dict[str, str] = {
    "zhang2023": "BreastDCESegLib.models.zhang2023",
}


def family_module(family: str) -> ModuleType:
    """The module implementing ``family`` (imports torch and MONAI)."""
    from ..errors import MissingDependencyError, ModelError

    modules = {**FAMILIES, **PUBLISHED_FAMILIES}
    if family not in modules:
        raise ModelError(f"unknown network family {family!r}; known families: {', '.join(modules)}.")
    name = "." + modules[family].rsplit(".", 1)[1]
    try:
        return importlib.import_module(name, __name__)
    except ImportError as exc:
        if exc.name in ("torch", "monai"):
            from ..environment import DEEP_INSTALL

            raise MissingDependencyError(
                f"network family {family!r} needs {exc.name}, not installed in this Python environment: "
                f"run {DEEP_INSTALL}, or use --model kinetic, which needs neither.") from exc
        raise


def phases_read(family: str):
    """How many leading phases the networks of ``family`` read (``None``: all they are given).

    Normalisation statistics are computed over exactly these phases, so a site that
    acquires more phases does not change what the network sees.
    """
    if family not in FAMILIES:        # kinetic, and published networks that run their own pipelines
        return None
    return getattr(family_module(family), "PHASES_READ", None)


def build_network(family: str, config: str = "small", **overrides: Any):
    """Build the torch network of ``family`` in configuration ``config`` ("small" or "paper"),
    keyword overrides replacing entries of the configuration."""
    from ..errors import ModelError

    module = family_module(family)
    if config not in module.CONFIGS:
        raise ModelError(f"family {family!r} has no configuration {config!r}; "
                         f"choose one of {', '.join(module.CONFIGS)}.")
    return module.build(config, **overrides)
