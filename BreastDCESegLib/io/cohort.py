"""The cases of an input folder: what ``batch`` and ``segment`` read as one study each.

``discover_cases(path)`` understands:

- a MAMA-MIA root (``images/<case>/...``): its cases (``split``/``datasets``: those of one split of its
  ``train_test_splits.csv`` and of some datasets, :func:`.mamamia.select_cases`);
- a single file: a 4-D image or ``.seq.nrrd`` (one study), or a phase file;
- a folder that directly holds phase files or DICOM files: one study, whatever else it holds;
- a folder whose subfolders hold DICOM of one and the same study (``StudyInstanceUID``), such as a
  PACS export with one subfolder per series: one study, named after the folder;
- otherwise a cohort: each subfolder is a study (DICOM, with its series in subfolders or not, or
  one file per phase) and each 4-D / ``.seq.nrrd`` file beside them is a study too.

Usage::

    from BreastDCESegLib.io.cohort import discover_cases
    for case in discover_cases("/data/cohort", exclude="/data/cohort/pred"):
        study = case.load()          # read only now; case.case_id, case.source (the folder itself: one study)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

IMAGE_SUFFIXES = (".seq.nrrd", ".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
MAX_FILES_LOOKED_AT = 200  # per subfolder, while looking for its first DICOM file


@dataclass
class Case:
    """One study to segment: its id and a function that reads it."""

    case_id: str
    load: Callable[[], Any]
    source: str


def strip_suffix(name: str) -> str:
    """``name`` without its image suffix (``case1.nii.gz`` -> ``case1``)."""
    for suffix in IMAGE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def is_multi_phase_file(path: Path) -> bool:
    """A ``.seq.nrrd`` or a 4-D image file (one whole study per file)."""
    if path.name.lower().endswith(".seq.nrrd"):
        return True
    if not path.name.lower().endswith(IMAGE_SUFFIXES):
        return False
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        return False
    return reader.GetDimension() == 4 or reader.GetNumberOfComponents() > 1  # NRRD "list" axis


def holds_study_files(folder: Path) -> bool:
    """True when ``folder`` directly holds phase files (3-D images or DICOM files)."""
    from . import _is_dicom_file
    from .files import is_phase_file

    for p in folder.iterdir():
        if p.name.startswith(".") or not p.is_file():
            continue
        if (is_phase_file(p) and not is_multi_phase_file(p)) or _is_dicom_file(p):
            return True
    return False


def _first_dicom_study_uid(folder: Path) -> Optional[str]:
    """The StudyInstanceUID of the first DICOM file under ``folder`` (walked in name order), or None
    when none is found among its first :data:`MAX_FILES_LOOKED_AT` files or it has no such tag."""
    from . import _is_dicom_file

    looked = 0
    for top, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(n for n in names if not n.startswith(".")):
            looked += 1
            if looked > MAX_FILES_LOOKED_AT:
                return None
            path = Path(top) / name
            if _is_dicom_file(path):
                import pydicom

                try:
                    header = pydicom.dcmread(str(path), stop_before_pixels=True, specific_tags=["StudyInstanceUID"])
                except Exception:  # noqa: BLE001 - an unreadable file: look at the next one
                    continue
                return str(header.get("StudyInstanceUID", "")) or None
    return None


def one_dicom_study(subfolders: list[Path]) -> bool:
    """True when two or more ``subfolders`` all hold DICOM of one study (the series of one
    acquisition exported one subfolder each), judged by each one's first DICOM file."""
    if len(subfolders) < 2:
        return False
    first = _first_dicom_study_uid(subfolders[0])
    return first is not None and all(_first_dicom_study_uid(p) == first for p in subfolders[1:])


def discover_cases(input_path: str | Path, exclude: Optional[str | Path] = None, split: Optional[str] = None,
                   datasets: Sequence[str] = ()) -> list[Case]:
    """The cases under ``input_path`` (see the module docstring for the layouts); ``exclude``
    (the output folder, when it lies inside the input) is never a case. ``split``, ``datasets``: only
    those cases of a MAMA-MIA root (UsageError for another input)."""
    from ..errors import BreastDCESegError, UsageError
    from . import read_study

    root = Path(input_path)
    skip = Path(exclude).resolve() if exclude is not None else None
    if not root.exists():
        raise BreastDCESegError(f"Input {root} does not exist.")
    if root.is_dir() and (root / "images").is_dir():
        from . import mamamia

        chosen = mamamia.list_cases(root)
        if split is not None or datasets:
            chosen = mamamia.select_cases(root, chosen, split, datasets)
        return [Case(c, (lambda c=c: mamamia.read_case(root, c)[0]), str(root / "images" / c)) for c in chosen]
    if split is not None or datasets:
        raise UsageError(f"--split and --dataset select cases of a MAMA-MIA root; {root} is not one "
                         "(it has no 'images' folder).")
    if root.is_file():
        cid = strip_suffix(root.name)
        return [Case(cid, lambda: read_study(root, case_id=cid), str(root))]
    name = root.resolve().name
    whole = [Case(name, lambda: read_study(root, case_id=name), str(root))]
    if holds_study_files(root):  # the folder itself is one study, whatever else it holds
        return whole
    entries = sorted(p for p in root.iterdir() if not p.name.startswith(".") and p.resolve() != skip)
    folders = [p for p in entries if p.is_dir()]
    if one_dicom_study(folders):  # one study's series, one subfolder each
        return whole
    cases = [Case(p.name, (lambda p=p: read_study(p, case_id=p.name)), str(p)) for p in folders]
    cases += [Case(strip_suffix(p.name), (lambda p=p: read_study(p, case_id=strip_suffix(p.name))), str(p))
              for p in entries if p.is_file() and is_multi_phase_file(p)]
    return cases or whole  # nothing recognisable: read it as one study (its error names the problem)


def add_selection_arguments(parser) -> None:
    """``--split`` and ``--dataset``: the cases of a MAMA-MIA root to run (``segment``, ``batch``, ``evaluate``)."""
    parser.add_argument("--split", choices=("train", "test"), default=None,
                        help="MAMA-MIA root: only the cases of this split of its train_test_splits.csv")
    parser.add_argument("--dataset", action="append", default=[], metavar="NAME",
                        help="MAMA-MIA root: only the cases of this dataset (DUKE, ISPY1, ISPY2, NACT; repeatable)")


def add_breast_box_argument(parser) -> None:
    """``--breast-box`` (``segment``, ``batch``): the tumor within the MAMA-MIA breast box (:mod:`..breast_box`)."""
    parser.add_argument("--breast-box", action="store_true",
                        help="MAMA-MIA root: keep the tumor within the breast box of patient_info_files/<case>.json "
                             "(primary_lesion.breast_coordinates), as the release's challenge gives it; what lies "
                             "outside is removed and reported")
