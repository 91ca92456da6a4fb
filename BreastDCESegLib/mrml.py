"""Everything that touches Slicer's scene: study volumes, subtractions, segmentations, editing.

Imports ``slicer``/``vtk`` inside functions only, so it runs in the Slicer application and
under the ``slicer-core`` wheel (plain Python, no Qt) alike. Geometry: SimpleITK images are
LPS, MRML is RAS; ``IJKToRAS = diag(-1, -1, 1) @ [direction * spacing | origin]``.

Usage::

    from BreastDCESegLib import mrml
    scene = mrml.new_scene()                      # or slicer.mrmlScene inside Slicer
    nodes = mrml.add_study(scene, study)          # volumes + sequence + browser, in a study folder
    subs = mrml.add_subtraction_volumes(scene, study, parent=nodes)
    seg = mrml.result_to_segmentation(result, nodes.volumes[0], include_breast=True)
    mrml.segment_statistics(seg, study=study)     # volume, diameter, centroid (RAS), lesions, PE
    study2 = mrml.study_from_sequence(nodes.sequence)
    editor = mrml.SegmentEditorSession(seg, subs[-1])
    editor.keep_largest_island(); editor.margin(2.0); editor.undo()

Re-running never overwrites a segmentation the user edited: every AI node carries a content
hash written with the result; a node whose current content differs counts as edited and a
new node ("<case> AI 2") is created instead.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np
import SimpleITK as sitk

from .errors import BadInputError
from .results import SegmentationResult
from .study import DCEStudy, resample_to

ATTR = "BreastDCESeg."  # prefix of every node attribute this module writes
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])
_CONTEXTS: dict[str, "SceneContext"] = {}

TERMINOLOGY_CONTEXT = "Segmentation category and type - DICOM master list"
ANATOMIC_CONTEXT = "Anatomic codes - DICOM master list"
# (category code, scheme, meaning), (type code, scheme, meaning), (region code, scheme, meaning), RGB
SEGMENT_TYPES: dict[str, dict[str, Any]] = {
    "Tumor": {"category": ("49755003", "SCT", "Morphologically Altered Structure"),
              "type": ("108369006", "SCT", "Neoplasm"), "region": ("76752008", "SCT", "Breast"),
              "color": (0.85, 0.2, 0.2), "label": 1},
    "Breast": {"category": ("123037004", "SCT", "Anatomical Structure"),
               "type": ("76752008", "SCT", "Breast"), "region": ("", "", ""),
               "color": (0.98, 0.82, 0.70), "label": 2},
}


# ----------------------------------------------------------------------------- scene set-up
@dataclass
class SceneContext:
    """A stand-alone scene with the application and module logics the functions here need."""

    scene: Any
    app_logic: Any
    logics: dict[str, Any] = field(default_factory=dict)

    def close(self) -> None:
        self.scene.Clear(1)
        for logic in self.logics.values():
            logic.SetMRMLScene(None)
        _CONTEXTS.pop(self.scene.GetAddressAsString("vtkMRMLScene"), None)


def new_scene() -> Any:
    """A ``vtkMRMLScene`` with Colors, Volumes, Segmentations, Sequences, SubjectHierarchy and
    Tables logics registered on a ``vtkSlicerApplicationLogic`` (the wheel has no application)."""
    return new_scene_context().scene


def new_scene_context() -> SceneContext:
    import slicer

    scene = slicer.vtkMRMLScene()
    app = slicer.vtkSlicerApplicationLogic()
    app.SetMRMLScene(scene)
    colors = app.GetColorLogic()
    colors.SetMRMLScene(scene)
    if scene.GetNumberOfNodesByClass("vtkMRMLColorTableNode") == 0:
        colors.AddDefaultColorNodes()
    app.SetModuleLogic("Colors", colors)
    context = SceneContext(scene, app, {"Colors": colors})
    for name, cls in (("Volumes", "vtkSlicerVolumesLogic"), ("Segmentations", "vtkSlicerSegmentationsModuleLogic"),
                      ("Sequences", "vtkSlicerSequencesLogic"), ("SubjectHierarchy", "vtkSlicerSubjectHierarchyModuleLogic"),
                      ("Tables", "vtkSlicerTablesLogic")):
        logic = getattr(slicer, cls)()
        logic.SetMRMLApplicationLogic(app)
        logic.SetMRMLScene(scene)
        app.SetModuleLogic(name, logic)
        context.logics[name] = logic
    _CONTEXTS[scene.GetAddressAsString("vtkMRMLScene")] = context
    return context


def module_logic(scene: Any, name: str) -> Any:
    """Module logic ``name`` for ``scene``: from :func:`new_scene`, else the Slicer application."""
    context = _CONTEXTS.get(scene.GetAddressAsString("vtkMRMLScene"))
    if context is not None:
        return context.logics.get(name) or context.app_logic.GetModuleLogic(name)
    import slicer

    app = getattr(slicer, "app", None)
    return app.applicationLogic().GetModuleLogic(name) if app is not None else None


# ----------------------------------------------------------------------------- geometry
def ijk_to_ras(image: sitk.Image) -> np.ndarray:
    """4x4 IJK-to-RAS matrix of a SimpleITK (LPS) image."""
    d = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    m = np.eye(4)
    m[:3, :3] = LPS_TO_RAS @ d @ np.diag(image.GetSpacing())
    m[:3, 3] = LPS_TO_RAS @ np.asarray(image.GetOrigin(), dtype=float)
    return m


def set_lps_geometry(image: sitk.Image, matrix: np.ndarray) -> sitk.Image:
    """Give ``image`` the spacing, origin and direction encoded by an IJK-to-RAS matrix."""
    lps = LPS_TO_RAS @ np.asarray(matrix, dtype=float)[:3, :3]
    spacing = np.linalg.norm(lps, axis=0)
    image.SetSpacing([float(s) for s in spacing])
    image.SetDirection([float(v) for v in (lps / spacing).ravel()])
    image.SetOrigin([float(v) for v in LPS_TO_RAS @ np.asarray(matrix, dtype=float)[:3, 3]])
    return image


def volume_ijk_to_ras(node: Any) -> np.ndarray:
    import slicer
    import vtk

    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    return slicer.util.arrayFromVTKMatrix(m)


def volume_to_image(node: Any, dtype: Any = np.float32) -> sitk.Image:
    """A scalar volume node as a SimpleITK image in LPS (``dtype=None`` keeps the voxel type)."""
    import slicer

    if node is None or node.GetImageData() is None:
        raise BadInputError(f"Volume node {node.GetName() if node else None!r} has no image data; load the volume first.")
    if node.GetParentTransformNode() is not None:
        raise BadInputError(f"Volume {node.GetName()!r} is under a transform; harden the transform before using it.")
    array = np.array(slicer.util.arrayFromVolume(node), copy=True)
    image = sitk.GetImageFromArray(array if dtype is None else array.astype(dtype))
    return set_lps_geometry(image, volume_ijk_to_ras(node))


def image_to_volume(scene: Any, image: sitk.Image, name: str, node: Any = None,
                    class_name: str = "vtkMRMLScalarVolumeNode") -> Any:
    """Add (or update) a volume node holding ``image`` with its geometry converted to RAS."""
    import slicer

    if node is None:
        node = scene.AddNewNodeByClass(class_name, name)
    slicer.util.updateVolumeFromArray(node, sitk.GetArrayFromImage(image))
    node.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(ijk_to_ras(image)))
    if node.GetDisplayNode() is None:
        node.CreateDefaultDisplayNodes()
    return node


def _oriented_image(array: np.ndarray, matrix: np.ndarray) -> Any:
    """A ``vtkOrientedImageData`` from a (k, j, i) array and an IJK-to-RAS matrix."""
    import slicer
    from vtk.util import numpy_support

    array = np.ascontiguousarray(array)
    oriented = slicer.vtkOrientedImageData()
    oriented.SetDimensions(array.shape[2], array.shape[1], array.shape[0])
    vtk_type = numpy_support.get_vtk_array_type(array.dtype)
    oriented.GetPointData().SetScalars(numpy_support.numpy_to_vtk(array.ravel(), deep=True, array_type=vtk_type))
    oriented.SetImageToWorldMatrix(slicer.util.vtkMatrixFromArray(matrix))
    return oriented


def _image_array(image: Any) -> np.ndarray:
    """(k, j, i) copy of a vtkImageData's scalars (its own extent)."""
    from vtk.util import numpy_support

    dims = image.GetDimensions()
    if image.GetPointData().GetScalars() is None or 0 in dims:
        return np.zeros(tuple(reversed(dims)), dtype=np.uint8)
    return numpy_support.vtk_to_numpy(image.GetPointData().GetScalars()).reshape(tuple(reversed(dims))).copy()


