"""Showing results in Slicer's views and editors: slice layers, the Segment Editor, plots, tables.

Usage inside Slicer::

    show_in_slice_views(subtraction_nodes[0])
    open_segment_editor(segmentation_node, subtraction_nodes[0])
    show_curve(table_node, x_column="Time (s)", y_column="Percent enhancement", title="case01")
    rows = statistics_rows(logic.statistics(segmentation_node))
"""

from typing import Any, Optional

import slicer


def show_in_slice_views(volume_node: Any) -> None:
    slicer.util.setSliceViewerLayers(background=volume_node, fit=True)


def reference_volume(segmentation_node: Any) -> Optional[Any]:
    """The volume a segmentation's reference geometry was taken from (None when unknown)."""
    return segmentation_node.GetNodeReference(segmentation_node.GetReferenceImageGeometryReferenceRole())


def open_segment_editor(segmentation_node: Any, source_volume_node: Optional[Any] = None,
                        segment_name: str = "Tumor") -> Any:
    """Switch to the Segment Editor on ``segmentation_node`` with ``segment_name`` selected, the source
    volume set (default: the reference volume) and other segments protected from overwriting (the
    tumor lies inside the breast segment). Returns the editor widget."""
    slicer.util.selectModule("SegmentEditor")
    editor = slicer.modules.segmenteditor.widgetRepresentation().self().editor
    editor.setSegmentationNode(segmentation_node)
    source = source_volume_node or reference_volume(segmentation_node)
    if source is not None:
        setter = getattr(editor, "setSourceVolumeNode", None) or editor.setMasterVolumeNode  # Slicer < 5.2
        setter(source)
    segment_id = segmentation_node.GetSegmentation().GetSegmentIdBySegmentName(segment_name)
    if segment_id:
        editor.setCurrentSegmentID(segment_id)
    editor.mrmlSegmentEditorNode().SetOverwriteMode(slicer.vtkMRMLSegmentEditorNode.OverwriteNone)
    return editor


def show_curve(table_node: Any, x_column: str, y_column: str, title: str, y_title: str = "Enhancement (%)") -> Any:
    """A plot chart of one table column against another, shown in the layout's plot view."""
    scene = table_node.GetScene()
    series = scene.AddNewNodeByClass("vtkMRMLPlotSeriesNode", f"{title} {y_column}")
    series.SetAndObserveTableNodeID(table_node.GetID())
    series.SetXColumnName(x_column)
    series.SetYColumnName(y_column)
    series.SetPlotType(series.PlotTypeScatter)
    series.SetMarkerStyle(series.MarkerStyleCircle)
    chart = scene.AddNewNodeByClass("vtkMRMLPlotChartNode", f"{title} enhancement curve")
    chart.AddAndObservePlotSeriesNodeID(series.GetID())
    chart.SetXAxisTitle(x_column)
    chart.SetYAxisTitle(y_title)
    slicer.modules.plots.logic().ShowChartInLayout(chart)
    return chart


def statistics_rows(stats: dict) -> list:
    """(measure, text) rows of the Results table from a tumor statistics dict."""
    def number(value: Optional[float], unit: str) -> str:
        return "-" if value is None else f"{value:.1f} {unit}"

    return [("Volume", number(stats.get("volume_ml"), "mL")),
            ("Longest diameter (largest lesion)", number(stats.get("longest_diameter_mm"), "mm")),
            ("Extent (all lesions)", number(stats.get("extent_mm"), "mm")),
            ("Feret diameter (all lesions)", number(stats.get("feret_diameter_mm"), "mm")),
            ("Lesions", str(stats.get("lesion_count", "-"))),
            ("Mean enhancement, first post", number(stats.get("mean_enhancement_percent"), "%")),
            ("T-stage", str(stats.get("t_stage", "-"))), ("Model", str(stats.get("model", "-"))),
            ("Device", str(stats.get("device", "-"))), ("Worker time (s)", str(stats.get("seconds", "-")))]
