"""The public MAMA-MIA layout (and nnU-Net-style flat folders of the same naming).

::

    <root>/images/<case>/<case>_0000.nii.gz      pre-contrast
    <root>/images/<case>/<case>_0001.nii.gz ...  post-contrast phases
    <root>/segmentations/expert/<case>.nii.gz    expert tumor segmentation (optional)
    <root>/timings.json                          {"<case>": [t0, t1, ...], ...} (optional, seconds)
    <root>/clinical_and_imaging_info.xlsx        the public release's clinical table (optional; or .csv)
    <root>/patient_info_files/<case>.json        the release's per-case information (optional)

Phase times (seconds, the pre-contrast phase at 0) come from, in this order: the caller, ``timings.json``,
the ``acquisition_times`` column of the release's clinical table (sheet ``dataset_info``, one row per
``patient_id``, a list such as ``[0, 97, 194, 291]``; the release keeps the times nowhere else). A study
without times is read with assumed ones (:func:`..kinetics.reading_times`), which costs a fast protocol's
cancers; :func:`read_clinical_times` is what the release's table gives. :func:`case_attributes` gives a
case's acquisition and clinical attributes (``dataset``, ``site``, ``manufacturer``, ``field_strength``,
``view``, ``fat_suppressed``...) by which ``breastdceseg evaluate --by`` groups the scores.

Usage::

    from BreastDCESegLib.io import mamamia
    for case in mamamia.list_cases(root):
        study, truth = mamamia.read_case(root, case)   # study.metadata["times_source"]: where its times came from
    mamamia.write_case(root, "phantom_001", study, truth)
"""

from __future__ import annotations

import ast
import csv
import functools
import json
import logging
import math
import re
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import SimpleITK as sitk

from ..errors import BadInputError, MissingDependencyError
from ..study import DCEStudy, resample_to, same_grid
from .atomic import atomic_path
from .files import extension, read_image, read_phase_files, write_image, write_study_phases

TIMINGS_FILE = "timings.json"
PATIENT_INFO_DIR = "patient_info_files"
CLINICAL_TABLES = ("clinical_and_imaging_info.xlsx", "clinical_and_imaging_info.csv")  # the release's, or a CSV of it
CLINICAL_SHEET = "dataset_info"
log = logging.getLogger(__name__)
_PHASE_NAME = re.compile(r"^(?P<case>.+)_(?P<k>\d{4})$")
_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


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


def _parse_times(value: object) -> Optional[list[float]]:
    """A table cell of acquisition times (``"[0, 97, 194]"``, or a list) as floats; None when empty or unreadable."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    try:
        items = ast.literal_eval(value.strip()) if isinstance(value, str) else value
        times = [float(t) for t in items]
    except (ValueError, TypeError, SyntaxError, MemoryError):
        return None
    return times if len(times) >= 2 and all(math.isfinite(t) for t in times) else None


def _table_rows(path: Path) -> list[list[object]]:
    """The rows of the clinical table (its ``dataset_info`` sheet, else its first), header first."""
    if path.suffix.lower() == ".csv":
        with path.open(newline="", encoding="utf-8-sig") as fh:
            return [list(r) for r in csv.reader(fh)]
    try:
        import openpyxl
    except ImportError as exc:
        raise MissingDependencyError(f"{path} is an Excel table and reading it needs openpyxl (pip install "
                                     f"openpyxl), or save its '{CLINICAL_SHEET}' sheet as "
                                     f"{path.with_suffix('.csv').name}.") from exc
    book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    try:
        sheet = book[CLINICAL_SHEET] if CLINICAL_SHEET in book.sheetnames else book.worksheets[0]
        return [list(r) for r in sheet.iter_rows(values_only=True)]
    finally:
        book.close()


@functools.lru_cache(maxsize=4)
def _clinical_rows(path: str, _stamp: tuple[int, int]) -> tuple[list[str], dict[str, dict[str, object]]]:
    """(lower-case column names, {PATIENT_ID: {column: cell}}) of the clinical table at ``path``."""
    try:
        rows = _table_rows(Path(path))
    except MissingDependencyError:
        raise
    except Exception as exc:  # a damaged workbook: openpyxl and zipfile raise many kinds
        raise BadInputError(f"{path} could not be read as the MAMA-MIA clinical table ({exc}); fix or remove "
                            "it, or give the phase times in timings.json.") from exc
    header = [str(h).strip().lower() if h is not None else "" for h in (rows[0] if rows else [])]
    if "patient_id" not in header:
        return header, {}
    pid = header.index("patient_id")
    return header, {str(row[pid]).strip().upper(): dict(zip(header, row)) for row in rows[1:]
                    if len(row) > pid and row[pid] is not None and str(row[pid]).strip()}


def read_clinical_table(root: str | Path) -> tuple[list[str], dict[str, dict[str, object]]]:
    """(lower-case column names, {PATIENT_ID (upper case): {column: cell}}) of the release's clinical table
    under ``root`` (its ``dataset_info`` sheet), ([], {}) without one; read once per file version.

    Raises:
        BadInputError: the table cannot be read.
        MissingDependencyError: the table is an .xlsx and openpyxl is not installed.
    """
    path = clinical_table(root)
    if path is None:
        return [], {}
    st = path.stat()
    return _clinical_rows(str(path.resolve()), (st.st_mtime_ns, st.st_size))


def clinical_table(root: str | Path) -> Optional[Path]:
    """The release's clinical table under ``root`` (:data:`CLINICAL_TABLES`), or None."""
    for name in CLINICAL_TABLES:
        if (Path(root) / name).is_file():
            return Path(root) / name
    return None