# ----------------------------------------------------------------------------- phase detection
_TIME_UNITS = {"s": 1.0, "sec": 1.0, "second": 1.0, "seconds": 1.0, "ms": 1e-3, "msec": 1e-3,
               "min": 60.0, "minute": 60.0, "minutes": 60.0}


def phase_rank_from_name(name: str) -> Optional[int]:
    """Phase index from a name: "pre" -> 0, "post2"/"post 2" -> 2, "phase 3"/"_0003" -> 3."""
    low = name.lower()
    if re.search(r"\bsub|mip\b", low):
        return None
    m = re.search(r"post[\s_-]*(\d+)", low)
    if m:
        return int(m.group(1))
    if re.search(r"(^|[^a-z])pre($|[^a-z])|pre[-_ ]?contrast|precontrast", low):
        return 0
    m = re.search(r"(?:phase|_|\bt)[\s_-]*(\d+)$", low)
    return int(m.group(1)) if m else None


def _relative_times(times: list[Optional[float]]) -> list[Optional[float]]:
    """Seconds after injection: absolute clock values are made relative to the pre-contrast phase."""
    if times and times[0] is not None and times[0] > 0 and all(t is not None for t in times):
        return [float(t) - float(times[0]) for t in times]
    return times


def _apply_order(nodes: list, times: list, order: Optional[Sequence[int]]) -> tuple[list, list]:
    if order is None:
        return nodes, times
    order = list(order)
    if sorted(order) != list(range(len(order))) or len(order) != len(nodes):
        raise BadInputError(f"Phase order {order} must be a permutation of 0..{len(nodes) - 1}.")
    return [nodes[i] for i in order], [times[i] for i in order]


