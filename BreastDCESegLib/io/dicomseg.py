"""DICOM SEG as a per-case output of ``breastdceseg segment`` and ``batch`` (``--dicom-seg``).

A study read from DICOM keeps the files of each phase (``metadata["source_files"]``); the
segmentation is written as a DICOM SEG (:func:`BreastDCESegLib.io.segwrite.write_dicom_seg`,
highdicom) that references the pre-contrast series, committed with the case's other files
through :func:`BreastDCESegLib.outputs.write_case_outputs` (``extra_files``).

Usage::

    extra = dicom_seg_files(study, result, include_breast=False)   # {"<case>.seg.dcm": writer}
    write_case_outputs(study, result, "out", extra_files=extra)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from ..errors import BadInputError

DICOM_SEG_SUFFIX = ".seg.dcm"


def require_dicom_source(study: Any) -> list[str]:
    """The pre-contrast files of a study read from DICOM, else a clear :class:`BadInputError`."""
    files = (study.metadata.get("source_files") or [None])[0] if study.metadata.get("format") == "dicom" else None
    if not files:
        raise BadInputError(f"Case {study.case_id}: --dicom-seg needs a DICOM input (the DICOM SEG references the "
                            "source series); this study was not read from DICOM. Leave out --dicom-seg.")
    return list(files)


def dicom_seg_files(study: Any, result: Any, include_breast: bool = False,
                    case_id: str = "") -> dict[str, Callable[[Path], Any]]:
    """``{"<case>.seg.dcm": writer(path)}`` for ``write_case_outputs(extra_files=...)``: the tumor
    (and breast) labels as a DICOM SEG referencing the study's pre-contrast series."""
    from ..outputs import label_image
    from .segwrite import SEGMENT_DEFAULTS, write_dicom_seg

    files = require_dicom_source(study)
    segments = [s for s in SEGMENT_DEFAULTS if include_breast or s["label"] == 1]

    def write(path: Path) -> Path:
        return write_dicom_seg(path, label_image(result, include_breast), files, segments, overwrite=True)

    return {f"{case_id or study.case_id}{DICOM_SEG_SUFFIX}": write}
