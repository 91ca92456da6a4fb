"""Breast DCE Segmentation: the 3D Slicer module, a thin GUI shell over BreastDCESegLib.

The panel picks a DCE study (a sequence or one volume per phase), shows the detected phase
order and times, runs a model in a background worker (BreastDCESegLib.runner), puts the result
in the scene (BreastDCESegLib.mrml) and runs the annotation-timing study (BreastDCESegLib.timing).

Usage from Slicer's Python console::

    logic = slicer.util.getModuleLogic("BreastDCESeg")
    rows = logic.detectPhases("Phase volumes", None, [preNode, post1Node, post2Node])
    study, reference = logic.buildStudy("Phase volumes", None, rows)
    job = logic.start(study, reference, "kinetic", "auto")
    segmentation = logic.finish(job, job.runner.wait())
"""

import json
import os
import sys
import time
from typing import Annotated

import qt
import slicer
import vtk
from slicer import vtkMRMLSegmentationNode, vtkMRMLSequenceNode
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import ScriptedLoadableModule, ScriptedLoadableModuleLogic, ScriptedLoadableModuleWidget
from slicer.util import VTKObservationMixin


def _libraryRoot() -> str:
    """Folder with BreastDCESegLib/ and Resources/: this one once installed, its parent in a source checkout."""
    here = os.path.dirname(os.path.abspath(__file__))
    return next((d for d in (here, os.path.dirname(here)) if os.path.isdir(os.path.join(d, "BreastDCESegLib"))), here)


LIBRARY_ROOT = _libraryRoot()
for _folder in (LIBRARY_ROOT, os.path.dirname(os.path.abspath(__file__))):
    if _folder not in sys.path:
        sys.path.insert(0, _folder)

from BreastDCESegGui import dependencies, views  # noqa: E402  (Slicer glue; no science)
from BreastDCESegGui.modelimport import import_model as import_model_dialog  # noqa: E402
from BreastDCESegGui.phasetable import PhaseTable  # noqa: E402
from BreastDCESegGui.resultspanel import ResultsPanel  # noqa: E402
from BreastDCESegGui.savereport import save_report  # noqa: E402
from BreastDCESegGui.selftest import BreastDCESegTest  # noqa: E402,F401  (Slicer runs BreastDCESeg.BreastDCESegTest)
from BreastDCESegGui.timingpanel import TimingPanel  # noqa: E402
from BreastDCESegGui.backend import BackendPanel  # noqa: E402
from BreastDCESegLib import versions  # noqa: E402
from BreastDCESegLib.scene_logic import INPUT_MODES, TIMING_MODES, SceneLogic  # noqa: E402

DEVICES = ("auto", "cpu", "cuda")
POLL_MS = 200
SETTINGS = {"pythonPath": "BreastDCESeg/PythonPath", "device": "BreastDCESeg/Device",
            "timingLogFolder": "BreastDCESeg/TimingLogFolder"}
DEMO_WARNING = "Demo weights — trained on synthetic phantoms, not for clinical use."


def resourcePath(relative: str) -> str:
    return os.path.join(LIBRARY_ROOT, "Resources", relative)


