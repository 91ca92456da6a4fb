"""The inside-Slicer self-test, checked without Slicer (it can only run inside Slicer).

``BreastDCESegTest`` (BreastDCESegGui/selftest.py) is what ``slicer_add_python_unittest`` in
BreastDCESeg/CMakeLists.txt runs: the module file must expose it under the module's name, it
must call the Lib's :func:`~BreastDCESegLib.selftest_flow.run_phantom_flow` (tested on a
slicer-core scene in test_selftest_flow.py) with keywords the function has, read only fields
the outcome has, and expect the steps the flow performs: load, run kinetic, editor, refinement,
timing, export.
"""

import ast
import dataclasses
import inspect
import re
from pathlib import Path

from BreastDCESegLib import selftest_flow

ROOT = Path(__file__).resolve().parents[1]
MODULE_FILE = ROOT / "BreastDCESeg" / "BreastDCESeg.py"
SELFTEST_FILE = ROOT / "BreastDCESeg" / "BreastDCESegGui" / "selftest.py"
CMAKE = ROOT / "BreastDCESeg" / "CMakeLists.txt"


def _tree(path):
    return ast.parse(path.read_text(encoding="utf-8"))


def _test_class():
    classes = [c for c in _tree(SELFTEST_FILE).body if isinstance(c, ast.ClassDef) and c.name == "BreastDCESegTest"]
    assert len(classes) == 1
    return classes[0]


def test_module_exposes_the_self_test_and_ctest_runs_the_module():
    imports = [n for n in _tree(MODULE_FILE).body if isinstance(n, ast.ImportFrom)]
    assert any(n.module == "BreastDCESegGui.selftest" and [a.name for a in n.names] == ["BreastDCESegTest"]
               for n in imports), "BreastDCESeg.py must import BreastDCESegTest (Slicer looks it up there)"
    cmake = CMAKE.read_text(encoding="utf-8")
    assert re.search(r"if\(BUILD_TESTING\)\s*(#[^\n]*\n\s*)*slicer_add_python_unittest\(SCRIPT \$\{MODULE_NAME\}\.py\)",
                     cmake), "slicer_add_python_unittest(SCRIPT ${MODULE_NAME}.py) inside if(BUILD_TESTING)"
    assert "BreastDCESegGui/selftest.py" in cmake and "BreastDCESegLib/selftest_flow.py" in cmake


def test_self_test_runs_the_tested_flow_with_existing_names():
    cls = _test_class()
    assert [ast.unparse(b) for b in cls.bases] == ["ScriptedLoadableModuleTest"]
    methods = {f.name: f for f in cls.body if isinstance(f, ast.FunctionDef)}
    run_calls = [ast.unparse(c.func) for c in ast.walk(methods["runTest"]) if isinstance(c, ast.Call)]
    assert "self.setUp" in run_calls and "self.test_whole_flow_on_a_phantom" in run_calls
    body = methods["test_whole_flow_on_a_phantom"]
    calls = [c for c in ast.walk(body) if isinstance(c, ast.Call) and ast.unparse(c.func) == "run_phantom_flow"]
    assert len(calls) == 1
    parameters = inspect.signature(selftest_flow.run_phantom_flow).parameters
    keywords = {k.arg for k in calls[0].keywords}
    assert keywords == {"open_editor", "idle"} and keywords <= set(parameters)
    # every outcome field the self-test reads exists
    fields = {f.name for f in dataclasses.fields(selftest_flow.FlowOutcome)}
    read = {n.attr for n in ast.walk(body) if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
            and n.value.id == "outcome"}
    assert read and read <= fields, read - fields
    # the steps the self-test expects are the ones the flow reports (checked in test_selftest_flow.py)
    expected = next(ast.literal_eval(c.args[1]) for c in ast.walk(body) if isinstance(c, ast.Call)
                    and ast.unparse(c.func) == "self.assertEqual" and ast.unparse(c.args[0]) == "outcome.steps")
    assert expected == ["load", "run kinetic", "threshold", "editor", "refine", "timing", "export"]
    source = inspect.getsource(selftest_flow.run_phantom_flow)
    for step in expected:
        assert f'"{step}"' in source, step
