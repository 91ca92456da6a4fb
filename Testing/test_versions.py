"""Supported Slicer versions: the statement in README, module and CI agree; a feature missing
from an older Slicer is disabled with a clear message; the dependency check of Slicer's own
process runs whichever interpreter the worker uses."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from slicer_scene import scene, slicer_context  # noqa: F401  (fixtures)

from BreastDCESegLib import mrml, versions
from BreastDCESegLib.errors import MissingDependencyError
from BreastDCESegLib.scene_logic import SceneLogic

slicer = pytest.importorskip("slicer")
ROOT = Path(__file__).resolve().parents[1]


def test_the_slicer_core_under_test_is_the_one_asked_for():
    """scripts/test.sh runs the scene tests a second time on the oldest wheel: make sure it is loaded."""
    import importlib.metadata

    expected = os.environ.get("BREASTDCESEG_EXPECT_SLICER_CORE")
    loaded = importlib.metadata.version("slicer-core")
    assert loaded in versions.TESTED_SLICER_CORE
    if expected:
        assert loaded == expected and Path(slicer.__file__).resolve().is_relative_to(
            Path(os.environ["PYTHONPATH"].split(os.pathsep)[0]).resolve())


def test_supported_versions_stated_alike_in_readme_module_and_ci():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"Slicer {versions.MINIMUM_SLICER} and later" in readme
    assert all(version in readme for version in versions.TESTED_SLICER_CORE)
    module = (ROOT / "BreastDCESeg" / "BreastDCESeg.py").read_text(encoding="utf-8")
    assert "versions.SUPPORTED_TEXT" in module  # in the module's help text
    assert f"slicer-core=={versions.TESTED_SLICER_CORE[1]}" in (ROOT / "requirements-test.txt").read_text()
    script = (ROOT / "scripts" / "test.sh").read_text()
    assert re.search(r'SLICER_CORE_OLDEST:-' + re.escape(versions.TESTED_SLICER_CORE[0]), script)


def _tumor_segmentation(scene):
    image = np.zeros((10, 20, 20), np.float32)
    volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "pre")
    slicer.util.updateVolumeFromArray(volume, image)
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "ai")
    segmentation.CreateDefaultDisplayNodes()
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume)
    mask = np.zeros(image.shape, np.uint8)
    mask[3:7, 5:12, 5:12] = 1
    mask[4, 15:17, 15:17] = 1  # a speck
    mrml.set_segment(segmentation, "Tumor", mask)
    return segmentation


def test_refinements_on_a_slicer_without_segment_editor_logic(scene, tmp_path, monkeypatch):
    logic = SceneLogic(scene, temp_root=str(tmp_path))
    segmentation = _tumor_segmentation(scene)
    assert versions.unavailable_features() == {}
    assert logic.refine(segmentation, "keep_largest") == pytest.approx(4 * 7 * 7, rel=0.01)  # works on this Slicer

    older = _tumor_segmentation(scene)
    monkeypatch.delattr(slicer, "vtkSlicerSegmentEditorLogic")  # as in Slicer 5.8
    reason = versions.unavailable_features()["refinements"]
    assert "Slicer 5.10 or later" in reason and "Islands" in reason
    editors = scene.GetNumberOfNodesByClass("vtkMRMLSegmentEditorNode")
    with pytest.raises(MissingDependencyError, match=r"need Slicer 5\.10 or later"):
        logic.refine(older, "keep_largest")
    assert scene.GetNumberOfNodesByClass("vtkMRMLSegmentEditorNode") == editors  # nothing half-made
    assert int(mrml.segment_array(older, mrml.tumor_segment_id(older)).sum()) == 4 * 7 * 7 + 4  # untouched


def test_dependency_check_covers_slicers_own_process_for_a_foreign_worker(monkeypatch):
    sys.path.insert(0, str(ROOT / "BreastDCESeg"))
    try:
        from BreastDCESegGui import dependencies
    finally:
        sys.path.remove(str(ROOT / "BreastDCESeg"))
    monkeypatch.setattr(dependencies, "_satisfied", lambda text: False)  # a fresh Slicer: nothing installed
    monkeypatch.setattr(dependencies.importlib.util, "find_spec", lambda name: None)
    foreign = dependencies.missing_requirements(needs_torch=True, worker_in_slicer=False)
    assert foreign == list(dependencies.BASE_REQUIREMENTS)  # psutil & co. for Slicer; no torch, no MONAI
    assert any(text.startswith("psutil") for text in foreign)
    own = dependencies.missing_requirements(needs_torch=True)
    assert own[0].startswith("torch") and set(dependencies.NETWORK_REQUIREMENTS) <= set(own)
