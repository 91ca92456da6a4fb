"""The public MAMA-MIA layout (and nnU-Net-style flat folders of the same naming).

::

    <root>/images/<case>/<case>_0000.nii.gz      pre-contrast
    <root>/images/<case>/<case>_0001.nii.gz ...  post-contrast phases
    <root>/segmentations/expert/<case>.nii.gz    expert tumor segmentation (optional)
    <root>/timings.json                          {"<case>": [t0, t1, ...], ...} (optional, seconds)

Usage::

    from BreastDCESegLib.io import mamamia
    for case in mamamia.list_cases(root):
        study, truth = mamamia.read_case(root, case)
    mamamia.write_case(root, "phantom_001", study, truth)
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import SimpleITK as sitk

from ..errors import BadInputError
from ..study import DCEStudy, resample_to, same_grid
from .atomic import atomic_path
from .files import extension, read_image, read_phase_files, write_image, write_study_phases

TIMINGS_FILE = "timings.json"
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
    if times is None:
        stored = read_timings(root).get(case_id)
        if stored is not None and len(stored) != len(paths):
            raise BadInputError(f"{root / TIMINGS_FILE}: case '{case_id}' has {len(stored)} times but "
                                f"{len(paths)} phase files.")
        times = stored
    study = read_phase_files(paths, times=times, case_id=case_id)
    study.metadata["format"] = "mama-mia"
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