class BreastDCESeg(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "Breast DCE Segmentation"
        self.parent.categories = ["Segmentation"]
        self.parent.dependencies = []
        self.parent.contributors = ["BreastDCESeg contributors"]
        self.parent.helpText = (
            "Segments breast tumors in dynamic contrast-enhanced MRI (one pre-contrast and one or more "
            "post-contrast phases). Pick a DCE sequence or one volume per phase, check the detected phase order "
            "and times, choose a model and press Apply: the model runs in a background process and the result "
            "becomes a segmentation ('Tumor', optionally 'Breast') to refine in the Segment Editor. The timing "
            "study compares manual annotation with AI + refinement.<br><br><b>Not for clinical use.</b> The shipped "
            "demo weights are trained on synthetic phantoms, not for clinical use: they demonstrate the pipeline "
            f"only. {versions.SUPPORTED_TEXT} "
            "<a href='https://github.com/breastdceseg/SlicerBreastDCESeg#using-it-in-slicer'>Documentation</a>.")
        self.parent.acknowledgementText = (
            "Implements methods of: Zhang et al., robust and efficient AI assistant for breast tumor segmentation "
            "from DCE-MRI, Patterns 2023; He et al., TSESNet, IJCAI 2024; Xie et al., RST2G residual "
            "spatial-temporal graph network; Xie et al., kinetic heterogeneity clustering for non-contrast "
            "segmentation; Abdikenov &amp; Suvorov, MAMA-MIA generalisation study. Networks built with MONAI and "
            "PyTorch. The demo weights are trained on synthetic phantoms, not for clinical use.")
        if os.path.exists(resourcePath("Icons/BreastDCESeg.png")):
            self.parent.icon = qt.QIcon(resourcePath("Icons/BreastDCESeg.png"))


@parameterNodeWrapper
class BreastDCESegParameterNode:
    """GUI state saved with the scene; widgets are bound through their SlicerParameterName property."""

    inputMode: Annotated[str, Choice(list(INPUT_MODES))] = "Sequence"
    inputSequence: vtkMRMLSequenceNode
    phaseRows: str = "[]"  # JSON [[sequence item index or volume node ID, source name, seconds or null], ...]
    modelId: str = ""
    device: Annotated[str, Choice(list(DEVICES))] = "auto"
    pythonPath: str = ""
    includeBreast: bool = True
    allowResample: bool = False  # phases off the pre-contrast grid: resampled with a warning, else refused
    uncertaintyMap: bool = False  # option tta: an uncertainty map volume (networks: flips; kinetic: cut levels)
    otherLesions: bool = False  # option other_lesions: an "Other enhancing lesions" segment
    outputSegmentation: vtkMRMLSegmentationNode
    referenceSegmentation: vtkMRMLSegmentationNode
    timingMode: Annotated[str, Choice(list(TIMING_MODES))] = "ai_refine"
    timingIdleSeconds: Annotated[float, WithinRange(5.0, 600.0)] = 30.0
    probabilityThreshold: Annotated[float, WithinRange(0.05, 0.95)] = 0.5
    minComponentMm3: Annotated[float, WithinRange(0.0, 100000.0)] = 0.0
    readerName: str = ""
    timingLogFolder: str = ""
    preferencesApplied: bool = False  # QSettings preferences copied in once


class BreastDCESegWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = self._parameterNode = self._guiTag = self._job = self.phases = None
        self.timingPanel = self.resultsPanel = None
        self._timer = qt.QTimer()
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self.onPoll)

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(resourcePath("UI/BreastDCESeg.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = BreastDCESegLogic()
        self.phases = PhaseTable(ui.phaseTable, ui.phaseInfoLabel)
        self.backend = BackendPanel(ui, self.logic)  # This computer / Remote server (URL, token: Slicer settings)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        for signal in (ui.inputModeComboBox.currentIndexChanged, ui.inputSequenceSelector.currentNodeChanged,
                       ui.phaseVolumesSelector.checkedNodesChanged, ui.detectPhasesButton.clicked):
            signal.connect(lambda *_: self.refreshPhaseTable())
        ui.phaseUpButton.clicked.connect(lambda *_: self.phases.move(ui.phaseTable.currentRow(), -1) and self.storePhaseRows())
        ui.phaseDownButton.clicked.connect(lambda *_: self.phases.move(ui.phaseTable.currentRow(), 1) and self.storePhaseRows())
        ui.phaseTable.itemChanged.connect(lambda *_: self.storePhaseRows())
        ui.modelComboBox.currentIndexChanged.connect(self.onModelChanged)
        ui.importModelButton.clicked.connect(lambda: import_model_dialog(self))
        ui.pythonPathBrowseButton.clicked.connect(lambda: self.browse("pythonPath", False))
        ui.timingLogBrowseButton.clicked.connect(lambda: self.browse("timingLogFolder", True))
        ui.applyButton.clicked.connect(self.onApplyButton)
        ui.outputSegmentationSelector.currentNodeChanged.connect(lambda *_: self.updateStatistics())
        ui.openSegmentEditorButton.clicked.connect(lambda: self.guarded(
            "open the Segment Editor", lambda: self.logic.openSegmentEditor(self._parameterNode.outputSegmentation)))
        ui.showSubtractionButton.clicked.connect(lambda: self.guarded(
            "create the subtraction volumes", lambda: self.logic.showSubtraction(self.currentStudy())))
        ui.showCurveButton.clicked.connect(lambda: self.guarded("plot the enhancement curve", lambda: (
            self.logic.showEnhancementCurve(self.currentStudy(), self._parameterNode.outputSegmentation))))
        ui.saveReportButton.clicked.connect(lambda: self.guarded("save the case report", lambda: save_report(self)))
        for button, operation in ((ui.keepLargestIslandButton, "keep_largest"), (ui.removeSmallIslandsButton, "remove_small"),
                                  (ui.fillHolesButton, "fill_holes"), (ui.growMarginButton, "grow"),
                                  (ui.shrinkMarginButton, "shrink"), (ui.undoRefineButton, None)):
            button.clicked.connect(lambda _=False, op=operation: self.onRefine(op))
        self.timingPanel, self.resultsPanel = TimingPanel(self), ResultsPanel(self)
        ui.demoWarningLabel.text = DEMO_WARNING
        self.fillModels()
        self.initializeParameterNode()

    def cleanup(self):
        self.stopJob()
        self.logic.closeWorker()  # the warm worker ends with the module
        self.removeObservers()

    def enter(self):
        self.initializeParameterNode()

    def exit(self):
        if self._parameterNode is not None and self._guiTag is not None:
            self._parameterNode.disconnectGui(self._guiTag)
            self._guiTag = None

    def onSceneStartClose(self, caller, event):
        self.stopJob()
        self.logic.clearCaches()  # Close Scene reuses node IDs: nothing of this patient is kept
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event):
        self.timingPanel.onSceneClosed()  # the logic stopped and logged a running case at StartClose
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self):
        self.setParameterNode(self.logic.getParameterNode())

    def setParameterNode(self, parameterNode):
        if self._parameterNode is not None:
            self.exit()
            self.removeObserver(self._parameterNode.parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateButtons)
        self._parameterNode = p = parameterNode
        if p is None:
            return
        if not p.preferencesApplied:
            settings = qt.QSettings()
            for field, key in SETTINGS.items():
                if settings.value(key):
                    setattr(p, field, str(settings.value(key)))
            p.preferencesApplied = True
        self.phases.filling = True  # binding the widgets must not re-detect (and so lose edited) phases
        self._guiTag = p.connectGui(self.ui)
        rows = json.loads(p.phaseRows or "[]")
        for node in filter(None, (slicer.mrmlScene.GetNodeByID(str(row[0])) for row in rows)):
            self.ui.phaseVolumesSelector.setCheckState(node, qt.Qt.Checked)
        self.phases.filling = False
        self.addObserver(p.parameterNode, vtk.vtkCommand.ModifiedEvent, self.updateButtons)
        self.ui.modelComboBox.setCurrentIndex(max(self.ui.modelComboBox.findData(p.modelId or self.logic.defaultModelId()), 0))
        self.onModelChanged()
        self.ui.timingManualRadioButton.checked = p.timingMode == "manual"
        self.ui.timingAiRadioButton.checked = p.timingMode != "manual"
        self.phases.fill(rows)
        self.updateStatistics()
        self.updateButtons()

    # ------------------------------------------------------------------ inputs
    def refreshPhaseTable(self):
        if self._parameterNode is None or self.phases.filling:
            return
        mode = self.ui.inputModeComboBox.currentText  # read the widgets: the parameter node may update later
        self.ui.inputSequenceSelector.enabled = mode == INPUT_MODES[0]
        self.ui.phaseVolumesSelector.enabled = mode != INPUT_MODES[0]
        try:
            rows = self.logic.detectPhases(mode, self.ui.inputSequenceSelector.currentNode(),
                                           list(self.ui.phaseVolumesSelector.checkedNodes()))
        except Exception as exc:
            rows = []
            slicer.util.showStatusMessage(f"Phase detection failed: {exc}", 5000)
        self.phases.fill(rows)
        self.storePhaseRows()

    def storePhaseRows(self):
        if self._parameterNode is not None and not self.phases.filling:
            self._parameterNode.phaseRows = json.dumps(self.phases.rows())

    # ------------------------------------------------------------------ model and preferences
    def fillModels(self, select=None):
        """The tumor models in the list (title, and origin when not shipped); then select ``select``."""
        combo = self.ui.modelComboBox
        combo.blockSignals(True)
        combo.clear()
        for entry in self.logic.models(task="tumor"):
            combo.addItem(self.logic.modelTitle(entry), entry["id"])
        combo.blockSignals(False)
        if select:
            combo.setCurrentIndex(max(combo.findData(select), 0))
            self.onModelChanged()

    def onModelChanged(self, *_):
        modelId = self.ui.modelComboBox.currentData
        info = self.logic.modelInfo(modelId)
        self.ui.modelDescriptionLabel.text = info.get("description", "")
        self.ui.modelLicenceLabel.text = f"{info.get('licence', '-')}; {info.get('intended_use', '')}"
        self.ui.demoWarningLabel.visible = bool(info.get("demo"))
        if self._parameterNode is not None and modelId:
            self._parameterNode.modelId = modelId

    def browse(self, field, folder):
        title = "Timing session log folder" if folder else "Python interpreter for the worker"
        path = (qt.QFileDialog.getExistingDirectory(self.parent, title) if folder
                else qt.QFileDialog.getOpenFileName(self.parent, title))
        if path:
            setattr(self._parameterNode, field, path)

    def savePreferences(self):
        settings = qt.QSettings()
        for field, key in SETTINGS.items():
            settings.setValue(key, getattr(self._parameterNode, field))

    # ------------------------------------------------------------------ run
    def updateButtons(self, *_):
        p, running = self._parameterNode, self._job is not None
        ready = p is not None and len(json.loads(p.phaseRows or "[]")) >= 2 and bool(p.modelId)
        self.ui.applyButton.text = "Cancel" if running else "Apply"
        self.ui.applyButton.enabled = running or ready
        self.timingPanel.refresh()

    def onApplyButton(self):
        if self._job is not None:
            self.ui.applyButton.enabled = False
            self.log("Cancelling...")
            self._job.runner.cancel()  # returns at once; 'cancelled' arrives through onPoll once the worker is dead
            return
        p = self._parameterNode
        with slicer.util.tryWithErrorDisplay("Could not start the segmentation.", waitCursor=True):
            self.savePreferences()
            server = self.backend.server()  # None: this computer
            if not server and not self.ensureDependencies(p.modelId, workerInSlicer=not p.pythonPath):
                return
            study, reference = self.logic.buildStudy(p.inputMode, p.inputSequence, self.phases.rows(),
                                                     p.allowResample)
            options = self.logic.runOptions(p.uncertaintyMap, p.otherLesions)
            self._job = self.logic.start(study, reference, p.modelId, p.device, p.pythonPath, p.includeBreast,
                                         options=options, server=server)
            self.ui.logTextEdit.clear()
            self.ui.progressBar.value = 0
            self.log(f"Case {study.case_id}: {study.n_phases} phases, model {p.modelId}, device {p.device}")
            for warning in self.logic.studyWarnings(study):
                self.log(f"Warning: {warning}")
            self._timer.start()
        self.updateButtons()

    def ensureDependencies(self, modelId, workerInSlicer=True):
        """Install missing packages into Slicer's Python after the user agreed (torch and MONAI only when the
        worker runs in Slicer's Python; psutil, scipy, jsonschema always: Slicer's own process uses them)."""
        missing = dependencies.missing_requirements(self.logic.needsTorch(modelId), workerInSlicer,
                                                    self.logic.modelRequirements(modelId))
        if missing and not slicer.util.confirmOkCancelDisplay(
                "This model needs Python packages that Slicer does not have yet:\n  " + "\n  ".join(missing)
                + "\n\nInstall them now? This can take several minutes.", "Breast DCE Segmentation"):
            return False
        dependencies.install(missing)
        return True

    def onPoll(self):
        job = self._job
        if job is None:
            return self._timer.stop()
        self.ui.elapsedLabel.text = f"Elapsed: {time.monotonic() - job.started:.1f} s"
        for event in job.runner.poll():
            kind = event.get("event")
            if kind == "started":
                self.log(f"Worker {event.get('pid')} started: model {event.get('model')} on {event.get('device')}")
            elif kind == "progress":
                self.ui.progressBar.value = int(100 * float(event.get("fraction", 0.0)))
                self.ui.progressBar.setFormat(f"{event.get('stage', '')} %p%")
            if event.get("message"):
                self.log(f"[{event.get('stage') or event.get('level') or kind}] {event['message']}")
            if kind in ("done", "error"):
                return self.onJobFinished(event)

    def onJobFinished(self, event):
        self._timer.stop()
        job, self._job = self._job, None
        try:
            if event["event"] == "done":
                with slicer.util.tryWithErrorDisplay("Could not load the segmentation result.", waitCursor=True):
                    self._parameterNode.outputSegmentation = segmentation = self.logic.finish(job, event)
                    self.ui.progressBar.value = 100
                    self.log(f"Done in {time.monotonic() - job.started:.1f} s: {segmentation.GetName()}")
                    self.logic.showSubtraction(job.study)  # the contour on the first subtraction image
            elif event.get("kind") == "cancelled":
                self.log("Cancelled.")
            else:
                slicer.util.errorDisplay(f"Segmentation failed ({event.get('kind')}): {event.get('message')}",
                                         detailedText=event.get("detail") or event.get("stderr_tail") or "")
        finally:
            self.logic.cleanup(job, keep=event.get("kind") == "internal")
            self.updateStatistics()
            self.updateButtons()

    def stopJob(self):
        self._timer.stop()
        self.logic.abandon(self._job)  # never waits; the folder goes once the worker is dead
        self._job = None

    def log(self, text):
        self.ui.logTextEdit.appendPlainText(text)

    # ------------------------------------------------------------------ results
    def updateStatistics(self):
        segmentation = self._parameterNode.outputSegmentation if self._parameterNode else None
        rows, stage = [], "-"
        if segmentation is not None:
            try:
                stats = self.logic.statistics(segmentation)
                rows, stage = views.statistics_rows(stats), stats["t_stage"]
            except Exception as exc:
                rows = [("Statistics", f"unavailable: {exc}")]
        self.ui.statisticsTable.setRowCount(len(rows))
        for r, (name, value) in enumerate(rows):
            self.ui.statisticsTable.setItem(r, 0, qt.QTableWidgetItem(name))
            self.ui.statisticsTable.setItem(r, 1, qt.QTableWidgetItem(value))
        self.ui.tStageLabel.text = stage
        self.ui.openSegmentEditorButton.enabled = self.ui.showCurveButton.enabled = segmentation is not None
        self.ui.saveReportButton.enabled = segmentation is not None
        disabled = versions.unavailable_features().get("refinements", "")
        self.ui.refineButtonsWidget.enabled = segmentation is not None and not disabled
        self.ui.refineButtonsWidget.toolTip = disabled
        self.resultsPanel.refresh(segmentation)

    def onRefine(self, operation):
        """One-click refinement of the tumor segment (None: undo the last one)."""
        segmentation = self._parameterNode.outputSegmentation
        with slicer.util.tryWithErrorDisplay("Could not refine the segmentation.", waitCursor=True):
            volume = (self.logic.undoRefinement(segmentation) if operation is None
                      else self.logic.refine(segmentation, operation))
            self.log(f"{operation or 'undo'}: tumor {volume / 1000.0:.2f} mL")
        self.updateStatistics()

    def currentStudy(self):
        p = self._parameterNode
        return self.logic.studyOf(p.outputSegmentation) or self.logic.buildStudy(p.inputMode, p.inputSequence,
                                                                                 self.phases.rows(),
                                                                                 p.allowResample)[0]

    @staticmethod
    def guarded(what, action):
        with slicer.util.tryWithErrorDisplay(f"Could not {what}.", waitCursor=True):
            action()

class BreastDCESegLogic(ScriptedLoadableModuleLogic, SceneLogic):
    """The panel's logic: :class:`BreastDCESegLib.scene_logic.SceneLogic` on Slicer's scene, plus showing
    results in the application's views (slice layers, plots, the Segment Editor)."""

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        SceneLogic.__init__(self, slicer.mrmlScene, temp_root=slicer.app.temporaryPath)

    def getParameterNode(self):
        return BreastDCESegParameterNode(super().getParameterNode())

    def showSubtraction(self, study):
        nodes = self.subtractionVolumes(study)
        views.show_in_slice_views(nodes[0])
        return nodes

    def showEnhancementCurve(self, study, segmentation):
        table, xColumn = self.enhancementCurveTable(study, segmentation)
        return views.show_curve(table, xColumn, "Percent enhancement", study.case_id)

    def openSegmentEditor(self, segmentation):
        """Segment Editor on the tumor segment, with the case's first subtraction (if shown) as source."""
        return views.open_segment_editor(segmentation, self.editorSourceVolume(segmentation))

