"""A segmentation node exported as DICOM SEG that references the DICOM series it was drawn on.

A volume loaded through Slicer's DICOM module carries the SOP instance UIDs of its files in the
``DICOM.instanceUIDs`` attribute; the DICOM database maps each UID to its file
(``slicer.dicomDatabase.fileForInstance``). The segments "Tumor" (and "Breast", "Other enhancing
lesions") become the SEG's segments with their SCT terminology (:func:`BreastDCESegLib.io.segwrite.write_dicom_seg`).

Usage inside Slicer::

    export_dicom_seg(segmentation_node, "/tmp/case1.seg.dcm", slicer.dicomDatabase.fileForInstance)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import SimpleITK as sitk

from ..errors import BadInputError
from .segments import reference_geometry, segment_array
from .volumes import set_lps_geometry

INSTANCE_UIDS = "DICOM.instanceUIDs"


def dicom_source_files(volume_node: Any, file_for_instance: Callable[[str], str]) -> list[str]:
    """The files of the DICOM series ``volume_node`` was loaded from (its ``DICOM.instanceUIDs``)."""
    uids = (volume_node.GetAttribute(INSTANCE_UIDS) or "").split() if volume_node is not None else []
    name = volume_node.GetName() if volume_node is not None else "The segmentation's reference volume"
    if not uids:
        raise BadInputError(f"{name} was not loaded from DICOM (it has no {INSTANCE_UIDS}): DICOM SEG can only "
                            "reference a series loaded through the DICOM module. Save a .seg.nrrd instead.")
    files = [file_for_instance(uid) or "" for uid in uids]
    missing = [uid for uid, f in zip(uids, files) if not f or not Path(f).is_file()]
    if missing:
        raise BadInputError(f"{len(missing)} file(s) of {name}'s DICOM series are not in the DICOM database or on "
                            f"disk (first UID {missing[0]}): re-import the study into the DICOM database.")
    return files


def segmentation_labelmap(segmentation_node: Any) -> tuple[sitk.Image, list[dict]]:
    """(uint8 label image on the reference grid, segments) of the "Tumor" (1), "Breast" (2) and
    "Other enhancing lesions" (3, :data:`BreastDCESegLib.lesions.OTHER_SEGMENT`, its own SEG segment
    with its SCT codes) segments present; the tumor wins where they overlap, then the other lesions."""
    from ..io.segwrite import SEGMENT_DEFAULTS
    from ..lesions import OTHER_SEGMENT

    segmentation = segmentation_node.GetSegmentation()
    _, matrix = reference_geometry(segmentation_node)
    label, segments = None, []
    for spec in [SEGMENT_DEFAULTS[0], OTHER_SEGMENT, *SEGMENT_DEFAULTS[1:]]:  # Tumor, other lesions, Breast
        sid = segmentation.GetSegmentIdBySegmentName(spec["name"])
        if not sid:
            continue
        mask = segment_array(segmentation_node, sid) != 0
        label = np.zeros(mask.shape, np.uint8) if label is None else label
        label[mask & (label == 0)] = spec["label"]
        segments.append(spec)
    if not segments or "Tumor" not in [s["name"] for s in segments]:
        raise BadInputError(f"Segmentation {segmentation_node.GetName()!r} has no 'Tumor' segment to export.")
    return set_lps_geometry(sitk.GetImageFromArray(label), matrix), segments


def export_dicom_seg(segmentation_node: Any, path: str | Path, file_for_instance: Callable[[str], str],
                     source_volume: Optional[Any] = None, overwrite: bool = False) -> Path:
    """Write ``segmentation_node`` as a DICOM SEG referencing ``source_volume``'s series (default:
    the segmentation's reference volume), atomically; never replaces a file unless ``overwrite``."""
    from ..io.segwrite import write_dicom_seg

    if segmentation_node is None:
        raise BadInputError("Select the segmentation to export (Results: Segmentation).")
    source = source_volume or segmentation_node.GetNodeReference(
        segmentation_node.GetReferenceImageGeometryReferenceRole())
    files = dicom_source_files(source, file_for_instance)
    label, segments = segmentation_labelmap(segmentation_node)
    return write_dicom_seg(path, label, files, segments, overwrite=overwrite,
                           series_description=f"{segmentation_node.GetName()} (BreastDCESeg)")
