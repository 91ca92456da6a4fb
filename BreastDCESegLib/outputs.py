"""Per-case result files: label NIfTI, Slicer ``.seg.nrrd`` and a JSON report.

The command line (``breastdceseg segment``) and the headless batch write the same three
files per case, all-or-nothing::

    <out>/<case>.nii.gz     uint8 label (1 tumor, 2 breast when requested)
    <out>/<case>.seg.nrrd   Slicer segmentation with named, coloured segments
    <out>/<case>.json       model, device, seconds, volume, diameter, T-stage, phase times

Usage::

    paths = write_case_outputs(study, result, "out", overwrite=False)
    report = case_report(study, result)
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any, Optional

import numpy as np
import SimpleITK as sitk

from .errors import OutputExistsError
from .results import SegmentationResult
from .study import DCEStudy

OUTPUT_SUFFIXES = (".nii.gz", ".seg.nrrd", ".json")


def output_paths(out_dir: str | Path, case_id: str) -> dict[str, Path]:
    """The three output paths of one case."""
    out_dir = Path(out_dir)
    return {
        "label": out_dir / f"{case_id}.nii.gz",
        "segmentation": out_dir / f"{case_id}.seg.nrrd",
        "report": out_dir / f"{case_id}.json",
    }


def existing_outputs(out_dir: str | Path, case_id: str) -> list[Path]:
    """Outputs of ``case_id`` that already exist in ``out_dir``."""
    return [p for p in output_paths(out_dir, case_id).values() if p.exists()]


def label_image(result: SegmentationResult, include_breast: bool = False) -> sitk.Image:
    """Tumor (1) and optionally breast (2, where not tumor) as one uint8 label image."""
    label = result.tumor_array().astype(np.uint8).copy()
    label[label > 0] = 1
    if include_breast and result.breast is not None:
        breast = result.breast_array() > 0
        label[breast & (label == 0)] = 2
    image = sitk.GetImageFromArray(label)
    image.CopyInformation(result.tumor)
    return image


def case_report(study: DCEStudy, result: SegmentationResult) -> dict[str, Any]:
    """JSON-ready summary: provenance, per-phase times and the clinical measures of the tumor."""
    from . import clinical

    report: dict[str, Any] = {
        "case_id": study.case_id,
        "model": result.model_id,
        "device": result.device,
        "seconds": {k: round(float(v), 3) for k, v in result.seconds.items()},
        "warnings": list(result.warnings),
        "study": study.summary(),
        "phase_times_s": list(study.times),
        "tumor": clinical.summarize(result.tumor, study),
    }
    if result.breast is not None:
        report["breast_volume_ml"] = round(clinical.volume_ml(result.breast_array() > 0, study.spacing), 3)
    if study.metadata.get("synthetic"):
        report["note"] = "synthetic phantom study"
    return report


def write_case_outputs(study: DCEStudy, result: SegmentationResult, out_dir: str | Path,
                       case_id: Optional[str] = None, overwrite: bool = False,
                       include_breast: bool = False, extra_report: Optional[dict[str, Any]] = None
                       ) -> dict[str, Path]:
    """Write label NIfTI, ``.seg.nrrd`` and JSON report of one case, all or nothing.

    Raises:
        OutputExistsError: an output exists and ``overwrite`` is False (nothing is written).
    """
    from .io.atomic import atomic_path
    from .io.segwrite import SEGMENT_DEFAULTS, write_seg_nrrd

    case_id = case_id or study.case_id
    paths = output_paths(out_dir, case_id)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    if not overwrite:
        exists = [str(p) for p in paths.values() if p.exists()]
        if exists:
            raise OutputExistsError(
                f"Outputs for case '{case_id}' already exist: {', '.join(exists)}. "
                "Choose another output folder or pass --overwrite.")
    label = label_image(result, include_breast)
    segments = [s for s in SEGMENT_DEFAULTS if include_breast or s["label"] == 1]
    report = case_report(study, result)
    report.update(extra_report or {})
    report["outputs"] = {k: p.name for k, p in paths.items()}
    with contextlib.ExitStack() as stack:
        tmp_label = stack.enter_context(atomic_path(paths["label"], overwrite=overwrite))
        tmp_seg = stack.enter_context(atomic_path(paths["segmentation"], overwrite=overwrite))
        tmp_json = stack.enter_context(atomic_path(paths["report"], overwrite=overwrite))
        sitk.WriteImage(label, str(tmp_label), useCompression=True)
        write_seg_nrrd(tmp_seg, label, segments, overwrite=True)
        Path(tmp_json).write_text(json.dumps(report, indent=2, default=_json_default))
    return paths


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")
