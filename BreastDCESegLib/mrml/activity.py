"""The reader's activity in the scene, fed to a :class:`~BreastDCESegLib.timing.TimingSession`.

* :class:`SegmentationObserver` — edits: a segmentation node's segment added/removed/modified
  and source-representation-modified events;
* :class:`ActivityObserver` — the edits plus reading: slice-view interaction (a slice node's
  offset, field of view or orientation changes; the mouse moving over a view, from the
  crosshair node), window/level changes of any volume, and Segment Editor effect use (the
  active effect or an effect parameter changes on a ``vtkMRMLSegmentEditorNode``).

The nodes present when :meth:`ActivityObserver.attach` runs are observed, and nodes added to
the scene later (a layout change, the Segment Editor opened after Start) from then on. Works
in the Slicer application and on a ``slicer-core`` scene alike (no Qt).

Usage::

    observer = ActivityObserver(session, segmentation_node).attach()
    ...
    observer.detach()
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

WATCHED_CLASSES = ("vtkMRMLSliceNode", "vtkMRMLCrosshairNode", "vtkMRMLScalarVolumeDisplayNode",
                   "vtkMRMLSegmentEditorNode")


class SegmentationObserver:
    """Feeds a session with a segmentation node's modified events (segments added, removed,
    modified, source representation modified): each is an edit."""

    EVENT_NAMES = ("SourceRepresentationModified", "SegmentAdded", "SegmentRemoved", "SegmentModified")

    def __init__(self, session: Any, segmentation_node: Any):
        self.session = session
        self.node = segmentation_node
        self._tags: list[tuple[Any, int]] = []
        self._ignore = 0

    def attach(self) -> "SegmentationObserver":
        import slicer

        for name in self.EVENT_NAMES:
            event = getattr(slicer.vtkSegmentation, name, None)
            if event is not None:
                self._tags.append((self.node, self.node.AddObserver(event, self._on_edit)))
        return self

    def detach(self) -> None:
        for node, tag in self._tags:
            node.RemoveObserver(tag)
        self._tags = []

    @contextlib.contextmanager
    def ignoring(self) -> Iterator[None]:
        """Changes made inside (loading the AI result, a programmatic update) are not activity."""
        self._ignore += 1
        try:
            yield
        finally:
            self._ignore -= 1

    def _on_edit(self, caller: Any, event: Any) -> None:
        if not self._ignore:
            self.session.record_edit()


class ActivityObserver(SegmentationObserver):
    """Edits of ``segmentation_node`` and the reader's interaction with views, window/level and the
    Segment Editor, as activity marks of ``session``."""

    def attach(self) -> "ActivityObserver":
        super().attach()
        scene = self.node.GetScene()
        self._levels: dict[str, tuple] = {}
        for cls in WATCHED_CLASSES:
            for i in range(scene.GetNumberOfNodesByClass(cls)):
                self._watch(scene.GetNthNodeByClass(i, cls))
        self._tags.append((scene, scene.AddObserver(scene.NodeAddedEvent, self._on_node_added)))
        return self

    def _on_node_added(self, scene: Any, event: Any) -> None:
        # the added node is the call data, which VTK's Python wrapping does not pass to plain
        # callbacks: look for watched nodes that are not observed yet
        observed = {id(node) for node, _ in self._tags}
        for cls in WATCHED_CLASSES:
            for i in range(scene.GetNumberOfNodesByClass(cls)):
                node = scene.GetNthNodeByClass(i, cls)
                if id(node) not in observed:
                    self._watch(node)

    def _watch(self, node: Any) -> None:
        import vtk

        if node.IsA("vtkMRMLCrosshairNode"):
            self._tags.append((node, node.AddObserver(node.CursorPositionModifiedEvent, self._on_view)))
        elif node.IsA("vtkMRMLSliceNode"):
            self._tags.append((node, node.AddObserver(vtk.vtkCommand.ModifiedEvent, self._on_slice)))
            self._levels[node.GetID()] = self._slice_state(node)
        elif node.IsA("vtkMRMLScalarVolumeDisplayNode"):
            self._tags.append((node, node.AddObserver(vtk.vtkCommand.ModifiedEvent, self._on_window_level)))
            self._levels[node.GetID()] = (node.GetWindow(), node.GetLevel())
        elif node.IsA("vtkMRMLSegmentEditorNode"):
            self._tags.append((node, node.AddObserver(vtk.vtkCommand.ModifiedEvent, self._on_effect)))
            self._tags.append((node, node.AddObserver(node.EffectParameterModified, self._on_effect)))

    @staticmethod
    def _slice_state(node: Any) -> tuple:
        matrix = node.GetSliceToRAS()
        return tuple(matrix.GetElement(r, c) for r in range(3) for c in range(4)) + tuple(node.GetFieldOfView())

    def _changed(self, node: Any, state: tuple) -> bool:
        """True when ``state`` differs from the node's last seen state (display nodes fire
        ModifiedEvent for many reasons; only a real change is activity)."""
        if self._levels.get(node.GetID()) == state:
            return False
        self._levels[node.GetID()] = state
        return True

    def _on_slice(self, node: Any, event: Any) -> None:
        if not self._ignore and self._changed(node, self._slice_state(node)):
            self.session.record_activity("slice_view")

    def _on_view(self, node: Any, event: Any) -> None:
        if not self._ignore:
            self.session.record_activity("slice_view")

    def _on_window_level(self, node: Any, event: Any) -> None:
        if not self._ignore and self._changed(node, (node.GetWindow(), node.GetLevel())):
            self.session.record_activity("window_level")

    def _on_effect(self, node: Any, event: Any) -> None:
        if not self._ignore:
            self.session.record_activity("editor_effect")
