"""The public MAMA-MIA layout (and nnU-Net-style flat folders of the same naming).

::

    <root>/images/<case>/<case>_0000.nii.gz      pre-contrast
    <root>/images/<case>/<case>_0001.nii.gz ...  post-contrast phases
    <root>/segmentations/expert/<case>.nii.gz    expert tumor segmentation (optional)
    <root>/timings.json                          {"<case>": [t0, t1, ...], ...} (optional, seconds)
    <root>/clinical_and_imaging_info.xlsx        the public release's clinical table (optional; or .csv)
    <root>/patient_info_files/<case>.json        the release's per-case information (optional)
    <root>/train_test_splits.csv                 the release's split: columns train_split, test_split (optional)

Phase times (seconds, the pre-contrast phase at 0) come from, in this order: the caller, ``timings.json``,
the ``acquisition_times`` column of the release's clinical table (sheet ``dataset_info``, one row per
``patient_id``, a list such as ``[0, 97, 194, 291]``; the release keeps the times nowhere else). A study
without times is read with assumed ones (:func:`..kinetics.reading_times`), which costs a fast protocol's
cancers. The release's tables are read by :mod:`.mamamia_tables` (its names are also this module's):
:func:`read_clinical_times` is what the release's table gives, :func:`case_attributes` gives a
case's acquisition and clinical attributes (``dataset``, ``site``, ``manufacturer``, ``field_strength``,
``view``, ``fat_suppressed``...) by which ``breastdceseg evaluate --by`` groups the scores;
:func:`select_cases` the cases of one split of :data:`SPLITS_FILE` and of some datasets (a
leave-one-dataset-out study: ``breastdceseg train --hold-out-dataset DUKE``, then ``segment`` and
``evaluate`` with ``--split test --dataset DUKE``).

Usage::

    from BreastDCESegLib.io import mamamia
    for case in mamamia.list_cases(root):
        study, truth = mamamia.read_case(root, case)   # study.metadata["times_source"]: where its times came from
    mamamia.write_case(root, "phantom_001", study, truth)
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import SimpleITK as sitk

from ..errors import BadInputError, MissingDependencyError
from ..study import DCEStudy, resample_to, same_grid
from .atomic import atomic_path
from .files import extension, read_image, read_phase_files, write_image, write_study_phases
from .mamamia_tables import (CLINICAL_SHEET, CLINICAL_TABLES, PATIENT_INFO_DIR, SPLITS, SPLITS_FILE,  # noqa: F401
                             case_attributes, clinical_table, id_dataset, read_clinical_table,
                             read_clinical_times, read_patient_info, read_splits, select_cases)

TIMINGS_FILE = "timings.json"
log = logging.getLogger(__name__)
_PHASE_NAME = re.compile(r"^(?P<case>.+)_(?P<k>\d{4})$")


def _phase_files(root: Path, case_id: str) -> list[Path]:
    folder = root / "images" / case_id
    candidates = sorted(folder.iterdir()) if folder.is_dir() else sorted((root / "images").glob(f"{case_id}_*"))
    found = {}
    for p in candidates:
        ext = extension(p)
        m = _PHASE_NAME.match(p.name[: -len(ext)]) if ext else None
        if m and m.group("case").lower() == case_id.lower():  # folder and file case may differ (DUKE_001/duke_001_0000)
            found[int(m.group("k"))] = p
    return [found[k] for k in sorted(found)]


def list_cases(root: str | Path) -> list[str]:
    """Case ids under ``<root>/images`` (sub-folders, or flat ``<case>_000k`` files), sorted."""
    images = Path(root) / "images"
    if not images.is_dir():
        raise BadInputError(f"{root} is not a MAMA-MIA folder: it has no 'images' sub-folder.")
    cases = set()
    for p in images.iterdir():
        if p.name.startswith("."):
            continue
        if p.is_dir() and _phase_files(Path(root), p.name):
            cases.add(p.name)
        elif p.is_file() and extension(p):
            m = _PHASE_NAME.match(p.name[: -len(extension(p))])
            if m:
                cases.add(m.group("case"))
    return sorted(cases)


def read_timings(root: str | Path) -> dict[str, list[float]]:
    """``<root>/timings.json`` as {case: [seconds...]}, or {} when absent."""
    path = Path(root) / TIMINGS_FILE
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise BadInputError(f"{path} is not valid JSON ({exc}); fix or remove it.") from exc
    if not isinstance(data, dict):
        raise BadInputError(f"{path} must map case ids to lists of times in seconds.")
    return {str(k): [float(t) for t in v] for k, v in data.items() if isinstance(v, list)}


def case_times(root: str | Path, case_id: str, n_phases: int) -> tuple[Optional[list[float]], Optional[str], str]:
    """(times, where they came from, a warning or "") for one case: ``timings.json``, else the clinical table
    (an .xlsx without openpyxl: no times, and the warning says how to read them).

    Raises:
        BadInputError: ``timings.json`` or the table is invalid, or the entry of ``timings.json`` does not
            have ``n_phases`` times.
    """
    root = Path(root)
    stored = read_timings(root).get(case_id)
    if stored is not None:
        if len(stored) != n_phases:
            raise BadInputError(f"{root / TIMINGS_FILE}: case '{case_id}' has {len(stored)} times but "
                                f"{n_phases} phase files.")
        return stored, TIMINGS_FILE, ""
    try:
        table = read_clinical_times(root).get(case_id.upper())
    except MissingDependencyError as exc:
        return None, None, f"No phase times read: {exc}"
    if table is None:
        return None, None, ""
    name = clinical_table(root).name
    if len(table) != n_phases:
        return None, None, (f"{name} gives {len(table)} acquisition times for '{case_id}' but the case has "
                            f"{n_phases} phase files: the times were not used.")
    if any(b <= a for a, b in zip(table, table[1:])):
        return None, None, (f"{name} gives acquisition times for '{case_id}' that do not increase ({table}): "
                            "the times were not used.")
    return table, name, ""


def truth_path(root: str | Path, case_id: str) -> Optional[Path]:
    folder = Path(root) / "segmentations" / "expert"
    for name in dict.fromkeys((case_id, case_id.lower(), case_id.upper())):
        for ext in (".nii.gz", ".nii", ".nrrd", ".mha"):
            if (folder / f"{name}{ext}").exists():
                return folder / f"{name}{ext}"
    return None


def read_case(root: str | Path, case_id: str, times: Optional[Sequence[Optional[float]]] = None
              ) -> tuple[DCEStudy, Optional[sitk.Image]]:
    """(study, expert segmentation as uint8 0/1 on the study grid or None).

    Raises:
        BadInputError: unknown case, fewer than two phases, unreadable files, a timing entry
            whose length does not match the phases.
    """
    root = Path(root)
    paths = _phase_files(root, case_id)
    if not paths:
        raise BadInputError(f"MAMA-MIA case '{case_id}' not found under {root / 'images'} "
                            f"(expected {case_id}/{case_id}_0000.nii.gz ...).")
    source, warning = "given", ""
    if times is None:
        times, source, warning = case_times(root, case_id, len(paths))
    study = read_phase_files(paths, times=times, case_id=case_id)
    study.metadata["format"] = "mama-mia"
    study.metadata["mamamia_root"] = str(root)  # its patient information (breast_box.of_study) lies there
    stored_in_files = all(t is not None for t in study.times)
    study.metadata["times_source"] = source if times is not None else ("phase files" if stored_in_files else None)
    if warning:
        study.metadata["warnings"] = list(study.metadata.get("warnings") or []) + [warning]
    tpath = truth_path(root, case_id)
    if tpath is None:
        return study, None
    truth = read_image(tpath)
    if truth.GetDimension() != 3:
        raise BadInputError(f"{tpath} is {truth.GetDimension()}-D; a segmentation must be 3-D.")
    truth = sitk.Cast(sitk.Cast(truth, sitk.sitkFloat32) > 0.5, sitk.sitkUInt8)
    if not same_grid(truth, study.reference):
        truth = resample_to(truth, study.reference, sitk.sitkNearestNeighbor)
    else:
        truth.CopyInformation(study.reference)
    study.metadata["truth_file"] = str(tpath)
    return study, truth


def write_case(root: str | Path, case_id: str, study: DCEStudy, truth: Optional[sitk.Image] = None,
               overwrite: bool = False) -> list[Path]:
    """Write one case in the MAMA-MIA layout; known times go to ``<root>/timings.json``."""
    root = Path(root)
    paths = write_study_phases(study, root / "images" / case_id, ext=".nii.gz", overwrite=overwrite,
                               case_id=case_id)
    if truth is not None:
        mask = sitk.Cast(truth, sitk.sitkUInt8)
        paths.append(write_image(mask, root / "segmentations" / "expert" / f"{case_id}.nii.gz", overwrite=overwrite))
    if all(t is not None for t in study.times):
        timings = read_timings(root)
        timings[case_id] = [float(t) for t in study.times]
        with atomic_path(root / TIMINGS_FILE, overwrite=True) as tmp:
            tmp.write_text(json.dumps(timings, indent=1, sort_keys=True), encoding="utf-8")
    return paths


def truth_array(truth: sitk.Image) -> np.ndarray:
    """A truth image as a (z, y, x) bool array."""
    return sitk.GetArrayFromImage(truth).astype(bool)
