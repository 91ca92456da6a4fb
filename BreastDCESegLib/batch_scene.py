"""The batch's MRML scene: cases shown in Slicer while a cohort runs, without keeping them all.

Inside the Slicer application the batch adds each case (phase volumes, sequence, AI
segmentation, under a subject-hierarchy study item) to Slicer's scene once its files are
written, so the last results can be looked at. Only the last ``keep`` cases stay (default 1;
0: none): older cases are removed with all their nodes, so a cohort of hundreds of studies
does not pile up in memory. Under plain Python the same happens with ``--scene`` in a scene of
its own (``slicer-core`` wheel).

Usage::

    scene = application_scene() or standalone_scene()
    add_to_scene(scene, study, result, "case7", keep=1)   # case7 in, the case before it out
"""

from __future__ import annotations

import sys
from typing import Any

ORDER_ATTRIBUTE = "BreastDCESeg.BatchOrder"  # on the study item: the order cases were added in


def application_scene() -> Any:
    """Slicer's scene when running inside the Slicer application, else None."""
    slicer = sys.modules.get("slicer")  # already imported inside the application; never imported here
    return None if slicer is None else getattr(slicer, "mrmlScene", None)


def standalone_scene() -> Any:
    """A new MRML scene from the ``slicer-core`` wheel (plain Python with ``--scene``)."""
    from . import mrml

    return mrml.new_scene()


def batch_cases(scene: Any) -> list[str]:
    """Case names the batch added to ``scene`` and that are still there, oldest first."""
    import vtk

    sh = scene.GetSubjectHierarchyNode()
    ids = vtk.vtkIdList()
    sh.GetItemChildren(sh.GetSceneItemID(), ids)
    found = []
    for item in (ids.GetId(i) for i in range(ids.GetNumberOfIds())):
        order = sh.GetItemAttribute(item, ORDER_ATTRIBUTE)
        if order:
            found.append((int(order), sh.GetItemName(item)))
    return [name for _, name in sorted(found)]


def add_to_scene(scene: Any, study: Any, result: Any, case_id: str, keep: int = 1) -> Any:
    """The case's phase volumes (with sequence) and AI segmentation node; then only the last
    ``keep`` batch cases stay in the scene. Returns the segmentation node (None when ``keep`` is 0)."""
    from . import mrml

    previous = batch_cases(scene)
    volumes = mrml.add_study(scene, study, name=case_id)
    segmentation = mrml.add_segmentation(scene, result, volumes)
    sh = scene.GetSubjectHierarchyNode()
    order = max((int(sh.GetItemAttribute(mrml.study_item(scene, c), ORDER_ATTRIBUTE)) for c in previous), default=0)
    sh.SetItemAttribute(volumes.folder_item, ORDER_ATTRIBUTE, str(order + 1))
    cases = [c for c in previous if c != case_id] + [case_id]
    for old in cases[:max(len(cases) - max(int(keep), 0), 0)]:
        mrml.remove_study(scene, old)
    return segmentation if keep > 0 else None
