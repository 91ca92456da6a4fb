"""Phase order, acquisition times and case name of picked nodes: from this module's attributes,
then ``DCE.Time``, then the DICOM database (volumes loaded by the DICOM module, see
:mod:`.dicomdb`), then the names (the one phase-name rule, :mod:`BreastDCESegLib.phase_labels`)."""

from __future__ import annotations

import re
from typing import Any, Optional, Sequence

from ..errors import BadInputError
from ..phase_labels import phase_rank, seconds_per_unit
from .dicomdb import database_phases
from .scene import ATTR


def phase_rank_from_name(name: str) -> Optional[int]:
    """Phase index from a name: "pre" -> 0, "post2"/"post 2" -> 2, "phase 3"/"_0003" -> 3; subtractions None."""
    return phase_rank(name)


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


def detect_volume_phases(nodes: Sequence[Any], database: Any = None) -> tuple[list[int], list[Optional[float]]]:
    """(order, times) of picked volume nodes: this module's phase/time attributes, then
    ``DCE.Time`` attributes, then the DICOM ``database`` (``slicer.dicomDatabase``) for nodes
    loaded from DICOM, then names ("pre", "post1"...), else the given order."""
    times = [next((t for t in (_float_attr(n, ATTR + "Time"), _float_attr(n, "DCE.Time")) if t is not None), None)
             for n in nodes]
    if not all(t is not None for t in times):
        found = database_phases(nodes, database)
        if found is not None:
            return found
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


def detect_sequence_phases(sequence: Any, database: Any = None) -> tuple[list[int], list[Optional[float]]]:
    """(order, times) of a sequence's items: numeric index values with a time unit give times;
    otherwise the data nodes' attributes, the DICOM ``database`` and names decide, else the sequence order."""
    n = sequence.GetNumberOfDataNodes()
    scale = seconds_per_unit(sequence.GetIndexUnit())
    values = [sequence.GetNthIndexValue(i) for i in range(n)]
    try:
        numbers = [float(v) for v in values]
    except ValueError:
        numbers = None
    if scale is not None and numbers is not None:
        order = sorted(range(n), key=lambda i: numbers[i])
        return order, _relative_times([numbers[i] * scale for i in order])
    return detect_volume_phases([sequence.GetNthDataNode(i) for i in range(n)], database)


def _case_from(node: Any) -> str:
    return node.GetAttribute(ATTR + "Case") or re.sub(r"[\s_-]*(pre|post[\s_-]*\d+|phase[\s_-]*\d+)$", "",
                                                        node.GetName() or "study", flags=re.I) or "study"
