"""Kinetic and probability maps as volume nodes with colour tables and window/level, the live
re-thresholding of the probability, and the lesion and statistics tables.

Maps of a case (node name "<case> <title>", attribute ``BreastDCESeg.Map`` = key):

=====================  ===============  =====================================  ==================
key                    title            colour                                 display range
=====================  ===============  =====================================  ==================
percent_enhancement    PE               PET-Heat                               0 .. 200 %
peak_enhancement       peak PE          PET-Heat                               0 .. 200 %
ser                    SER              Rainbow (blue persistent .. red)       0 .. 2
washout                washout          Rainbow (blue rising .. red washout)   -50 .. 50 %
curve_type             curve type       "BreastDCESeg curve types" (labelmap)  labels 0..3
probability            probability      Iron                                   0 .. 1
uncertainty            uncertainty      Ocean                                  0 .. 1
=====================  ===============  =====================================  ==================

The curve-type labelmap is coloured as breast CAD systems colour the delayed-phase curve:
persistent (type I) blue, plateau (type II) yellow, washout (type III) red; no enhancement is
transparent. Every colour node is one Slicer ships, except the curve-type table, which is
added to the scene (and saved with it). Maps are remade in place when a case is run again.

Usage::

    nodes = add_map_volumes(scene, study, probability=result.probability)
    volume_mm3 = rethreshold(segmentation, nodes["probability"], 0.3, min_component_mm3=20.0)
    table = lesion_table_node(segmentation, study)
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import SimpleITK as sitk

from ..errors import BadInputError
from ..study import DCEStudy
from .hierarchy import place_in_hierarchy, study_item
from .scene import ATTR
from .segments import reference_geometry, segment_array, set_segment, tumor_segment_id
from .volumes import image_to_volume, volume_to_image

CURVE_TYPE_COLOR_NODE = "BreastDCESeg curve types"
# curve-type label -> (name, RGBA): transparent, blue, yellow, red
CURVE_TYPE_COLORS = ((("none", (0.0, 0.0, 0.0, 0.0)), ("persistent", (0.0, 0.35, 1.0, 1.0)),
                      ("plateau", (1.0, 0.9, 0.0, 1.0)), ("washout", (1.0, 0.0, 0.0, 1.0))))
# key -> (title, colour node ID, display range, unit)
MAP_DISPLAY: dict[str, tuple[str, str, tuple[float, float], str]] = {
    "percent_enhancement": ("PE", "vtkMRMLPETProceduralColorNodePET-Heat", (0.0, 200.0), "%"),
    "peak_enhancement": ("peak PE", "vtkMRMLPETProceduralColorNodePET-Heat", (0.0, 200.0), "%"),
    "ser": ("SER", "vtkMRMLColorTableNodeRainbow", (0.0, 2.0), ""),
    "washout": ("washout", "vtkMRMLColorTableNodeRainbow", (-50.0, 50.0), "%"),
    "curve_type": ("curve type", CURVE_TYPE_COLOR_NODE, (0.0, 3.0), ""),
    "probability": ("probability", "vtkMRMLColorTableNodeIron", (0.0, 1.0), ""),
    "uncertainty": ("uncertainty", "vtkMRMLColorTableNodeOcean", (0.0, 1.0), ""),
}
PROBABILITY_ROLE = ATTR + "probability"  # node reference: AI segmentation -> its probability volume


def curve_type_color_node(scene: Any) -> Any:
    """The scene's "BreastDCESeg curve types" colour table (made once): 0 none (transparent),
    1 persistent blue, 2 plateau yellow, 3 washout red."""
    nodes = scene.GetNodesByClassByName("vtkMRMLColorTableNode", CURVE_TYPE_COLOR_NODE)
    if nodes.GetNumberOfItems():
        return nodes.GetItemAsObject(0)
    node = scene.AddNewNodeByClass("vtkMRMLColorTableNode", CURVE_TYPE_COLOR_NODE)
    node.SetTypeToUser()
    node.SetNumberOfColors(len(CURVE_TYPE_COLORS))
    for index, (name, rgba) in enumerate(CURVE_TYPE_COLORS):
        node.SetColor(index, name, *rgba)
    node.SetAttribute("Category", "BreastDCESeg")
    return node


def _find_map(scene: Any, case: str, key: str) -> Optional[Any]:
    for cls in ("vtkMRMLScalarVolumeNode",):  # labelmap volumes derive from scalar volumes
        for i in range(scene.GetNumberOfNodesByClass(cls)):
            node = scene.GetNthNodeByClass(i, cls)
            if node.GetAttribute(ATTR + "Case") == case and node.GetAttribute(ATTR + "Map") == key:
                return node
    return None


def add_map_volume(scene: Any, study: DCEStudy, key: str, array: np.ndarray, case: Optional[str] = None,
                   parent_item: Optional[int] = None) -> Any:
    """Add (or update) map ``key`` of :data:`MAP_DISPLAY` as a volume node with its colour and range."""
    if key not in MAP_DISPLAY:
        raise BadInputError(f"Unknown map {key!r}: use one of {', '.join(MAP_DISPLAY)}.")
    title, color_id, (lo, hi), unit = MAP_DISPLAY[key]
    case = case or study.case_id
    labelmap = key == "curve_type"
    node = _find_map(scene, case, key)
    if node is not None and node.IsA("vtkMRMLLabelMapVolumeNode") != labelmap:
        scene.RemoveNode(node)
        node = None
    dtype = np.uint8 if labelmap else np.float32
    node = image_to_volume(scene, study.image_like(np.asarray(array).astype(dtype), dtype), f"{case} {title}",
                           node=node, class_name="vtkMRMLLabelMapVolumeNode" if labelmap else "vtkMRMLScalarVolumeNode")
    display = node.GetDisplayNode()
    color = curve_type_color_node(scene) if labelmap else scene.GetNodeByID(color_id)
    if color is not None:
        display.SetAndObserveColorNodeID(color.GetID())
    if not labelmap:
        display.SetAutoWindowLevel(0)
        display.SetWindowLevelMinMax(lo, hi)
    for attribute, value in (("Case", case), ("Map", key), ("Unit", unit)):
        node.SetAttribute(ATTR + attribute, value)
    place_in_hierarchy(node, parent_item if parent_item is not None else study_item(scene, case))
    return node


def add_map_volumes(scene: Any, study: DCEStudy, probability: Optional[sitk.Image] = None,
                    uncertainty: Optional[sitk.Image] = None, case: Optional[str] = None) -> dict[str, Any]:
    """The kinetic maps of ``study`` (:func:`BreastDCESegLib.kinetics.kinetic_maps`) and, when given
    (on the study grid), the probability and uncertainty maps, as volume nodes keyed by map name."""
    from ..kinetics import kinetic_maps
    from ..study import same_grid

    arrays: dict[str, np.ndarray] = dict(kinetic_maps(study))
    for key, image in (("probability", probability), ("uncertainty", uncertainty)):
        if image is None:
            continue
        if not same_grid(image, study.reference, tol=1e-3):
            raise BadInputError(f"The {key} map (size {image.GetSize()}) is not on the study grid ({study.size}).")
        arrays[key] = sitk.GetArrayFromImage(image).astype(np.float32)
    return {key: add_map_volume(scene, study, key, array, case) for key, array in arrays.items()}


# ----------------------------------------------------------------------------- live threshold
def rethreshold(segmentation_node: Any, probability_node: Any, threshold: float,
                min_component_mm3: float = 0.0) -> float:
    """Replace the AI segmentation's "Tumor" segment by ``probability >= threshold`` without the
    components smaller than ``min_component_mm3``; returns the new tumor volume in mm³.

    Only an AI segmentation the reader has not edited by hand is re-thresholded (its content
    hash still matches); the new content becomes its AI content.
    """
    from ..probability import threshold_probability
    from .segmentations import content_hash, is_user_edited

    if segmentation_node is None or probability_node is None:
        raise BadInputError("Re-thresholding needs an AI segmentation and its probability map: run a model first.")
    if segmentation_node.GetAttribute(ATTR + "AI") != "1" or is_user_edited(segmentation_node):
        raise BadInputError(f"{segmentation_node.GetName()} was edited by hand (or is not an AI result): "
                            "re-thresholding would overwrite the edits. Run the model again to get a new AI segmentation.")
    probability = volume_to_image(probability_node)
    _, matrix = reference_geometry(segmentation_node)
    array = sitk.GetArrayFromImage(probability)
    shape = segment_array(segmentation_node, tumor_segment_id(segmentation_node)).shape
    if array.shape != shape:
        raise BadInputError(f"The probability map {probability_node.GetName()} ({array.shape}) is not on the "
                            f"segmentation's grid ({shape}).")
    spacing = np.linalg.norm(np.asarray(matrix)[:3, :3], axis=0)
    mask = threshold_probability(array, threshold, spacing, min_component_mm3)
    set_segment(segmentation_node, "Tumor", mask)
    segmentation_node.SetAttribute(ATTR + "Threshold", f"{float(threshold):g}")
    segmentation_node.SetAttribute(ATTR + "MinComponentMm3", f"{float(min_component_mm3):g}")
    segmentation_node.SetAttribute(ATTR + "ContentHash", content_hash(segmentation_node))
    return float(mask.sum()) * float(np.prod(spacing))


# ----------------------------------------------------------------------------- tables
def _table(scene: Any, name: str, case: str, kind: str) -> Any:
    for i in range(scene.GetNumberOfNodesByClass("vtkMRMLTableNode")):
        node = scene.GetNthNodeByClass(i, "vtkMRMLTableNode")
        if node.GetAttribute(ATTR + "Case") == case and node.GetAttribute(ATTR + "Table") == kind:
            node.RemoveAllColumns()
            return node
    node = scene.AddNewNodeByClass("vtkMRMLTableNode", name)
    node.SetAttribute(ATTR + "Case", case)
    node.SetAttribute(ATTR + "Table", kind)
    place_in_hierarchy(node, study_item(scene, case))
    return node


def _fill(table_node: Any, columns: dict[str, list]) -> Any:
    import vtk

    for title, values in columns.items():
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
        column = vtk.vtkDoubleArray() if numeric else vtk.vtkStringArray()
        column.SetName(title)
        for value in values:
            column.InsertNextValue(float(value) if numeric else ("-" if value is None else str(value)))
        table_node.GetTable().AddColumn(column)
    table_node.Modified()
    return table_node


def lesion_table_node(segmentation_node: Any, study: Optional[DCEStudy] = None,
                      min_component_mm3: float = 0.0) -> Any:
    """Table node "<case> lesions": one row per 26-connected lesion of the tumor segment, largest
    first (volume mm³, longest diameter, centroid RAS, and with the study mean PE, mean SER and
    dominant curve type). Made once per case and refilled."""
    from .. import clinical

    scene = segmentation_node.GetScene()
    case = segmentation_node.GetAttribute(ATTR + "Case") or segmentation_node.GetName()
    _, matrix = reference_geometry(segmentation_node)
    from .volumes import set_lps_geometry

    mask = set_lps_geometry(sitk.GetImageFromArray(segment_array(segmentation_node,
                                                                 tumor_segment_id(segmentation_node))), matrix)
    rows = clinical.lesion_table(mask, study, min_volume_mm3=min_component_mm3)
    columns: dict[str, list] = {
        "Lesion": [r["index"] for r in rows],
        "Volume (mm3)": [round(r["volume_ml"] * 1000.0, 3) for r in rows],
        "Longest diameter (mm)": [r["longest_diameter_mm"] for r in rows],
        "Centroid R (mm)": [r["centroid_ras_mm"][0] for r in rows],
        "Centroid A (mm)": [r["centroid_ras_mm"][1] for r in rows],
        "Centroid S (mm)": [r["centroid_ras_mm"][2] for r in rows]}
    if study is not None:
        columns["Mean PE (%)"] = [r.get("mean_percent_enhancement") for r in rows]
        columns["Mean SER"] = [r.get("mean_ser") if r.get("mean_ser") is not None else 0.0 for r in rows]
        columns["Curve type"] = [r.get("dominant_curve_type") for r in rows]
    table = _fill(_table(scene, f"{case} lesions", case, "lesions"), columns)
    table.SetAttribute(ATTR + "Segmentation", segmentation_node.GetID())
    return table


def statistics_table_node(scene: Any, case: str, rows: list) -> Any:
    """Table node "<case> statistics" with columns Measure and Value from (measure, text) rows."""
    return _fill(_table(scene, f"{case} statistics", case, "statistics"),
                 {"Measure": [str(m) for m, _ in rows], "Value": [str(v) for _, v in rows]})
