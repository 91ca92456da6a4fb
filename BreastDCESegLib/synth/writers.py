"""Writers: phantoms to the MAMA-MIA layout and to DICOM MR images."""

from __future__ import annotations

from pathlib import Path

from .config import Phantom


def write_mama_mia(phantoms: list[Phantom], root: str | Path, overwrite: bool = False) -> list[str]:
    """Write phantoms in the MAMA-MIA layout (images, expert segmentations, timings.json)."""
    from ..io import mamamia

    cases = []
    for ph in phantoms:
        mamamia.write_case(root, ph.study.case_id, ph.study, ph.tumor, overwrite=overwrite)
        cases.append(ph.study.case_id)
    return cases


def write_dicom(phantom: Phantom, folder: str | Path, layout: str = "series-per-phase", overwrite: bool = False) -> Path:
    """Write a phantom study as DICOM MR images (see :func:`io.dicom.write_dicom_study`)."""
    from ..io.dicom import write_dicom_study

    meta = phantom.study.metadata
    return write_dicom_study(phantom.study, folder, layout=layout, patient_id=phantom.study.case_id.upper(),
                             manufacturer=str(meta.get("manufacturer", "BreastDCESeg phantom")),
                             field_strength=float(meta.get("field_strength", 1.5)), overwrite=overwrite)
