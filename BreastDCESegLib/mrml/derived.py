"""Derived nodes: subtraction and MIP volumes with their display range, and the
enhancement-curve table of a region."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from ..study import DCEStudy
from .hierarchy import place_in_hierarchy, study_item
from .scene import ATTR
from .segments import segment_array, tumor_segment_id
from .studies import StudyNodes
from .volumes import image_to_volume


def window_level_range(array: np.ndarray, low: float = 1.0, high: float = 99.5) -> tuple[float, float]:
    """Display range of a subtraction: ``low``..``high`` percentiles of its positive values."""
    positive = array[array > 0]
    values = positive if positive.size else array.ravel()
    lo, hi = (float(v) for v in np.percentile(values, [low, high]))
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def set_window_level(node: Any, lo: float, hi: float) -> None:
    display = node.GetDisplayNode()
    display.SetAutoWindowLevel(0)
    display.SetWindowLevelMinMax(lo, hi)


def add_subtraction_volumes(scene: Any, study: DCEStudy, name: Optional[str] = None,
                            parent: Any = None) -> list:
    """Volumes "<case> sub1".."<case> subN" (post_k - pre) and "<case> MIP" (their maximum)."""
    from ..kinetics import max_subtraction, subtraction_images

    case = name or study.case_id
    parent_item = parent.folder_item if isinstance(parent, StudyNodes) else (parent or study_item(scene, case))
    arrays = list(subtraction_images(study)) + [max_subtraction(study)]
    labels = [f"sub{k}" for k in range(1, study.n_phases)] + ["MIP"]
    nodes = []
    for array, label in zip(arrays, labels):
        node = image_to_volume(scene, study.image_like(array, np.float32), f"{case} {label}")
        set_window_level(node, *window_level_range(array))
        node.SetAttribute(ATTR + "Case", case)
        node.SetAttribute(ATTR + "Derived", label)
        place_in_hierarchy(node, parent_item)
        nodes.append(node)
    return nodes


def add_enhancement_curve_table(scene: Any, study: DCEStudy, mask: Any, name: Optional[str] = None,
                                segment_id: Optional[str] = None) -> Any:
    """A table node "<case> enhancement": time (s), mean, std and percent enhancement per phase
    inside ``mask`` (a (z, y, x) array on the study grid, or a segmentation node + ``segment_id``)."""
    import vtk

    from ..kinetics import time_intensity_curve

    if hasattr(mask, "GetSegmentation"):
        mask = segment_array(mask, segment_id or tumor_segment_id(mask))
    curve = time_intensity_curve(study, np.asarray(mask) != 0)
    mean = np.asarray(curve["mean"], dtype=float)
    base = mean[0] if mean[0] != 0 else float("nan")
    columns = {"Phase": np.arange(study.n_phases, dtype=float),
               "Time (s)": np.array([np.nan if t is None else t for t in study.times], dtype=float),
               "Mean": mean, "Std": np.asarray(curve["std"], dtype=float),
               "Percent enhancement": 100.0 * (mean - mean[0]) / base}
    table = scene.AddNewNodeByClass("vtkMRMLTableNode", name or f"{study.case_id} enhancement")
    for title, values in columns.items():
        column = vtk.vtkDoubleArray()
        column.SetName(title)
        for v in values:
            column.InsertNextValue(float(v))
        table.GetTable().AddColumn(column)
    table.SetAttribute(ATTR + "Voxels", str(curve["n_voxels"]))
    table.Modified()
    return table


def table_columns(table: Any) -> dict[str, np.ndarray]:
    """Columns of a table node as numpy arrays keyed by column name."""
    t = table.GetTable()
    return {t.GetColumn(c).GetName(): np.array([t.GetValue(r, c).ToDouble() for r in range(t.GetNumberOfRows())])
            for c in range(t.GetNumberOfColumns())}
