"""Segment statistics: volume, diameters, centroid (RAS), lesion count, percent enhancement."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import SimpleITK as sitk

from ..errors import BadInputError
from ..study import DCEStudy
from .segments import reference_geometry, segment_array, tumor_segment_id
from .volumes import _oriented_image, set_lps_geometry


def shape_statistics(array: np.ndarray, matrix: np.ndarray) -> dict[int, dict[str, Any]]:
    """vtkITKLabelShapeStatistics per label value: centroid (RAS mm) and Feret diameter (mm)."""
    import slicer
    import vtk

    image = _oriented_image(np.asarray(array, dtype=np.uint8), matrix)
    stats = slicer.vtkITKLabelShapeStatistics()
    stats.SetInputData(image)
    directions = vtk.vtkMatrix4x4()
    image.GetDirectionMatrix(directions)
    stats.SetDirections(directions)
    stats.ComputeShapeStatisticOn(stats.GetShapeStatisticAsString(stats.FeretDiameter))
    stats.Update()
    table = stats.GetOutput()
    col = {table.GetColumnName(c): c for c in range(table.GetNumberOfColumns())}
    out = {}
    for r in range(table.GetNumberOfRows()):
        label = int(table.GetValue(r, col["LabelValue"]).ToDouble())
        centroid = [float(v) for v in table.GetValue(r, col["Centroid"]).ToString().split()]
        out[label] = {"centroid_ras": centroid, "feret_diameter_mm": table.GetValue(r, col["FeretDiameter"]).ToDouble()}
    return out


def segment_statistics(segmentation_node: Any, segment_id: Optional[str] = None, study: Optional[DCEStudy] = None,
                       min_lesion_mm3: float = 0.0) -> dict[str, Any]:
    """Volume (mm³, mL), longest diameter (largest lesion), extent (all lesions), Feret diameter,
    centroid (RAS), lesion count and,
    given the study (on the reference grid), mean percent enhancement of the first post phase."""
    sid = segment_id or tumor_segment_id(segmentation_node)
    array = segment_array(segmentation_node, sid)
    _, matrix = reference_geometry(segmentation_node)
    image = set_lps_geometry(sitk.GetImageFromArray(array), matrix)
    spacing = np.asarray(image.GetSpacing())
    n = int(array.sum())
    out: dict[str, Any] = {"segment": segmentation_node.GetSegmentation().GetSegment(sid).GetName(), "voxels": n,
                           "volume_mm3": n * float(np.prod(spacing)), "volume_ml": n * float(np.prod(spacing)) / 1000.0,
                           "longest_diameter_mm": 0.0, "extent_mm": 0.0, "feret_diameter_mm": 0.0, "centroid_ras": None,
                           "lesion_count": 0, "mean_enhancement_percent": None}
    if n == 0:
        return out
    shape = shape_statistics(array, matrix).get(1, {})
    out.update(shape)
    try:
        from .. import clinical

        out.update(clinical.diameters(image, min_volume_mm3=min_lesion_mm3))  # largest lesion; extent of all
    except ImportError:  # pragma: no cover - clinical is part of the package
        from scipy import ndimage as ndi

        out["longest_diameter_mm"] = out["feret_diameter_mm"]
        out["lesion_count"] = int(ndi.label(array, np.ones((3, 3, 3)))[1])
    if study is not None:
        from ..kinetics import percent_enhancement

        if study.shape != array.shape:
            raise BadInputError(f"Study grid {study.shape} differs from the segmentation grid {array.shape}.")
        out["mean_enhancement_percent"] = float(percent_enhancement(study, 1)[array != 0].mean())
    return out
