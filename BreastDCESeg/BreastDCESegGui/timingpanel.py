"""The timing study's Qt wiring: the panel's Start/Stop and summary buttons, and a small "Breast DCE
timing" toolbar (Start/Stop, shortcut Ctrl+Shift+T, the running case and its active minutes) so
the reader starts and stops a case without leaving the Segment Editor.

The timing itself (activity, the idle rule, writing a case before clearing it, stopping on scene
close) is :class:`BreastDCESegLib.timing_logic.TimingLogic`; this file only connects widgets.

Usage (the module widget)::

    self.timingPanel = TimingPanel(self)      # after self.ui and self.logic exist
    self.timingPanel.refresh()
"""

import os

import qt
import slicer

SHORTCUT = "Ctrl+Shift+T"
TOOLBAR_NAME = "BreastDCESegTimingToolBar"


class TimingPanel:
    def __init__(self, widget):
        self.widget = widget
        ui = widget.ui
        ui.timingManualRadioButton.toggled.connect(self.onModeChanged)
        ui.timingStartButton.clicked.connect(self.startStop)
        ui.timingSummaryButton.clicked.connect(self.showSummary)
        self.action, self.label = self._toolbar()
        self._ticker = qt.QTimer()
        self._ticker.setInterval(1000)
        self._ticker.timeout.connect(self.refresh)

    def _toolbar(self):
        """The main window's timing toolbar (made once per application), its action and label."""
        window = slicer.util.mainWindow()
        if window is None:  # no main window (--no-main-window): the panel buttons only
            return None, None
        bar = window.findChild(qt.QToolBar, TOOLBAR_NAME)
        if bar is None:
            bar = qt.QToolBar("Breast DCE timing")
            bar.setObjectName(TOOLBAR_NAME)
            window.addToolBar(bar)
        bar.clear()
        action = bar.addAction("Start timing")
        action.setShortcut(qt.QKeySequence(SHORTCUT))
        action.setShortcutContext(qt.Qt.ApplicationShortcut)
        action.setToolTip(f"Start or stop timing the case ({SHORTCUT}), from any module")
        action.triggered.connect(self.startStop)
        label = qt.QLabel("")
        bar.addWidget(label)
        return action, label

    def logFolder(self):
        p = self.widget._parameterNode
        return (p.timingLogFolder if p is not None else "") or os.path.join(slicer.app.defaultScenePath,
                                                                             "BreastDCESeg-timing")

    def onModeChanged(self, *_):
        if self.widget._parameterNode is not None:
            self.widget._parameterNode.timingMode = "manual" if self.widget.ui.timingManualRadioButton.checked else "ai_refine"

    def startStop(self):
        w, logic, p = self.widget, self.widget.logic, self.widget._parameterNode
        with slicer.util.tryWithErrorDisplay("Timing failed.", waitCursor=True):
            if logic.timingState is None:
                w.savePreferences()
                study = w.currentStudy() if p.timingMode == "manual" else None
                state = logic.startTiming(p.timingMode, p.outputSegmentation, study, p.readerName,
                                          idleThreshold=p.timingIdleSeconds, logFolder=self.logFolder())
                w.ui.timingStatusLabel.text = (f"Timing {state.session.case_id} ({p.timingMode}): read and edit in the "
                                               f"Segment Editor, then Stop timing (toolbar or {SHORTCUT}).")
                logic.openSegmentEditor(state.segmentation)
                self._ticker.start()
            else:
                record, summary = logic.stopTiming(referenceSegmentation=p.referenceSegmentation,
                                                   logFolder=self.logFolder())
                w.ui.timingStatusLabel.text = (f"{record.case_id}: {record.active_seconds:.0f} s active of "
                                               f"{record.wall_seconds:.0f} s, {record.edits} edits; logged.")
                w.log(summary)
        self.refresh()

    def refresh(self):
        state = self.widget.logic.timingState
        text = "Stop timing" if state is not None else "Start timing"
        self.widget.ui.timingStartButton.text = text
        if self.action is not None:
            self.action.setText(text)
            self.label.setText("" if state is None else
                               f" {state.session.case_id}: {state.session.active_seconds / 60.0:.1f} min active")
        if state is None:
            self._ticker.stop()

    def onSceneClosed(self):
        """After a scene close the logic has stopped and written the running case."""
        record, self.widget.logic.timingClosedRecord = self.widget.logic.timingClosedRecord, None
        if record is not None:
            self.widget.ui.timingStatusLabel.text = f"{record.case_id}: stopped by closing the scene; logged."
        self.refresh()

    def showSummary(self):
        with slicer.util.tryWithErrorDisplay("Could not make the session summary.", waitCursor=True):
            summary, table, chart, png = self.widget.logic.timingSummary(self.logFolder())
            slicer.modules.plots.logic().ShowChartInLayout(chart)
            from BreastDCESegLib.timing_summary import format_summary
            self.widget.log(format_summary(summary) + f"\nplot: {png}; table: {table.GetName()}")