def detect_volume_phases(nodes: Sequence[Any]) -> tuple[list[int], list[Optional[float]]]:
    """(order, times) of picked volume nodes: this module's phase/time attributes, then
    ``DCE.Time`` attributes, then names ("pre", "post1"...), else the given order."""
    times = [next((t for t in (_float_attr(n, ATTR + "Time"), _float_attr(n, "DCE.Time")) if t is not None), None)
             for n in nodes]
    ranks = [_float_attr(n, ATTR + "Phase") for n in nodes]
    if any(r is None for r in ranks):
        ranks = [phase_rank_from_name(n.GetName() or "") for n in nodes]
    if all(t is not None for t in times) and len(set(times)) == len(times):
        order = sorted(range(len(nodes)), key=lambda i: times[i])
    elif all(r is not None for r in ranks) and len(set(ranks)) == len(ranks):
        order = sorted(range(len(nodes)), key=lambda i: ranks[i])
    else:
        order = list(range(len(nodes)))
    return order, _relative_times([times[i] for i in order])


def _float_attr(node: Any, name: str) -> Optional[float]:
    value = node.GetAttribute(name)
    try:
        return None if value in (None, "") else float(value)
    except ValueError:
        return None


def detect_sequence_phases(sequence: Any) -> tuple[list[int], list[Optional[float]]]:
    """(order, times) of a sequence's items: numeric index values with a time unit give times;
    otherwise the data nodes' attributes and names decide, else the sequence order."""
    n = sequence.GetNumberOfDataNodes()
    scale = _TIME_UNITS.get((sequence.GetIndexUnit() or "").strip().lower())
    values = [sequence.GetNthIndexValue(i) for i in range(n)]
    try:
        numbers = [float(v) for v in values]
    except ValueError:
        numbers = None
    if scale is not None and numbers is not None:
        order = sorted(range(n), key=lambda i: numbers[i])
        return order, _relative_times([numbers[i] * scale for i in order])
    return detect_volume_phases([sequence.GetNthDataNode(i) for i in range(n)])


