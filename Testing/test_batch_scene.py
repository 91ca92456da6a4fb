"""Batch inside Slicer: each case goes into the scene once written, and only the last N stay,
so a cohort does not pile up in memory (checked on a slicer-core scene)."""

from __future__ import annotations

import numpy as np
import pytest

from slicer_scene import scene, slicer_context  # noqa: F401  (fixtures)

from BreastDCESegLib import mrml, synth
from BreastDCESegLib.batch_scene import add_to_scene, batch_cases
from BreastDCESegLib.results import SegmentationResult

pytest.importorskip("slicer")


@pytest.fixture(scope="module")
def case():
    phantom = synth.make_phantom(seed=41, size=(24, 24, 8), n_post=2, p_no_lesion=0.0, p_unknown_times=0.0)
    result = SegmentationResult(tumor=phantom.study.image_like(phantom.tumor_array(), np.uint8), model_id="kinetic")
    return phantom.study, result


def _class_counts(scene) -> dict:
    counts: dict = {}
    for i in range(scene.GetNumberOfNodes()):
        name = scene.GetNthNode(i).GetClassName()
        counts[name] = counts.get(name, 0) + 1
    return counts


def test_only_the_last_case_stays_and_memory_does_not_pile_up(scene, case):
    study, result = case
    empty = scene.GetNumberOfNodes()
    add_to_scene(scene, study, result, "case0", keep=1)
    one_case = _class_counts(scene)
    per_case = scene.GetNumberOfNodes() - empty
    assert per_case >= study.n_phases + 1  # phase volumes, sequence, browser, segmentation, display/storage
    for i in range(1, 4):
        segmentation = add_to_scene(scene, study, result, f"case{i}", keep=1)
    assert batch_cases(scene) == ["case3"]
    assert scene.GetNumberOfNodes() == empty + per_case and _class_counts(scene) == one_case  # not 4 cases
    assert segmentation.GetAttribute(mrml.ATTR + "Case") == "case3"
    assert int(mrml.segment_array(segmentation, mrml.tumor_segment_id(segmentation)).sum()) == \
        int(np.count_nonzero(result.tumor_array()))


def test_keep_two_or_none(scene, case):
    study, result = case
    empty = scene.GetNumberOfNodes()
    for i in range(3):
        add_to_scene(scene, study, result, f"c{i}", keep=2)
    assert batch_cases(scene) == ["c1", "c2"]
    assert scene.GetNumberOfNodesByClass("vtkMRMLSegmentationNode") == 2
    assert add_to_scene(scene, study, result, "c3", keep=0) is None
    assert batch_cases(scene) == [] and scene.GetNumberOfNodes() == empty



def test_batch_option():
    from BreastDCESegLib import batch

    parse = batch.build_parser().parse_args
    assert parse(["--input", "in", "--output", "out", "--keep-in-scene", "3"]).keep_in_scene == 3
    assert parse(["--input", "in", "--output", "out"]).keep_in_scene == 1
