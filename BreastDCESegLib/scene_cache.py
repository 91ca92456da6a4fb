"""Which study each AI segmentation node was computed from, without trusting node IDs.

After Close Scene, Slicer reuses node IDs (the next patient's segmentation is again
``vtkMRMLSegmentationNode1``), so a cache keyed by ID hands the previous patient's study to
the new node. :class:`SegmentationStudies` remembers the node object itself and answers only
for that very object while it is in a scene (entries of removed nodes are dropped at the next
look-up, so a closed scene's study is not held either); it keeps the phase arrays of one study only (the one asked last) and
rebuilds any other from the scene with the recipe the panel recorded when it built the study
(``study.metadata["scene_source"]``: input mode, sequence node ID, phase rows, resampling allowed).

Usage::

    studies = SegmentationStudies(rebuild=lambda source: logic.buildStudy(*source)[0])
    studies.remember(segmentationNode, study)
    studies.get(segmentationNode)        # the study; None for any other node with the same ID
    studies.clear()                      # on Close Scene
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from .errors import BreastDCESegError


class SegmentationStudies:
    """Segmentation node -> its study, checked by node identity, one study's arrays in memory.

    Args:
        rebuild: makes a study again from a recorded ``scene_source`` (raises
            :class:`~BreastDCESegLib.errors.BreastDCESegError` when its nodes are gone).
    """

    def __init__(self, rebuild: Callable[[Any], Any]):
        self._rebuild = rebuild
        self._sources: dict[str, tuple[Any, Any]] = {}  # node ID -> (the node object, its scene_source)
        self._current: Optional[tuple[Any, Any]] = None  # (node, study): the only study held in memory

    def remember(self, node: Any, study: Any) -> None:
        """Record that ``node`` was computed from ``study`` (which becomes the one held)."""
        self._sources[node.GetID()] = (node, (study.metadata or {}).get("scene_source"))
        self._current = (node, study)

    def get(self, node: Any) -> Any:
        """The study of this very ``node``, or None (unknown node, same ID reused, node or inputs gone)."""
        self.drop_removed()
        entry = self._sources.get(node.GetID())
        if entry is None or entry[0] is not node:
            return None
        if self._current is not None and self._current[0] is node:
            return self._current[1]
        if entry[1] is None:
            return None
        try:
            study = self._rebuild(entry[1])
        except BreastDCESegError:
            return None
        self._current = (node, study)
        return study

    def drop_removed(self) -> None:
        """Forget nodes that are no longer in a scene (deleted, or the scene was closed)."""
        for key, (node, _) in list(self._sources.items()):
            if node.GetScene() is None:
                del self._sources[key]
        if self._current is not None and self._current[0].GetScene() is None:
            self._current = None

    def clear(self) -> None:
        """Forget everything (the scene was closed)."""
        self._sources.clear()
        self._current = None

    def __len__(self) -> int:
        return len(self._sources)
