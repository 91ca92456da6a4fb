"""The Results panel's *Save report* button: asks for a folder and writes the selected
segmentation's case report there (:func:`BreastDCESegLib.report.save_scene_report`: the
application's own slice and 3-D views, lesion table, enhancement curve, model, timings),
then opens it in the browser.

Usage (the module widget)::

    ui.saveReportButton.clicked.connect(lambda: self.guarded("save the case report", lambda: save_report(self)))
"""

import qt
import slicer


def save_report(widget):
    """Ask for a folder, confirm replacing an existing report of the case, write and open the report."""
    from BreastDCESegLib.report import report_paths, save_scene_report

    segmentation = widget._parameterNode.outputSegmentation if widget._parameterNode else None
    folder = qt.QFileDialog.getExistingDirectory(widget.parent, "Folder for the case report")
    if not folder:
        return None
    study = widget.logic.studyOf(segmentation)
    existing = study is not None and any(p.exists() for p in report_paths(folder, study.case_id).values())
    if existing and not slicer.util.confirmOkCancelDisplay(f"Replace the report of {study.case_id} in {folder}?"):
        return None
    paths = save_scene_report(widget.logic, segmentation, folder, overwrite=True)
    widget.log(f"Report saved: {paths['html']}")
    qt.QDesktopServices.openUrl(qt.QUrl.fromLocalFile(str(paths["html"])))
    return paths
