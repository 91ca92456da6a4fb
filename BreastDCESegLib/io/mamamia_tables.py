"""The public MAMA-MIA release's tables: the clinical table (``clinical_and_imaging_info.xlsx``, sheet
``dataset_info``: a row per ``patient_id`` with its ``acquisition_times``, ``dataset``, ``site``,
``manufacturer``, ``field_strength``...), the per-case ``patient_info_files/<case>.json`` and the
split ``train_test_splits.csv``; :mod:`.mamamia` reads the images and segmentations.

Usage::

    from BreastDCESegLib.io import mamamia_tables as tables
    tables.read_clinical_times(root)["DUKE_001"]         # [0.0, 584.0, 714.0, ...]
    tables.case_attributes(root, "DUKE_001")["dataset"]  # "DUKE"
    tables.select_cases(root, ids, split="test", datasets=["DUKE"])
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

from ..errors import BadInputError, MissingDependencyError

PATIENT_INFO_DIR = "patient_info_files"
SPLITS_FILE = "train_test_splits.csv"
SPLITS = ("train", "test")
CLINICAL_TABLES = ("clinical_and_imaging_info.xlsx", "clinical_and_imaging_info.csv")  # the release's, or a CSV of it
CLINICAL_SHEET = "dataset_info"
log = logging.getLogger(__name__)
_NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


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


def patient_info_path(root: str | Path, case_id: str) -> Optional[Path]:
    """``<root>/patient_info_files/<case>.json`` (the release names them in lower case), None when absent."""
    folder = Path(root) / PATIENT_INFO_DIR
    for name in dict.fromkeys((case_id, case_id.lower(), case_id.upper())):
        if (folder / f"{name}.json").is_file():
            return folder / f"{name}.json"
    return None


def read_patient_info(root: str | Path, case_id: str) -> dict:
    """The case's patient information (:func:`patient_info_path`), {} when absent.

    Raises:
        BadInputError: the file is not a JSON object.
    """
    path = patient_info_path(root, case_id)
    if path is None:
        return {}
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInputError(f"{path} is not valid JSON ({exc}); fix or remove it.") from exc
    if not isinstance(info, dict):
        raise BadInputError(f"{path} must hold a JSON object (the release's patient information).")
    return info


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
    if found.get("dataset") is None:
        found["dataset"] = id_dataset(case_id)
    return {k: v for k, v in found.items() if k and v is not None}


def id_dataset(case_id: str) -> Optional[str]:
    """The dataset a MAMA-MIA case id names by its prefix (``DUKE_001``: ``DUKE``), None without one."""
    return case_id.split("_", 1)[0].upper() if "_" in case_id else None


def read_splits(root: str | Path) -> dict[str, set[str]]:
    """{"train": ids, "test": ids} (upper case) from ``<root>/train_test_splits.csv`` (columns
    ``train_split``, ``test_split``; the shorter one padded with empty cells), {} without the file.

    Raises:
        BadInputError: the file cannot be read, lacks both columns, or names a case in both splits.
    """
    path = Path(root) / SPLITS_FILE
    if not path.is_file():
        return {}
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise BadInputError(f"{path} could not be read ({exc}); fix or remove it.") from exc
    columns = {str(k).strip().lower(): k for k in (rows[0] if rows else {}) if k is not None}
    if not {f"{s}_split" for s in SPLITS} & set(columns):
        raise BadInputError(f"{path} has neither a train_split nor a test_split column; it is not the "
                            "release's split file.")
    splits = {s: {str(r[columns[f"{s}_split"]]).strip().upper() for r in rows
                  if f"{s}_split" in columns and str(r[columns[f"{s}_split"]] or "").strip()} for s in SPLITS}
    both = sorted(splits["train"] & splits["test"])
    if both:
        raise BadInputError(f"{path} puts {len(both)} case(s) in both splits ({', '.join(both[:5])}); fix it.")
    return splits


def select_cases(root: str | Path, case_ids: Sequence[str], split: Optional[str] = None,
                 datasets: Sequence[str] = (), exclude_datasets: Sequence[str] = ()) -> list[str]:
    """The ids of ``case_ids`` in ``split`` ("train", "test"; None: any) of :func:`read_splits`, whose
    ``dataset`` (:func:`case_attributes`) is one of ``datasets`` (empty: any) and none of
    ``exclude_datasets``; dataset names match without case.

    Raises:
        BadInputError: ``split`` is asked for but the root has no split file, or is unknown.
    """
    chosen = list(case_ids)
    if split is not None:
        if split not in SPLITS:
            raise BadInputError(f"Unknown split '{split}': use one of {', '.join(SPLITS)}.")
        splits = read_splits(root)
        if not splits:
            raise BadInputError(f"{Path(root) / SPLITS_FILE} does not exist: no '{split}' split to select.")
        chosen = [c for c in chosen if c.upper() in splits[split]]
    wanted, unwanted = {d.upper() for d in datasets}, {d.upper() for d in exclude_datasets}
    if wanted or unwanted:
        of = {c: (case_attributes(root, c).get("dataset") or "").upper() for c in chosen}
        chosen = [c for c in chosen if (not wanted or of[c] in wanted) and of[c] not in unwanted]
    return chosen
