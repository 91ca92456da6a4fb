"""One terminology table for scene segments, .seg.nrrd files and DICOM SEG, serialised exactly as Slicer does."""

from __future__ import annotations

import pytest

from BreastDCESegLib import terminology
from BreastDCESegLib.io import segwrite
from BreastDCESegLib.mrml import segments

slicer = pytest.importorskip("slicer")


@pytest.mark.parametrize("name", sorted(terminology.SEGMENT_TYPES))
def test_serialised_like_slicer_and_the_same_everywhere(name):
    spec = terminology.SEGMENT_TYPES[name]
    (cv, cs, cm), (tv, ts, tm), (rv, rs, rm) = spec["category"], spec["type"], spec["region"]
    by_slicer = slicer.vtkSlicerTerminologiesModuleLogic.SerializeTerminologyEntry(
        terminology.TERMINOLOGY_CONTEXT, cv, cs, cm, tv, ts, tm, "", "", "",
        terminology.ANATOMIC_CONTEXT, rv, rs, rm, "", "", "")
    assert terminology.slicer_entry(name) == by_slicer
    assert segments.terminology_entry(name) == by_slicer  # scene segments
    assert segwrite.terminology_entry({"name": name}) == by_slicer  # .seg.nrrd headers
    default = next(s for s in segwrite.SEGMENT_DEFAULTS if s["name"] == name)  # DICOM SEG and .seg.nrrd
    assert (default["label"], default["color"]) == (spec["label"], spec["color"])
    assert segments.SEGMENT_TYPES is terminology.SEGMENT_TYPES
