"""The Results panel's Qt wiring for maps, the live probability threshold, the lesion table and
the DICOM SEG export; the work is :class:`BreastDCESegLib.results_logic.ResultsLogic`.

Usage (the module widget)::

    self.resultsPanel = ResultsPanel(self)
    self.resultsPanel.refresh(segmentation)
"""

import qt
import slicer

from BreastDCESegLib.errors import BreastDCESegError

RETHRESHOLD_DELAY_MS = 150  # the slider re-draws once it rests this long


class ResultsPanel:
    def __init__(self, widget):
        self.widget = widget
        ui = widget.ui
        self._timer = qt.QTimer()
        self._timer.setSingleShot(True)
        self._timer.setInterval(RETHRESHOLD_DELAY_MS)
        self._timer.timeout.connect(self.rethreshold)
        ui.probabilityThresholdSlider.valueChanged.connect(lambda *_: self._timer.start())
        ui.minComponentSpinBox.valueChanged.connect(lambda *_: self._timer.start())
        ui.showMapsButton.clicked.connect(self.showMaps)
        ui.lesionTableButton.clicked.connect(self.showLesionTable)
        ui.exportDicomSegButton.clicked.connect(self.exportDicomSeg)

    def segmentation(self):
        p = self.widget._parameterNode
        return p.outputSegmentation if p is not None else None

    def refresh(self, segmentation):
        ui, logic = self.widget.ui, self.widget.logic
        has_probability = segmentation is not None and logic.probabilityNode(segmentation) is not None
        ui.probabilityThresholdSlider.enabled = has_probability
        if has_probability:  # the widgets show the threshold this segmentation was drawn with
            ui.probabilityThresholdSlider.value = float(segmentation.GetAttribute("BreastDCESeg.Threshold") or 0.5)
            ui.minComponentSpinBox.value = float(segmentation.GetAttribute("BreastDCESeg.MinComponentMm3") or 0.0)
        for button in (ui.showMapsButton, ui.lesionTableButton, ui.exportDicomSegButton):
            button.enabled = segmentation is not None

    def rethreshold(self):
        """Re-draw the AI tumor from the probability (no model run); edits by hand are never replaced."""
        segmentation, ui = self.segmentation(), self.widget.ui
        if segmentation is None or self.widget.logic.probabilityNode(segmentation) is None:
            return
        threshold, smallest = float(ui.probabilityThresholdSlider.value), float(ui.minComponentSpinBox.value)
        current = (segmentation.GetAttribute("BreastDCESeg.Threshold") or "0.5",
                   segmentation.GetAttribute("BreastDCESeg.MinComponentMm3") or "0")
        if current == (f"{threshold:g}", f"{smallest:g}"):
            return  # the widgets were only bound to the parameter node
        try:
            volume = self.widget.logic.rethreshold(segmentation, threshold, smallest)
        except BreastDCESegError as exc:
            slicer.util.showStatusMessage(str(exc), 6000)
            return
        self.widget.log(f"threshold {threshold:.2f}, lesions >= {smallest:.0f} mm³: tumor {volume / 1000.0:.2f} mL")
        self.widget.updateStatistics()

    def showMaps(self):
        with slicer.util.tryWithErrorDisplay("Could not make the maps.", waitCursor=True):
            nodes = self.widget.logic.showMaps(self.segmentation(), self.widget.currentStudy())
            background = self.widget.logic.editorSourceVolume(self.segmentation()) or "keep-current"
            slicer.util.setSliceViewerLayers(background=background, foreground=nodes["percent_enhancement"],
                                             foregroundOpacity=0.5, label=nodes["curve_type"], labelOpacity=0.6)
            self.widget.log("Maps: " + ", ".join(node.GetName() for node in nodes.values()))

    def showLesionTable(self):
        with slicer.util.tryWithErrorDisplay("Could not make the lesion table.", waitCursor=True):
            segmentation = self.segmentation()
            table = self.widget.logic.lesionTable(segmentation, float(self.widget.ui.minComponentSpinBox.value))
            from BreastDCESegGui import views
            self.widget.logic.statisticsTable(segmentation, views.statistics_rows(self.widget.logic.statistics(segmentation)))
            slicer.app.layoutManager().setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpTableView)
            selection = slicer.app.applicationLogic().GetSelectionNode()
            selection.SetActiveTableID(table.GetID())
            slicer.app.applicationLogic().PropagateTableSelection()

    def exportDicomSeg(self):
        segmentation = self.segmentation()
        if segmentation is None:
            return
        path = qt.QFileDialog.getSaveFileName(self.widget.parent, "Export DICOM SEG",
                                              f"{segmentation.GetName()}.seg.dcm", "DICOM SEG (*.dcm)")
        if not path:
            return
        with slicer.util.tryWithErrorDisplay("Could not export DICOM SEG.", waitCursor=True):
            written = self.widget.logic.exportDicomSeg(segmentation, path, slicer.dicomDatabase.fileForInstance,
                                                       overwrite=True)  # the save dialog asked
            self.widget.log(f"DICOM SEG written: {written}")
