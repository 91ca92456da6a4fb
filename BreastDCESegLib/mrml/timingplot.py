"""The timing study's session summary in the scene: a table node (one row per reader and mode,
as :func:`BreastDCESegLib.timing_summary.table_rows`) and a bar chart of the minutes per case
(a table of numbers, one bar series per mode, a plot chart node).

Usage::

    table = summary_table_node(scene, summary)
    chart = summary_plot_chart(scene, summary)     # show it with the Plots module logic
"""

from __future__ import annotations

from typing import Any

from ..timing import MODES
from ..timing_summary import MODE_TITLES, table_rows
from .scene import ATTR

TABLE_NAME = "BreastDCESeg timing summary"
PLOT_TABLE_NAME = "BreastDCESeg timing minutes"
CHART_NAME = "BreastDCESeg timing: minutes per case"


def _named(scene: Any, cls: str, name: str) -> Any:
    nodes = scene.GetNodesByClassByName(cls, name)
    if nodes.GetNumberOfItems():
        return nodes.GetItemAsObject(0)
    node = scene.AddNewNodeByClass(cls, name)
    node.SetAttribute(ATTR + "Timing", "1")
    return node


def summary_table_node(scene: Any, summary: dict) -> Any:
    """Table node "BreastDCESeg timing summary" (text cells: mean ± SD), refilled on each call."""
    import vtk

    table = _named(scene, "vtkMRMLTableNode", TABLE_NAME)
    table.RemoveAllColumns()
    rows = table_rows(summary)
    for name in (list(rows[0]) if rows else ["Reader"]):
        column = vtk.vtkStringArray()
        column.SetName(name)
        for row in rows:
            column.InsertNextValue(row[name])
        table.GetTable().AddColumn(column)
    table.Modified()
    return table


def summary_plot_chart(scene: Any, summary: dict) -> Any:
    """Plot chart "BreastDCESeg timing: minutes per case": bars of mean minutes per reader, one
    series per mode, with the SD columns alongside in the table."""
    import vtk

    data = _named(scene, "vtkMRMLTableNode", PLOT_TABLE_NAME)
    data.RemoveAllColumns()
    readers = list(dict.fromkeys(g["reader"] for g in summary["groups"]))
    index = vtk.vtkDoubleArray()
    index.SetName("Reader index")
    names = vtk.vtkStringArray()
    names.SetName("Reader")
    for i, reader in enumerate(readers):
        index.InsertNextValue(float(i))
        names.InsertNextValue(reader)
    data.GetTable().AddColumn(index)
    data.GetTable().AddColumn(names)
    for mode in MODES:
        for stat in ("mean", "sd"):
            column = vtk.vtkDoubleArray()
            column.SetName(f"{mode} {stat}")
            for reader in readers:
                g = next((g for g in summary["groups"] if g["reader"] == reader and g["mode"] == mode), None)
                value = None if g is None else g[f"total_min_{stat}"]
                column.InsertNextValue(float("nan") if value is None else float(value))
            data.GetTable().AddColumn(column)
    data.Modified()
    chart = _named(scene, "vtkMRMLPlotChartNode", CHART_NAME)
    chart.RemoveAllPlotSeriesNodeIDs()
    for mode in MODES:
        series = _named(scene, "vtkMRMLPlotSeriesNode", f"BreastDCESeg timing {MODE_TITLES[mode]}")
        series.SetAndObserveTableNodeID(data.GetID())
        series.SetXColumnName("Reader index")
        series.SetLabelColumnName("Reader")
        series.SetYColumnName(f"{mode} mean")
        series.SetPlotType(series.PlotTypeBar)
        series.SetColor(*[c / 255.0 for c in ((150, 150, 150) if mode == "manual" else (40, 110, 200))])
        chart.AddAndObservePlotSeriesNodeID(series.GetID())
    chart.SetTitle("Minutes per case (mean)")
    chart.SetXAxisTitle("Reader")
    chart.SetYAxisTitle("Minutes per case")
    return chart
