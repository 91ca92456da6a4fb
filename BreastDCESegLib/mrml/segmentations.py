"""AI segmentation nodes: results into the scene (always a new node), and edit detection by a
content hash (a segmentation the user edited is recognisable)."""

from __future__ import annotations

import hashlib
from typing import Any, Optional

import numpy as np
import SimpleITK as sitk

from ..results import SegmentationResult
from ..study import resample_to
from .hierarchy import parent_item_of, place_in_hierarchy
from .phases import _case_from
from .scene import ATTR
from .segments import segment_array, segment_ids, set_segment
from .studies import StudyNodes
from .volumes import set_lps_geometry, volume_ijk_to_ras


def content_hash(segmentation_node: Any) -> str:
    """SHA-1 of every segment's name and voxels on the reference grid (independent of extents)."""
    digest = hashlib.sha1()
    for sid in segment_ids(segmentation_node):
        digest.update(segmentation_node.GetSegmentation().GetSegment(sid).GetName().encode())
        digest.update(np.flatnonzero(segment_array(segmentation_node, sid)).astype(np.int64).tobytes())
    return digest.hexdigest()


def is_user_edited(segmentation_node: Any) -> bool:
    """True when an AI segmentation's content differs from what the AI wrote (or is not AI)."""
    stored = segmentation_node.GetAttribute(ATTR + "ContentHash")
    return stored is None or stored != content_hash(segmentation_node)


def _unique_name(scene: Any, base: str) -> str:
    taken = {scene.GetNthNodeByClass(i, "vtkMRMLSegmentationNode").GetName()
             for i in range(scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode"))}
    if base not in taken:
        return base
    return next(f"{base} {k}" for k in range(2, 10_000) if f"{base} {k}" not in taken)


def _mask_on(image: sitk.Image, reference_node: Any) -> np.ndarray:
    """A mask image as a (k, j, i) array on a volume node's grid (nearest-neighbour if needed)."""
    ref = sitk.Image([int(d) for d in reference_node.GetImageData().GetDimensions()], sitk.sitkUInt8)
    set_lps_geometry(ref, volume_ijk_to_ras(reference_node))
    from ..study import same_grid

    if not same_grid(image, ref):
        image = resample_to(image, ref, sitk.sitkNearestNeighbor)
    return (sitk.GetArrayFromImage(image) != 0).astype(np.uint8)


def result_to_segmentation(result: SegmentationResult, reference_volume_node: Any, name: Optional[str] = None,
                           include_breast: bool = False, case_id: Optional[str] = None,
                           parent_item: Optional[int] = None) -> Any:
    """A new segmentation node ("<case> AI", "<case> AI 2"...) with a "Tumor" (and "Breast")
    segment: a re-run never touches an earlier (perhaps edited) node. The enhancing lesions the
    lesion rules excluded (``result.other_lesions``, option ``other_lesions``) become a second
    segment, "Other enhancing lesions" (:data:`BreastDCESegLib.lesions.OTHER_SEGMENT`), when there are any;
    the tumor measures, re-thresholding and lesion table read only "Tumor"."""
    scene = reference_volume_node.GetScene()
    case = case_id or _case_from(reference_volume_node)
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", _unique_name(scene, name or f"{case} AI"))
    node.CreateDefaultDisplayNodes()
    node.SetReferenceImageGeometryParameterFromVolumeNode(reference_volume_node)
    set_segment(node, "Tumor", _mask_on(result.tumor, reference_volume_node))
    if include_breast and result.breast is not None:
        set_segment(node, "Breast", _mask_on(result.breast, reference_volume_node))
    if result.other_lesions is not None:
        other = _mask_on(result.other_lesions, reference_volume_node)
        if other.any():
            from ..lesions import OTHER_SEGMENT
            set_segment(node, OTHER_SEGMENT["name"], other, spec=OTHER_SEGMENT)
    for key, value in (("AI", "1"), ("Case", case), ("Model", result.model_id), ("Device", result.device)):
        node.SetAttribute(ATTR + key, value)
    node.SetAttribute(ATTR + "ContentHash", content_hash(node))
    place_in_hierarchy(node, parent_item if parent_item is not None else parent_item_of(reference_volume_node))
    return node


def add_segmentation(scene: Any, result: SegmentationResult, volumes: Any, name: Optional[str] = None,
                     include_breast: Optional[bool] = None) -> Any:
    """:func:`result_to_segmentation` with the reference taken from :func:`add_study`'s nodes
    (or a volume node / list of phase volumes); the breast segment is added when the result has one."""
    reference = volumes.pre if isinstance(volumes, StudyNodes) else (
        volumes[0] if isinstance(volumes, (list, tuple)) else volumes)
    case = volumes.case_id if isinstance(volumes, StudyNodes) else None
    breast = result.breast is not None if include_breast is None else include_breast
    return result_to_segmentation(result, reference, name=name, include_breast=breast, case_id=case)

