"""Readers and writers: every input becomes a :class:`~BreastDCESegLib.study.DCEStudy`.

:func:`read_study` recognises what it is given:

* a list of files, one per phase, in order (pre-contrast first),
* a 4-D NIfTI/NRRD/MHA file, or a Slicer volume sequence ``.seq.nrrd``,
* a folder of DICOM files (one series per phase, or one dynamic series),
* a folder of phase files named ``<case>_0000`` ... or ``pre``/``post1``...,
* a MAMA-MIA root (``images/``, ``segmentations/``) or one of its case folders.

Every failure is a :class:`~BreastDCESegLib.errors.BadInputError` naming the file and the
problem. Writers (``files.write_image``, ``dicom.write_dicom_study``,
``segwrite.write_seg_nrrd``...) write atomically (``atomic.atomic_path``).

Usage::

    from BreastDCESegLib.io import read_study
    study = read_study("patient1/dicom")                      # DICOM folder
    study = read_study(["pre.nrrd", "post1.nrrd"], times=[0, 90])
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Union

import SimpleITK as sitk

from ..errors import BadInputError
from ..study import DCEStudy
from .atomic import atomic_path  # noqa: F401

PathLike = Union[str, Path]


def _dimension(path: Path) -> int:
    from .files import extension
    from .sequence import _has_list_axis

    if extension(path) in (".nrrd", ".nhdr", ".seq.nrrd"):
        try:
            if _has_list_axis(path):
                return 4
        except BadInputError:
            pass
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise BadInputError(f"{path} cannot be read: the file is damaged, truncated or not an image.") from exc
    return reader.GetDimension()


def _is_dicom_file(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return head[128:132] == b"DICM" or path.suffix.lower() == ".dcm"


def _read_file(path: Path, case_id: Optional[str], times) -> DCEStudy:
    from . import files, sequence
    from .dicom import read_dicom_study

    ext = files.extension(path)
    if ext == ".seq.nrrd":
        return sequence.read_seq_nrrd(path, times=times, case_id=case_id)
    if ext:
        dimension = _dimension(path)
        if dimension == 4:
            return sequence.read_4d(path, times=times, case_id=case_id)
        if dimension != 3:
            raise BadInputError(f"{path} is a {dimension}-D image; a DCE study is one 4-D file, or one 3-D file "
                                "per phase.")
        raise BadInputError(f"{path} is a single 3-D volume: a DCE study needs a pre-contrast and at least one "
                            "post-contrast phase. Give all phase files, their folder, or a 4-D file.")
    if _is_dicom_file(path):
        return read_dicom_study(path.parent, times=times, case_id=case_id)
    raise BadInputError(f"{path} has an unknown extension; give NIfTI (.nii, .nii.gz), NRRD (.nrrd, .nhdr, "
                        ".seq.nrrd), MetaImage (.mha, .mhd) files or a DICOM folder.")


def _read_folder(folder: Path, case_id: Optional[str], times) -> DCEStudy:
    from . import files, mamamia, sequence
    from .dicom import read_dicom_study

    if (folder / "images").is_dir():
        cases = mamamia.list_cases(folder)
        if case_id in cases or len(cases) == 1:
            return mamamia.read_case(folder, case_id if case_id in cases else cases[0], times=times)[0]
        raise BadInputError(f"{folder} is a MAMA-MIA folder with {len(cases)} cases ({', '.join(cases[:5])}...); "
                            "name the case (case_id=...) or use the batch command.")
    if folder.parent.name == "images" and ((folder.parent.parent / mamamia.TIMINGS_FILE).exists()
                                           or mamamia.clinical_table(folder.parent.parent) is not None):
        return mamamia.read_case(folder.parent.parent, folder.name, times=times)[0]
    entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
    if not entries:
        raise BadInputError(f"{folder} is empty: put the DICOM files or the phase files of one study in it.")
    phase_files = [p for p in entries if files.is_phase_file(p)]
    sequences = [p for p in entries if p.is_file() and files.extension(p) == ".seq.nrrd"]
    if len(phase_files) == 1 and _dimension(phase_files[0]) == 4:
        return sequence.read_4d(phase_files[0], times=times, case_id=case_id)
    if phase_files:
        return files.read_phase_folder(folder, times=times, case_id=case_id)
    if len(sequences) == 1:
        return sequence.read_seq_nrrd(sequences[0], times=times, case_id=case_id)
    return read_dicom_study(folder, times=times, case_id=case_id)


def read_study(path_or_paths: Union[PathLike, Sequence[PathLike]], case_id: Optional[str] = None,
               times: Optional[Sequence[Optional[float]]] = None) -> DCEStudy:
    """Read a DCE study from files, a 4-D file, a sequence, a DICOM folder or a MAMA-MIA case.

    Raises:
        BadInputError: the input does not exist, is empty, unreadable, of an unknown type, or
            does not make a valid study (see :meth:`DCEStudy.from_images`).
    """
    from . import files

    if isinstance(path_or_paths, (list, tuple)):
        paths = [Path(p) for p in path_or_paths]
        if len(paths) != 1:
            for p in paths:
                if not p.exists():
                    raise BadInputError(f"{p} does not exist.")
            return files.read_phase_files(paths, times=times, case_id=case_id)
        path = paths[0]
    else:
        path = Path(path_or_paths)
    if not path.exists():
        raise BadInputError(f"{path} does not exist.")
    if path.is_dir():
        return _read_folder(path, case_id, times)
    return _read_file(path, case_id, times)
