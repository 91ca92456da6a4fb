"""Segment editing: a segment editor logic on one segmentation with undoable one-click
refinements (largest island, small islands, holes, margin)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import BadInputError
from .segments import reference_geometry, segment_array
from .volumes import _image_array, _oriented_image


class SegmentEditorSession:
    """A segment editor node + ``vtkSlicerSegmentEditorLogic`` on one segmentation, with the
    one-click refinements a radiologist needs; each saves an undo state first.

    The editor node (a new one, or the Segment Editor widget's own ``editor_node``) selects the
    tumor segment, uses ``source_volume_node`` (a subtraction) as source volume and lets
    segments overlap (the tumor lies inside the breast).
    """

    def __init__(self, segmentation_node: Any, source_volume_node: Any, segment_name: str = "Tumor",
                 max_undo_states: int = 10, editor_node: Any = None):
        import slicer

        from ..versions import require

        require("refinements", slicer)  # vtkSlicerSegmentEditorLogic: Slicer 5.10+; a clear message before
        scene = segmentation_node.GetScene()
        self.segmentation_node = segmentation_node
        self.editor_node = editor_node or scene.AddNewNodeByClass("vtkMRMLSegmentEditorNode",
                                                                  f"{segmentation_node.GetName()} editor")
        self.editor_node.SetAndObserveSegmentationNode(segmentation_node)
        self.editor_node.SetAndObserveSourceVolumeNode(source_volume_node)
        self.editor_node.SetOverwriteMode(self.editor_node.OverwriteNone)
        self.editor_node.SetMaskMode(slicer.vtkMRMLSegmentationNode.EditAllowedEverywhere)
        sid = segmentation_node.GetSegmentation().GetSegmentIdBySegmentName(segment_name)
        if not sid:
            raise BadInputError(f"Segmentation {segmentation_node.GetName()!r} has no {segment_name!r} segment.")
        self.editor_node.SetSelectedSegmentID(sid)
        self.logic = slicer.vtkSlicerSegmentEditorLogic()
        self.logic.SetMRMLScene(scene)
        self.logic.SetMaximumNumberOfUndoStates(max_undo_states)
        self.logic.SetSegmentEditorNode(self.editor_node)

    @property
    def segment_id(self) -> str:
        return self.editor_node.GetSelectedSegmentID()

    def array(self) -> np.ndarray:
        """The selected segment as a (k, j, i) mask on the reference grid."""
        return segment_array(self.segmentation_node, self.segment_id)

    @property
    def voxel_volume_mm3(self) -> float:
        _, matrix = reference_geometry(self.segmentation_node)
        return float(abs(np.linalg.det(matrix[:3, :3])))

    def volume_mm3(self) -> float:
        return float(self.array().sum()) * self.voxel_volume_mm3

    def apply(self, array: np.ndarray) -> None:
        """Replace the selected segment by ``array`` (undoable)."""
        _, matrix = reference_geometry(self.segmentation_node)
        modifier = _oriented_image((np.asarray(array) != 0).astype(np.uint8), matrix)
        self.logic.SaveStateForUndo()
        self.logic.ModifySegmentByLabelmap(self.segmentation_node, self.segment_id, modifier,
                                           self.logic.ModificationModeSet, True, True)

    def _filtered(self, make_filter: Any) -> np.ndarray:
        _, matrix = reference_geometry(self.segmentation_node)
        filt = make_filter()
        filt.SetInputData(_oriented_image(self.array(), matrix))
        filt.Update()
        return _image_array(filt.GetOutput())

    def keep_largest_island(self) -> None:
        """Keep the largest face-connected island (the Islands effect's default)."""
        self.apply(self._filtered(lambda: _island_math(0)) == 1)

    def remove_small_islands(self, min_volume_mm3: float) -> None:
        """Remove islands smaller than ``min_volume_mm3``."""
        min_voxels = int(math.ceil(min_volume_mm3 / self.voxel_volume_mm3 - 1e-9))
        self.apply(self._filtered(lambda: _island_math(min_voxels)) > 0)

    def fill_holes(self) -> None:
        """Fill cavities not connected to the outside (3-D, face connectivity)."""
        from scipy import ndimage as ndi

        self.apply(ndi.binary_fill_holes(self.array()))

    def margin(self, margin_mm: float) -> None:
        """Grow (> 0) or shrink (< 0) by ``margin_mm`` (Margin effect, vtkITKImageMargin, in mm)."""
        import slicer

        def make() -> Any:
            filt = slicer.vtkITKImageMargin()
            filt.SetCalculateMarginInMM(True)
            filt.SetOuterMarginMM(float(margin_mm))
            return filt

        self.apply(self._filtered(make) > 0)

    def undo(self) -> None:
        self.logic.Undo()

    def redo(self) -> None:
        self.logic.Redo()


def _island_math(min_voxels: int) -> Any:
    import slicer

    filt = slicer.vtkITKIslandMath()
    filt.SetFullyConnected(False)
    filt.SetMinimumSize(min_voxels)
    return filt
