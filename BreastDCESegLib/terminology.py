"""The one terminology table: the segments this extension makes, their label values, colours and
DICOM codes (SNOMED CT), used for scene segments (:mod:`BreastDCESegLib.mrml.segments`),
``.seg.nrrd`` files and DICOM SEG (:mod:`BreastDCESegLib.io.segwrite`).

Codes are (code value, coding scheme, code meaning) triplets from the DICOM master list, the
context Slicer's terminology module ships (``Segmentation category and type - DICOM master list``).

Usage::

    from BreastDCESegLib.terminology import SEGMENT_TYPES, slicer_entry
    SEGMENT_TYPES["Tumor"]["type"]      # ("108369006", "SCT", "Neoplasm")
    slicer_entry("Tumor")               # 'Segmentation category and type - DICOM master list~SCT^49755003^...'
"""

from __future__ import annotations

from typing import Any

TERMINOLOGY_CONTEXT = "Segmentation category and type - DICOM master list"
ANATOMIC_CONTEXT = "Anatomic codes - DICOM master list"
NO_CODE = ("", "", "")
# name -> label value in label maps, RGB colour, category, type and anatomic region codes
SEGMENT_TYPES: dict[str, dict[str, Any]] = {
    "Tumor": {"label": 1, "color": (0.85, 0.2, 0.2),
              "category": ("49755003", "SCT", "Morphologically Altered Structure"),
              "type": ("108369006", "SCT", "Neoplasm"), "region": ("76752008", "SCT", "Breast")},
    "Breast": {"label": 2, "color": (0.98, 0.82, 0.70),
               "category": ("123037004", "SCT", "Anatomical Structure"),
               "type": ("76752008", "SCT", "Breast"), "region": NO_CODE},
}


def _code(triplet: tuple[str, str, str]) -> str:
    value, scheme, meaning = triplet
    return f"{scheme}^{value}^{meaning}"


def slicer_entry(segment_name: str) -> str:
    """The segment's terminology serialised as Slicer stores it in scenes and ``.seg.nrrd`` files
    (the format of ``vtkSlicerTerminologiesModuleLogic.SerializeTerminologyEntry``)."""
    spec = SEGMENT_TYPES[segment_name]
    return "~".join([TERMINOLOGY_CONTEXT, _code(spec["category"]), _code(spec["type"]), _code(NO_CODE),
                     ANATOMIC_CONTEXT, _code(spec.get("region", NO_CODE)), _code(NO_CODE)])