# ----------------------------------------------------------------------------- study <-> scene
def study_from_volumes(nodes: Sequence[Any], times: Optional[Sequence[Optional[float]]] = None,
                       order: Optional[Sequence[int]] = None, case_id: Optional[str] = None,
                       detect: bool = True) -> DCEStudy:
    """A :class:`DCEStudy` from volume nodes picked per phase.

    ``order`` (indices into ``nodes``, pre-contrast first) and ``times`` (seconds, in the final
    phase order) override what :func:`detect_volume_phases` finds; ``detect=False`` keeps the
    given node order.
    """
    nodes = list(nodes)
    if any(n is None for n in nodes):
        raise BadInputError("A phase volume is not selected; pick a volume for every phase.")
    found_order, found_times = detect_volume_phases(nodes) if detect else (list(range(len(nodes))), [None] * len(nodes))
    if order is not None:
        ordered, _ = _apply_order(nodes, [None] * len(nodes), order)
        found_times = [None] * len(nodes)
    else:
        ordered = [nodes[i] for i in found_order]
    images = [volume_to_image(n) for n in ordered]
    names = [n.GetName() for n in ordered]
    case = case_id or _case_from(ordered[0])
    return DCEStudy.from_images(images, times=list(times) if times is not None else found_times,
                                metadata={"mrml_nodes": [n.GetID() for n in ordered]}, case_id=case, sources=names)


def study_from_sequence(sequence: Any, times: Optional[Sequence[Optional[float]]] = None,
                        order: Optional[Sequence[int]] = None, case_id: Optional[str] = None) -> DCEStudy:
    """A :class:`DCEStudy` from a ``vtkMRMLSequenceNode`` of scalar volumes (DICOM multi-phase)."""
    n = sequence.GetNumberOfDataNodes()
    if n < 2:
        raise BadInputError(f"Sequence {sequence.GetName()!r} has {n} item(s); a DCE study needs a "
                            "pre-contrast and at least one post-contrast phase.")
    nodes = [sequence.GetNthDataNode(i) for i in range(n)]
    bad = [node.GetClassName() for node in nodes if not node.IsA("vtkMRMLScalarVolumeNode")]
    if bad:
        raise BadInputError(f"Sequence {sequence.GetName()!r} holds {bad[0]} items; scalar volumes are needed.")
    found_order, found_times = detect_sequence_phases(sequence)
    if order is not None:
        nodes, _ = _apply_order(nodes, [None] * n, order)
        found_times = [None] * n
    else:
        nodes = [nodes[i] for i in found_order]
    images = [volume_to_image(node) for node in nodes]
    return DCEStudy.from_images(images, times=list(times) if times is not None else found_times,
                                metadata={"mrml_sequence": sequence.GetID()}, case_id=case_id or sequence.GetAttribute(ATTR + "Case") or sequence.GetName(),
                                sources=[f"{sequence.GetName()}[{v}]" for v in range(n)])


