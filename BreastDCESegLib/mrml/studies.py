"""DCEStudy <-> scene: a study from picked phase volumes or a sequence, a study added as phase
volumes with a sequence and browser, and a case removed again (:func:`remove_study`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

from ..errors import BadInputError
from ..study import DCEStudy
from .hierarchy import place_in_hierarchy, study_item
from .phases import _apply_order, _case_from, detect_sequence_phases, detect_volume_phases
from .scene import ATTR, module_logic
from .volumes import image_to_volume, volume_to_image


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


def remove_study(scene: Any, case: str) -> int:
    """Remove the case's subject-hierarchy study item and every node under it, with their display
    and storage nodes (what :func:`add_study` and the AI segmentation of the case added); returns
    the number of nodes removed. Shared nodes (colour tables, the selection node) stay."""
    import vtk

    sh = scene.GetSubjectHierarchyNode()
    item = study_item(scene, case)
    ids = vtk.vtkIdList()
    sh.GetItemChildren(item, ids, True)
    data = [sh.GetItemDataNode(ids.GetId(i)) for i in range(ids.GetNumberOfIds())]
    data = [node for node in data if node is not None]
    attached = []
    for node in data:
        for i in range(node.GetNumberOfDisplayNodes() if hasattr(node, "GetNumberOfDisplayNodes") else 0):
            attached.append(node.GetNthDisplayNode(i))
        attached.append(node.GetStorageNode() if hasattr(node, "GetStorageNode") else None)
    before = scene.GetNumberOfNodes()
    sh.RemoveItem(item, True, True)
    for node in data + [n for n in attached if n is not None]:
        if scene.IsNodePresent(node):
            scene.RemoveNode(node)
    return before - scene.GetNumberOfNodes()
