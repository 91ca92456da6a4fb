"""One phase-name rule and one time-unit table for file names, DICOM series descriptions,
Slicer node names and sequence index units."""

from __future__ import annotations

import pytest

from BreastDCESegLib import mrml, phase_labels
from BreastDCESegLib.io import dicomtime, files, sequence

NAMES = {  # name -> phase index by the one rule (None: not a phase, or the name does not say)
    "pre": 0, "Pre-contrast": 0, "precontrast": 0, "Ax PRE": 0, "native": 0, "T1 nativ": 0,
    "post 3": 3, "POST_2": 2, "case1 post1": 1, "Ax DCE post 2 of 5": 2,
    "PHASE_2": 2, "phase 3": 3, "ph2/5": 2, "dyn t3": 3, "case_0001": 1, "dyn-2": 2,
    "T1 sub1": None, "case sub": None, "MIP": None, "subtraction 2": None,
    "t1 fl3d": None, "Ax 3D dyn": None, "prediction": None,
}


@pytest.mark.parametrize("name,rank", NAMES.items())
def test_one_rule_for_descriptions_node_names_and_file_names(name, rank):
    assert phase_labels.phase_rank(name) == rank
    assert dicomtime.description_rank(name) == rank
    assert mrml.phase_rank_from_name(name) == rank
    if "/" not in name:
        assert files.phase_rank(name + ".nii.gz") == rank  # the same for a file of that name


def test_file_names_also_take_a_bare_trailing_number():
    assert files.phase_rank("dyn3.nrrd") == 3 and files.phase_rank("duke_001_0000.nii.gz") == 0
    assert phase_labels.phase_rank("dyn3") is None  # a node or series called "dyn3" does not say


def test_one_time_unit_table():
    assert phase_labels.seconds_per_unit(" MS ") == pytest.approx(1e-3)
    assert phase_labels.seconds_per_unit("min") == 60.0 and phase_labels.seconds_per_unit("hours") is None
    assert not hasattr(sequence, "_UNIT_SECONDS") and not hasattr(mrml.phases, "_TIME_UNITS")


def test_no_import_circle_between_files_and_sequence():
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(files))
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert "sequence" not in imported  # sequence builds on files, never the other way
