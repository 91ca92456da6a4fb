"""The breast box of the MAMA-MIA release: the tumor kept within the bounding box of the breast that holds
the primary lesion, as the release's challenge gives it at test time.

The release's patient information (``patient_info_files/<case>.json``) holds
``primary_lesion.breast_coordinates`` = ``{"x_min", "x_max", "y_min", "y_max", "z_min", "z_max"}``, voxel
indices of the case's images in the order of their SimpleITK array: ``x`` is its first axis (the slices of an
axial study), ``z`` its last, each range half-open (``array[x_min:x_max, y_min:y_max, z_min:z_max]``), the
way the challenge's sample submission masks its predictions. ``segment --breast-box`` and ``batch
--breast-box`` apply it (:func:`restrict`): tumor voxels outside the box are removed (listed with the other
enhancing lesions when the result has them), a kept lesion whose centre lies outside it becomes an other
enhancing lesion (``excluded_because``: :data:`OUTSIDE`), and the report says how much was removed. The
probability and uncertainty maps are the model's, left whole.

Usage::

    from BreastDCESegLib import breast_box
    study, truth = mamamia.read_case(root, "DUKE_001")   # study.metadata["mamamia_root"]: where to look
    result = breast_box.restrict(inference.segment(study, "kinetic"), study)
    result.extra["breast_box"]       # {"coordinates": {...}, "removed_voxels": 212, "removed_ml": 0.35}
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

import numpy as np
import SimpleITK as sitk

from .errors import BadInputError
from .results import SegmentationResult

KEYS = ("x_min", "x_max", "y_min", "y_max", "z_min", "z_max")
OUTSIDE = "outside the breast box of the patient information"


def coordinates(info: dict, source: str) -> Optional[dict[str, int]]:
    """``primary_lesion.breast_coordinates`` of a patient information ``info`` (read from ``source``) as
    integers; None when it has none.

    Raises:
        BadInputError: the coordinates lack a key, are not whole numbers, or a range is empty.
    """
    box = (info.get("primary_lesion") or {}).get("breast_coordinates") if isinstance(info, dict) else None
    if not box:
        return None
    missing = [k for k in KEYS if k not in box]
    if missing:
        raise BadInputError(f"{source}: primary_lesion.breast_coordinates lacks {', '.join(missing)}; "
                            f"it needs {', '.join(KEYS)}.")
    try:
        values = {k: int(box[k]) for k in KEYS}
    except (TypeError, ValueError) as exc:
        raise BadInputError(f"{source}: primary_lesion.breast_coordinates must be whole voxel indices "
                            f"({exc}).") from exc
    if any(float(box[k]) != values[k] for k in KEYS):
        raise BadInputError(f"{source}: primary_lesion.breast_coordinates must be whole voxel indices, "
                            f"not {box}.")
    for axis in "xyz":
        if not 0 <= values[f"{axis}_min"] < values[f"{axis}_max"]:
            raise BadInputError(f"{source}: primary_lesion.breast_coordinates {axis}_min {values[axis + '_min']} "
                                f"to {axis}_max {values[axis + '_max']} is not a range of voxels.")
    return values


def box_slices(box: dict[str, int], shape: tuple[int, ...], source: str = "the breast box") -> tuple[slice, ...]:
    """The box as slices of an array of ``shape`` (SimpleITK order, the release's x first).

    Raises:
        BadInputError: the box reaches past the array.
    """
    slices = tuple(slice(box[f"{a}_min"], box[f"{a}_max"]) for a in "xyz")
    if any(s.stop > n for s, n in zip(slices, shape)):
        raise BadInputError(f"{source}: the breast box (x {box['x_min']}-{box['x_max']}, y {box['y_min']}-"
                            f"{box['y_max']}, z {box['z_min']}-{box['z_max']}) reaches past the image's array of "
                            f"{' x '.join(map(str, shape))} voxels: these coordinates belong to another image.")
    return slices


def of_study(study: Any) -> tuple[Optional[dict[str, int]], str]:
    """(the breast box of a study read from a MAMA-MIA root, or None; the file it comes from).

    Raises:
        BadInputError: a damaged patient information file or breast box.
    """
    from .io.mamamia_tables import patient_info_path, read_patient_info

    metadata = getattr(study, "metadata", None) or {}
    root, case_id = metadata.get("mamamia_root"), getattr(study, "case_id", None)
    path = patient_info_path(root, case_id) if root is not None and case_id else None
    if path is None:
        return None, ""
    return coordinates(read_patient_info(root, case_id), str(path)), str(path)


def _inside(mask_shape: tuple[int, ...], slices: tuple[slice, ...]) -> np.ndarray:
    inside = np.zeros(mask_shape, bool)
    inside[slices] = True
    return inside


def _outside_lesions(rows: list[dict[str, Any]], image: sitk.Image, inside: np.ndarray) -> list[dict[str, Any]]:
    """``rows`` with each kept lesion whose centre lies outside ``inside`` listed as another lesion."""
    out = []
    for row in rows:
        centre = row.get("centroid_lps_mm")
        if row.get("decision") == "tumor" and centre is not None:
            index = np.rint(image.TransformPhysicalPointToContinuousIndex([float(v) for v in centre]))[::-1]
            within = all(0 <= i < n for i, n in zip(index, inside.shape)) and inside[tuple(int(i) for i in index)]
            if not within:
                row = {**row, "decision": "other enhancing lesion", "excluded_because": OUTSIDE}
        out.append(row)
    return out


def restrict(result: SegmentationResult, study: Any) -> SegmentationResult:
    """``result`` with its tumor kept within the breast box of ``study`` (:func:`of_study`: a case read from a
    MAMA-MIA root); ``result`` unchanged, with a warning, for a study without one.

    Raises:
        BadInputError: a damaged patient information file or breast box, or one that reaches past the images.
    """
    box, source = of_study(study)
    if box is None:
        return dataclasses.replace(result, warnings=[*result.warnings, "--breast-box: the case has no "
                                   "primary_lesion.breast_coordinates in its patient information; segmented whole"])
    tumor = result.tumor_array().astype(bool)
    inside = _inside(tumor.shape, box_slices(box, tumor.shape, source))
    removed = tumor & ~inside
    voxel_ml = float(np.prod(result.tumor.GetSpacing())) / 1000.0
    kept = sitk.GetImageFromArray((tumor & inside).astype(np.uint8))
    kept.CopyInformation(result.tumor)
    other = result.other_lesions
    if other is not None and removed.any():
        merged = sitk.GetImageFromArray(((sitk.GetArrayViewFromImage(other) > 0) | removed).astype(np.uint8))
        merged.CopyInformation(other)
        other = merged
    extra = {**result.extra, "breast_box": {"coordinates": dict(box), "removed_voxels": int(removed.sum()),
                                            "removed_ml": round(float(removed.sum()) * voxel_ml, 3)}}
    if extra.get("lesion_decisions"):
        extra["lesion_decisions"] = _outside_lesions(extra["lesion_decisions"], result.tumor, inside)
    warnings = list(result.warnings)
    if removed.any():
        warnings.append(f"{int(removed.sum())} tumor voxels ({float(removed.sum()) * voxel_ml:.2f} mL) outside the "
                        "breast box of the patient information were removed (--breast-box)")
    return dataclasses.replace(result, tumor=kept, other_lesions=other, extra=extra, warnings=warnings)
