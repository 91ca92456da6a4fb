"""Scene fixture for tests that use the real MRML libraries of the ``slicer-core`` wheel.

Creates a ``vtkMRMLScene`` with a ``vtkSlicerApplicationLogic`` and the Colors (default colour
nodes), Volumes, Segmentations, Sequences, SubjectHierarchy and Tables logics registered
(:func:`BreastDCESegLib.mrml.new_scene_context`), and sets the attributes the wheel lacks but
``slicer.util`` reads (``slicer.mrmlScene``, ``slicer.modules.<name>.logic()``); everything is
restored and the scene cleared afterwards.

Usage in a test file::

    from slicer_scene import scene, slicer_context   # noqa: F401  (pytest fixtures)

    def test_something(scene):
        node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode")

or without pytest: ``with slicer_scene_context() as ctx: ctx.scene...``.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

slicer = pytest.importorskip("slicer", reason="the slicer-core wheel is not installed")

from BreastDCESegLib import mrml  # noqa: E402

_MODULE_NAMES = {"Colors": "colors", "Volumes": "volumes", "Segmentations": "segmentations",
                 "Sequences": "sequences", "SubjectHierarchy": "subjecthierarchy", "Tables": "tables"}
_MISSING = object()


@contextlib.contextmanager
def slicer_scene_context() -> Iterator[mrml.SceneContext]:
    """A scene with the logics registered and ``slicer.mrmlScene``/``slicer.modules`` set."""
    context = mrml.new_scene_context()
    saved = {name: getattr(slicer, name, _MISSING) for name in ("mrmlScene", "modules")}
    modules = SimpleNamespace(**{attr: SimpleNamespace(logic=(lambda lg=context.logics[name]: lg))
                                 for name, attr in _MODULE_NAMES.items() if name in context.logics})
    slicer.mrmlScene = context.scene
    slicer.modules = modules
    try:
        yield context
    finally:
        for name, value in saved.items():
            if value is _MISSING:
                delattr(slicer, name)
            else:
                setattr(slicer, name, value)
        context.close()


@pytest.fixture
def slicer_context() -> Iterator[mrml.SceneContext]:
    with slicer_scene_context() as context:
        yield context


@pytest.fixture
def scene(slicer_context: mrml.SceneContext):
    return slicer_context.scene