def read_clinical_times(root: str | Path) -> dict[str, list[float]]:
    """{PATIENT_ID (upper case): [seconds...]} from the ``acquisition_times`` column of the clinical table,
    or {} without a table. Rows without times (an empty cell) are left out; read once per file version.

    Raises:
        BadInputError: the table cannot be read.
        MissingDependencyError: the table is an .xlsx and openpyxl is not installed.
    """
    header, rows = read_clinical_table(root)
    if header and not {"patient_id", "acquisition_times"} <= set(header):
        log.warning("%s has no patient_id and acquisition_times columns: no phase times read from it",
                    clinical_table(root))
    times = {pid: _parse_times(row.get("acquisition_times")) for pid, row in rows.items()}
    return {pid: t for pid, t in times.items() if t is not None}


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


def read_patient_info(root: str | Path, case_id: str) -> dict:
    """``<root>/patient_info_files/<case>.json`` (the release names them in lower case), {} when absent.

    Raises:
        BadInputError: the file is not a JSON object.
    """
    folder = Path(root) / PATIENT_INFO_DIR
    for name in dict.fromkeys((case_id, case_id.lower(), case_id.upper())):
        path = folder / f"{name}.json"
        if path.is_file():
            try:
                info = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise BadInputError(f"{path} is not valid JSON ({exc}); fix or remove it.") from exc
            if not isinstance(info, dict):
                raise BadInputError(f"{path} must hold a JSON object (the release's patient information).")
            return info
    return {}


def _attribute(value: object) -> Optional[str]:
    """A table cell or JSON value as a group name: numbers without a needless ``.0``; None when empty."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, (int, float)):
        return f"{value:g}"
    text = str(value).strip()
    if _NUMBER.match(text):  # a CSV of the table: "3.0" groups with the workbook's 3.0
        return f"{float(text):g}"
    return text or None


def case_attributes(root: str | Path, case_id: str) -> dict[str, str]:
    """A case's attributes as group names: the clinical table's row (its columns, lower case), then the
    patient information's ``imaging_data`` (``scanner_manufacturer`` also as ``manufacturer``) for what the
    table lacks; ``dataset`` from the case id's prefix (``DUKE_001``: ``DUKE``) when neither gives it.

    Raises:
        BadInputError, MissingDependencyError: as :func:`read_clinical_table`, :func:`read_patient_info`.
    """
    _header, rows = read_clinical_table(root)
    found = {k: _attribute(v) for k, v in rows.get(case_id.upper(), {}).items()}
    imaging = read_patient_info(root, case_id).get("imaging_data")
    if isinstance(imaging, dict):
        if "scanner_manufacturer" in imaging:
            imaging = {"manufacturer": imaging["scanner_manufacturer"], **imaging}
        for key, value in imaging.items():
            if found.get(str(key).lower()) is None and not isinstance(value, (dict, list)):
                found[str(key).lower()] = _attribute(value)
    if found.get("dataset") is None and "_" in case_id:
        found["dataset"] = case_id.split("_", 1)[0].upper()
    return {k: v for k, v in found.items() if k and v is not None}


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
