"""``BreastDCESegTest``: the module's self-test inside Slicer (Reload and Test, and CTest through
``slicer_add_python_unittest`` in BreastDCESeg/CMakeLists.txt).

It runs :func:`BreastDCESegLib.selftest_flow.run_phantom_flow` (the same flow pytest runs on a
``slicer-core`` scene) on Slicer's scene with the application's pieces plugged in: the Segment
Editor is really opened on the result and the GUI processes events while the worker runs.
The module file imports the class, so Slicer finds it as ``BreastDCESeg.BreastDCESegTest``.
"""

import os
import tempfile

import slicer
from slicer.ScriptedLoadableModule import ScriptedLoadableModuleTest


class BreastDCESegTest(ScriptedLoadableModuleTest):
    """Load, run kinetic, open the editor, one refinement, timing start/stop, export DICOM SEG."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_whole_flow_on_a_phantom()

    def test_whole_flow_on_a_phantom(self):
        from BreastDCESegGui import views
        from BreastDCESegLib.selftest_flow import run_phantom_flow

        logic = slicer.util.getModuleLogic("BreastDCESeg")
        workdir = tempfile.mkdtemp(prefix="BreastDCESegTest-", dir=slicer.app.temporaryPath)
        self.delayDisplay("Phantom DICOM study -> kinetic model in the worker -> editor -> timing -> DICOM SEG")
        try:
            outcome = run_phantom_flow(logic, workdir, open_editor=lambda seg: views.open_segment_editor(
                seg, logic.editorSourceVolume(seg)), idle=slicer.app.processEvents)
        finally:
            getattr(logic, "closeWorker", lambda: None)()
        self.delayDisplay(f"Dice vs phantom truth {outcome.dice:.3f}; {outcome.timing.edits} edit(s) timed; "
                          f"DICOM SEG {os.path.basename(str(outcome.dicom_seg))}")
        self.assertEqual(outcome.steps, ["load", "run kinetic", "threshold", "editor", "refine", "timing", "export"])
        self.assertGreater(outcome.dice, 0.6)
        self.assertIn(outcome.t_stage, ("T1", "T2"))
        self.assertEqual(outcome.timing.edits, 1)
        self.assertGreaterEqual(outcome.timing.wall_seconds, outcome.timing.active_seconds)
        self.assertEqual(outcome.referenced_series, outcome.source_series)
        self.assertGreaterEqual(outcome.lesion_rows, 1)
        editor = slicer.modules.segmenteditor.widgetRepresentation().self().editor
        self.assertEqual(editor.segmentationNode(), outcome.segmentation)