def _case_from(node: Any) -> str:
    return node.GetAttribute(ATTR + "Case") or re.sub(r"[\s_-]*(pre|post[\s_-]*\d+|phase[\s_-]*\d+)$", "",
                                                        node.GetName() or "study", flags=re.I) or "study"


@dataclass
class StudyNodes:
    """Nodes of a study in the scene."""

    case_id: str
    volumes: list
    sequence: Any = None
    browser: Any = None
    folder_item: int = 0

    @property
    def pre(self) -> Any:
        return self.volumes[0]


def phase_names(study: DCEStudy) -> list[str]:
    return ["pre"] + [f"post{k}" for k in range(1, study.n_phases)]


def add_study(scene: Any, study: DCEStudy, name: Optional[str] = None, sequence: bool = True) -> StudyNodes:
    """Volume nodes per phase ("<case> pre", "<case> post1"...), a sequence (index "time", unit
    "s") with a browser, all under a subject-hierarchy study item named after the case."""
    case = name or study.case_id
    nodes = StudyNodes(case, [], folder_item=study_item(scene, case))
    for k, (image, label) in enumerate(zip(study.phases, phase_names(study))):
        node = image_to_volume(scene, image, f"{case} {label}")
        node.SetAttribute(ATTR + "Case", case)
        node.SetAttribute(ATTR + "Phase", str(k))
        if study.times[k] is not None:
            node.SetAttribute(ATTR + "Time", repr(float(study.times[k])))
        place_in_hierarchy(node, nodes.folder_item)
        nodes.volumes.append(node)
    if sequence:
        nodes.sequence, nodes.browser = _add_sequence(scene, study, case, nodes.volumes)
        proxy = nodes.browser.GetProxyNode(nodes.sequence)
        for node in (nodes.sequence, nodes.browser, proxy):
            if node is not None:
                place_in_hierarchy(node, nodes.folder_item)
    return nodes


def _add_sequence(scene: Any, study: DCEStudy, case: str, volumes: list) -> tuple[Any, Any]:
    seq = scene.AddNewNodeByClass("vtkMRMLSequenceNode", f"{case} DCE")
    seq.SetIndexName("time")
    seq.SetIndexUnit("s" if all(t is not None for t in study.times) else "")
    seq.SetIndexType(seq.NumericIndex)
    for k, node in enumerate(volumes):
        value = study.times[k] if all(t is not None for t in study.times) else k
        seq.SetDataNodeAtValue(node, f"{float(value):g}")
    seq.SetAttribute(ATTR + "Case", case)
    browser = scene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", f"{case} DCE browser")
    browser.SetAndObserveMasterSequenceNodeID(seq.GetID())
    browser.SetSelectedItemNumber(0)
    logic = module_logic(scene, "Sequences")
    if logic is not None:
        logic.UpdateProxyNodesFromSequences(browser)
    return seq, browser


# ----------------------------------------------------------------------------- subject hierarchy
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



# ----------------------------------------------------------------------------- derived volumes
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
    from .kinetics import max_subtraction, subtraction_images

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

    from .kinetics import time_intensity_curve

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


# ----------------------------------------------------------------------------- segments
def terminology_entry(segment_name: str) -> str:
    """The DICOM (SCT) terminology of a segment type serialised as Slicer does."""
    import slicer

    t = SEGMENT_TYPES[segment_name]
    (cv, cs, cm), (tv, ts, tm), (rv, rs, rm) = t["category"], t["type"], t["region"]
    return slicer.vtkSlicerTerminologiesModuleLogic.SerializeTerminologyEntry(
        TERMINOLOGY_CONTEXT, cv, cs, cm, tv, ts, tm, "", "", "", ANATOMIC_CONTEXT, rv, rs, rm, "", "", "")


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


