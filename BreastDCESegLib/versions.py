"""Which 3D Slicer versions the extension supports, and what is disabled on older ones.

Supported: Slicer 5.10 and later. Tested: the current stable release (5.12) and the preview
(5.13); the scene tests run in CI against both ``slicer-core`` wheels (5.12.4 and 5.13).
Everything the panel does exists from 5.10 on; the one feature that needs a newer Slicer than
older releases offer is the one-click refinement, built on ``vtkSlicerSegmentEditorLogic``
(a Slicer 5.10 addition). On an older Slicer it is disabled with :data:`REFINEMENT_MESSAGE`;
the rest works wherever the scene APIs it uses exist.

Features are detected (``hasattr`` on the ``slicer`` module), not inferred from version numbers,
so a backport or a custom build is judged by what it has.

Usage::

    from BreastDCESegLib import versions
    missing = versions.unavailable_features()          # {} on Slicer >= 5.10
    versions.require("refinements")                    # raises MissingDependencyError with the message
"""

from __future__ import annotations

import sys
from typing import Any, Optional

from .errors import MissingDependencyError

MINIMUM_SLICER = "5.10"
TESTED_SLICER = ("5.12", "5.13")  # stable, preview
TESTED_SLICER_CORE = ("5.12.4.0", "5.13.31053.0")  # the wheels CI runs the scene tests with
SUPPORTED_TEXT = (f"Supported Slicer versions: {MINIMUM_SLICER} and later (tested with {TESTED_SLICER[0]} stable "
                  f"and {TESTED_SLICER[1]} preview).")
REFINEMENT_MESSAGE = ("One-click refinements need Slicer {minimum} or later (vtkSlicerSegmentEditorLogic); this is "
                      "Slicer {version}. Use the Segment Editor's Islands and Margin effects instead, or update Slicer.")
# feature -> the slicer attributes it needs
FEATURES = {"refinements": ("vtkSlicerSegmentEditorLogic",)}


def slicer_version(slicer: Any = None) -> str:
    """'5.12.4' inside the application, the wheel's version under slicer-core, else 'unknown'."""
    slicer = slicer if slicer is not None else sys.modules.get("slicer")
    app = getattr(slicer, "app", None)
    if app is not None and hasattr(app, "majorVersion"):
        return f"{app.majorVersion}.{app.minorVersion}.{getattr(app, 'patchVersion', 0)}"
    try:
        import importlib.metadata

        return importlib.metadata.version("slicer-core")
    except Exception:  # noqa: BLE001 - no wheel metadata: not known
        return "unknown"


def unavailable_features(slicer: Any = None) -> dict[str, str]:
    """Feature name -> why it is disabled in this Slicer (empty when everything works)."""
    if slicer is None:
        import slicer  # noqa: F811 - the application's (or the wheel's) module
    out = {}
    for feature, attributes in FEATURES.items():
        if not all(hasattr(slicer, name) for name in attributes):
            out[feature] = REFINEMENT_MESSAGE.format(minimum=MINIMUM_SLICER, version=slicer_version(slicer))
    return out


def require(feature: str, slicer: Optional[Any] = None) -> None:
    """Raise :class:`MissingDependencyError` with the reason when ``feature`` is disabled here."""
    reason = unavailable_features(slicer).get(feature)
    if reason:
        raise MissingDependencyError(reason)
