"""Phase order, acquisition times and case name of picked nodes, from attributes and names."""

from __future__ import annotations

import re
from typing import Any, Optional, Sequence

from ..errors import BadInputError
from .scene import ATTR

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


def _case_from(node: Any) -> str:
    return node.GetAttribute(ATTR + "Case") or re.sub(r"[\s_-]*(pre|post[\s_-]*\d+|phase[\s_-]*\d+)$", "",
                                                        node.GetName() or "study", flags=re.I) or "study"
