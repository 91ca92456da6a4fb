"""Scene set-up: a stand-alone scene with the module logics this package needs, and the
logic lookup that works both there and in the Slicer application."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ATTR = "BreastDCESeg."  # prefix of every node attribute this package writes
_CONTEXTS: dict[str, "SceneContext"] = {}


@dataclass
class SceneContext:
    """A stand-alone scene with the application and module logics the functions here need."""

    scene: Any
    app_logic: Any
    logics: dict[str, Any] = field(default_factory=dict)

    def close(self) -> None:
        self.scene.Clear(1)
        for logic in self.logics.values():
            logic.SetMRMLScene(None)
        _CONTEXTS.pop(self.scene.GetAddressAsString("vtkMRMLScene"), None)


def new_scene() -> Any:
    """A ``vtkMRMLScene`` with Colors, Volumes, Segmentations, Sequences, SubjectHierarchy and
    Tables logics registered on a ``vtkSlicerApplicationLogic`` (the wheel has no application)."""
    return new_scene_context().scene


def new_scene_context() -> SceneContext:
    import slicer

    scene = slicer.vtkMRMLScene()
    app = slicer.vtkSlicerApplicationLogic()
    app.SetMRMLScene(scene)
    colors = app.GetColorLogic()
    colors.SetMRMLScene(scene)
    if scene.GetNumberOfNodesByClass("vtkMRMLColorTableNode") == 0:
        colors.AddDefaultColorNodes()
    app.SetModuleLogic("Colors", colors)
    context = SceneContext(scene, app, {"Colors": colors})
    for name, cls in (("Volumes", "vtkSlicerVolumesLogic"), ("Segmentations", "vtkSlicerSegmentationsModuleLogic"),
                      ("Sequences", "vtkSlicerSequencesLogic"), ("SubjectHierarchy", "vtkSlicerSubjectHierarchyModuleLogic"),
                      ("Tables", "vtkSlicerTablesLogic")):
        logic = getattr(slicer, cls)()
        logic.SetMRMLApplicationLogic(app)
        logic.SetMRMLScene(scene)
        app.SetModuleLogic(name, logic)
        context.logics[name] = logic
    _CONTEXTS[scene.GetAddressAsString("vtkMRMLScene")] = context
    return context


def module_logic(scene: Any, name: str) -> Any:
    """Module logic ``name`` for ``scene``: from :func:`new_scene`, else the Slicer application."""
    context = _CONTEXTS.get(scene.GetAddressAsString("vtkMRMLScene"))
    if context is not None:
        return context.logics.get(name) or context.app_logic.GetModuleLogic(name)
    import slicer

    app = getattr(slicer, "app", None)
    return app.applicationLogic().GetModuleLogic(name) if app is not None else None