def set_segment(segmentation_node: Any, name: str, array: np.ndarray, segment_id: Optional[str] = None) -> str:
    """Create or replace segment ``name`` from a (k, j, i) mask on the reference grid; known
    names (``SEGMENT_TYPES``) get their colour and terminology."""
    import slicer

    segmentation = segmentation_node.GetSegmentation()
    sid = segment_id or segmentation.GetSegmentIdBySegmentName(name)
    spec = SEGMENT_TYPES.get(name)
    if not sid:
        sid = segmentation.AddEmptySegment(name, name, spec["color"] if spec else (0.5, 0.5, 0.5))
    _, matrix = reference_geometry(segmentation_node)
    logic = slicer.vtkSlicerSegmentationsModuleLogic
    logic.SetBinaryLabelmapToSegment(_oriented_image((np.asarray(array) != 0).astype(np.uint8), matrix),
                                     segmentation_node, sid, logic.MODE_REPLACE)
    if spec:
        segmentation.GetSegment(sid).SetTerminology(terminology_entry(name))
    return sid


def tumor_segment_id(segmentation_node: Any) -> str:
    sid = segmentation_node.GetSegmentation().GetSegmentIdBySegmentName("Tumor")
    if not sid:
        raise BadInputError(f"Segmentation {segmentation_node.GetName()!r} has no 'Tumor' segment.")
    return sid


def segment_ids(segmentation_node: Any) -> list[str]:
    segmentation = segmentation_node.GetSegmentation()
    return [segmentation.GetNthSegmentID(i) for i in range(segmentation.GetNumberOfSegments())]


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


