"""Subject hierarchy: a study item per case and the placement of nodes under it."""

from __future__ import annotations

from typing import Any

from .phases import _case_from
from .scene import ATTR


def study_item(scene: Any, name: str) -> int:
    """The subject-hierarchy study item called ``name`` (created when missing)."""
    sh = scene.GetSubjectHierarchyNode()
    for item in _children(sh, sh.GetSceneItemID()):
        if sh.GetItemName(item) == name and sh.GetItemAttribute(item, ATTR + "Case") == name:
            return item
    item = sh.CreateStudyItem(sh.GetSceneItemID(), name)
    sh.SetItemAttribute(item, ATTR + "Case", name)
    return item


def _children(sh: Any, parent: int) -> list[int]:
    import vtk

    ids = vtk.vtkIdList()
    sh.GetItemChildren(parent, ids)
    return [ids.GetId(i) for i in range(ids.GetNumberOfIds())]


def place_in_hierarchy(node: Any, parent_item: int) -> int:
    """Put ``node`` under ``parent_item`` (creating its item; the wheel does not create items)."""
    sh = node.GetScene().GetSubjectHierarchyNode()
    item = sh.GetItemByDataNode(node)
    if not item:
        return sh.CreateItem(parent_item, node)
    sh.SetItemParent(item, parent_item)
    return item


def parent_item_of(node: Any) -> int:
    sh = node.GetScene().GetSubjectHierarchyNode()
    item = sh.GetItemByDataNode(node)
    parent = sh.GetItemParent(item) if item else 0
    return parent or study_item(node.GetScene(), _case_from(node))
