"""Segments of a segmentation node: terminology, reference geometry, voxel masks in and out."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from ..errors import BadInputError
from .volumes import _image_array, _oriented_image

# the one terminology table (names, labels, colours, SCT codes) and Slicer's serialisation of it
from ..terminology import ANATOMIC_CONTEXT, SEGMENT_TYPES, TERMINOLOGY_CONTEXT  # noqa: F401
from ..terminology import slicer_entry as terminology_entry  # noqa: F401


def reference_geometry(segmentation_node: Any) -> tuple[Any, np.ndarray]:
    """(empty vtkOrientedImageData with the segmentation's reference geometry, IJK-to-RAS)."""
    import slicer

    name = slicer.vtkSegmentationConverter.GetReferenceImageGeometryParameterName()
    geometry = segmentation_node.GetSegmentation().GetConversionParameter(name)
    if not geometry:
        raise BadInputError(f"Segmentation {segmentation_node.GetName()!r} has no reference geometry; "
                            "set it from the pre-contrast volume.")
    image = slicer.vtkOrientedImageData()
    slicer.vtkSegmentationConverter.DeserializeImageGeometry(geometry, image, False)
    import vtk

    m = vtk.vtkMatrix4x4()
    image.GetImageToWorldMatrix(m)
    return image, slicer.util.arrayFromVTKMatrix(m)


def segment_array(segmentation_node: Any, segment_id: str) -> np.ndarray:
    """Binary (k, j, i) uint8 mask of a segment on the segmentation's reference grid."""
    import slicer

    reference, _ = reference_geometry(segmentation_node)
    shape = tuple(reversed(reference.GetDimensions()))
    labelmap = slicer.vtkOrientedImageData()
    slicer.vtkSlicerSegmentationsModuleLogic.GetSegmentBinaryLabelmapRepresentation(
        segmentation_node, segment_id, labelmap, False)
    if labelmap.GetPointData().GetScalars() is None or labelmap.IsEmpty():
        return np.zeros(shape, dtype=np.uint8)
    resampled = slicer.vtkOrientedImageData()
    slicer.vtkOrientedImageDataResample.ResampleOrientedImageToReferenceOrientedImage(labelmap, reference, resampled)
    value = segmentation_node.GetSegmentation().GetSegment(segment_id).GetLabelValue()
    array = _image_array(resampled) == value
    out = np.zeros(shape, dtype=np.uint8)
    e, r = resampled.GetExtent(), reference.GetExtent()
    src = tuple(slice(max(r[2 * a] - e[2 * a], 0), e[2 * a + 1] - e[2 * a] + 1 - max(e[2 * a + 1] - r[2 * a + 1], 0))
                for a in (2, 1, 0))
    dst = tuple(slice(max(e[2 * a], r[2 * a]) - r[2 * a], min(e[2 * a + 1], r[2 * a + 1]) - r[2 * a] + 1)
                for a in (2, 1, 0))
    out[dst] = array[src]
    return out


def set_segment(segmentation_node: Any, name: str, array: np.ndarray, segment_id: Optional[str] = None,
                spec: Optional[dict] = None) -> str:
    """Create or replace segment ``name`` from a (k, j, i) mask on the reference grid; known
    names (``SEGMENT_TYPES``) get their colour and terminology, others those of ``spec`` (a
    segment dict with ``color`` and ``terminology`` code triplets, e.g. ``lesions.OTHER_SEGMENT``)."""
    import slicer

    segmentation = segmentation_node.GetSegmentation()
    sid = segment_id or segmentation.GetSegmentIdBySegmentName(name)
    entry = None
    if spec is not None:
        from ..io.segwrite import terminology_entry as spec_entry
        entry = spec_entry(spec) or None
    spec = SEGMENT_TYPES.get(name) or spec
    if not sid:
        sid = segmentation.AddEmptySegment(name, name, spec["color"] if spec else (0.5, 0.5, 0.5))
    _, matrix = reference_geometry(segmentation_node)
    logic = slicer.vtkSlicerSegmentationsModuleLogic
    logic.SetBinaryLabelmapToSegment(_oriented_image((np.asarray(array) != 0).astype(np.uint8), matrix),
                                     segmentation_node, sid, logic.MODE_REPLACE)
    if spec:
        segmentation.GetSegment(sid).SetTerminology(terminology_entry(name) if name in SEGMENT_TYPES else entry or "")
    return sid


def tumor_segment_id(segmentation_node: Any) -> str:
    sid = segmentation_node.GetSegmentation().GetSegmentIdBySegmentName("Tumor")
    if not sid:
        raise BadInputError(f"Segmentation {segmentation_node.GetName()!r} has no 'Tumor' segment.")
    return sid


def segment_ids(segmentation_node: Any) -> list[str]:
    segmentation = segmentation_node.GetSegmentation()
    return [segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())]