def ai_segmentations(scene: Any, case_id: str) -> list:
    """AI segmentation nodes of a case, oldest first."""
    nodes = [scene.GetNthNodeByClass(i, "vtkMRMLSegmentationNode")
             for i in range(scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode"))]
    return [n for n in nodes if n.GetAttribute(ATTR + "AI") == "1" and n.GetAttribute(ATTR + "Case") == case_id]


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
    from .study import same_grid

    if not same_grid(image, ref):
        image = resample_to(image, ref, sitk.sitkNearestNeighbor)
    return (sitk.GetArrayFromImage(image) != 0).astype(np.uint8)


def result_to_segmentation(result: SegmentationResult, reference_volume_node: Any, name: Optional[str] = None,
                           include_breast: bool = False, update_in_place: bool = False,
                           case_id: Optional[str] = None, parent_item: Optional[int] = None) -> Any:
    """A segmentation node ("<case> AI", "<case> AI 2"...) with a "Tumor" (and "Breast") segment.

    An unedited AI node of the case is overwritten only when ``update_in_place``; a node the
    user edited (content hash changed) is never touched.
    """
    scene = reference_volume_node.GetScene()
    case = case_id or _case_from(reference_volume_node)
    existing = ai_segmentations(scene, case)
    if update_in_place and existing and not is_user_edited(existing[-1]):
        node = existing[-1]
        for sid in segment_ids(node):
            node.GetSegmentation().RemoveSegment(sid)
    else:
        node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", _unique_name(scene, name or f"{case} AI"))
        node.CreateDefaultDisplayNodes()
    node.SetReferenceImageGeometryParameterFromVolumeNode(reference_volume_node)
    set_segment(node, "Tumor", _mask_on(result.tumor, reference_volume_node))
    if include_breast and result.breast is not None:
        set_segment(node, "Breast", _mask_on(result.breast, reference_volume_node))
    for key, value in (("AI", "1"), ("Case", case), ("Model", result.model_id), ("Device", result.device)):
        node.SetAttribute(ATTR + key, value)
    node.SetAttribute(ATTR + "ContentHash", content_hash(node))
    place_in_hierarchy(node, parent_item if parent_item is not None else parent_item_of(reference_volume_node))
    return node


def add_segmentation(scene: Any, result: SegmentationResult, volumes: Any, name: Optional[str] = None,
                     include_breast: Optional[bool] = None, update_in_place: bool = False) -> Any:
    """:func:`result_to_segmentation` with the reference taken from :func:`add_study`'s nodes
    (or a volume node / list of phase volumes); the breast segment is added when the result has one."""
    reference = volumes.pre if isinstance(volumes, StudyNodes) else (
        volumes[0] if isinstance(volumes, (list, tuple)) else volumes)
    case = volumes.case_id if isinstance(volumes, StudyNodes) else None
    breast = result.breast is not None if include_breast is None else include_breast
    return result_to_segmentation(result, reference, name=name, include_breast=breast,
                                  update_in_place=update_in_place, case_id=case)


def labelmap_file_to_segmentation(path: Any, reference_volume_node: Any, name: Optional[str] = None,
                                  segment_names: Optional[dict[int, str]] = None) -> Any:
    """A segmentation node from a label file (.nrrd, .nii.gz...): one segment per label value;
    names from ``segment_names`` or 1 -> "Tumor", 2 -> "Breast", else "Segment <value>"."""
    from pathlib import Path

    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise BadInputError(f"Cannot read the label file {path}: {exc}. Check that it is a 3-D label image.") from exc
    names = segment_names or {spec["label"]: key for key, spec in SEGMENT_TYPES.items()}
    scene = reference_volume_node.GetScene()
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", _unique_name(scene, name or Path(path).name.split(".")[0]))
    node.CreateDefaultDisplayNodes()
    node.SetReferenceImageGeometryParameterFromVolumeNode(reference_volume_node)
    labels = sitk.GetArrayViewFromImage(image)
    for value in sorted(int(v) for v in np.unique(labels) if v > 0):
        set_segment(node, names.get(value, f"Segment {value}"), _mask_on(sitk.Cast(image == value, sitk.sitkUInt8),
                                                                          reference_volume_node))
    place_in_hierarchy(node, parent_item_of(reference_volume_node))
    return node


# ----------------------------------------------------------------------------- statistics
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
    """Volume (mm³, mL), longest diameter, Feret diameter, centroid (RAS), lesion count and,
    given the study (on the reference grid), mean percent enhancement of the first post phase."""
    sid = segment_id or tumor_segment_id(segmentation_node)
    array = segment_array(segmentation_node, sid)
    _, matrix = reference_geometry(segmentation_node)
    image = set_lps_geometry(sitk.GetImageFromArray(array), matrix)
    spacing = np.asarray(image.GetSpacing())
    n = int(array.sum())
    out: dict[str, Any] = {"segment": segmentation_node.GetSegmentation().GetSegment(sid).GetName(), "voxels": n,
                           "volume_mm3": n * float(np.prod(spacing)), "volume_ml": n * float(np.prod(spacing)) / 1000.0,
                           "longest_diameter_mm": 0.0, "feret_diameter_mm": 0.0, "centroid_ras": None,
                           "lesion_count": 0, "mean_enhancement_percent": None}
    if n == 0:
        return out
    shape = shape_statistics(array, matrix).get(1, {})
    out.update(shape)
    try:
        from . import clinical

        out["longest_diameter_mm"] = clinical.longest_diameter_mm(image)
        out["lesion_count"] = clinical.lesion_count(image, min_volume_mm3=min_lesion_mm3)
    except ImportError:  # pragma: no cover - clinical is part of the package
        from scipy import ndimage as ndi

        out["longest_diameter_mm"] = out["feret_diameter_mm"]
        out["lesion_count"] = int(ndi.label(array, np.ones((3, 3, 3)))[1])
    if study is not None:
        from .kinetics import percent_enhancement

        if study.shape != array.shape:
            raise BadInputError(f"Study grid {study.shape} differs from the segmentation grid {array.shape}.")
        out["mean_enhancement_percent"] = float(percent_enhancement(study, 1)[array != 0].mean())
    return out


# ----------------------------------------------------------------------------- editing
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
