"""One file per phase (NIfTI, NRRD, MHA); the multi-phase files (4-D NIfTI/NRRD, Slicer
``.seq.nrrd``) are in :mod:`.sequence`, which builds on this module.

Phase order in a folder comes from the file names by the one phase-name rule
(:func:`BreastDCESegLib.phase_labels.phase_rank`): a trailing number (``case_0000``,
``case_0001`` ... as in MAMA-MIA/nnU-Net), or ``pre`` / ``post1`` / ``phase2`` names.
Acquisition times (seconds after injection) are kept in the files this module writes:
the ``DCE_time_s`` key of NRRD/MHA headers, ``time_s=`` in the NIfTI description, the
``axis N index values`` of a ``.seq.nrrd`` (as Slicer's sequence storage node writes them).

Usage::

    from BreastDCESegLib.io import files

    paths = files.write_study_phases(study, "out/case1", ext=".nrrd")   # case1_0000.nrrd ...
    study = files.read_phase_folder("out/case1")
"""

from __future__ import annotations

import gzip
import logging
import re
import struct
import zlib
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import SimpleITK as sitk

from .. import phase_labels
from ..errors import BadInputError
from ..study import DCEStudy
from .atomic import atomic_path, check_writable

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".seq.nrrd", ".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
TIME_KEY = "DCE_time_s"
_NON_PHASE = re.compile(r"(^|[_\-. ])(truth|mask|masks|label|labels|labelmap|seg|segmentation|gt|tumou?r|prob)"
                        r"($|[_\-. ])", re.IGNORECASE)


# ----------------------------------------------------------------------------- names
def extension(path: str | Path) -> str:
    """The image extension of ``path`` ('.nii.gz', '.seq.nrrd', ...) or '' if unsupported."""
    name = Path(path).name.lower()
    return next((ext for ext in IMAGE_EXTENSIONS if name.endswith(ext)), "")


def stem(path: str | Path) -> str:
    """File name without its image extension."""
    name = Path(path).name
    ext = extension(name)
    return name[: len(name) - len(ext)] if ext else Path(name).stem


def phase_rank(name: str) -> Optional[int]:
    """Phase index from a file name: ``x_0000`` -> 0, ``pre`` -> 0, ``post2`` -> 2, ``phase3`` -> 3
    (:func:`BreastDCESegLib.phase_labels.phase_rank`, with any trailing number)."""
    return phase_labels.phase_rank(stem(name), trailing_number=True)


def is_phase_file(path: Path) -> bool:
    """An image file that can be a phase (not a mask/label/segmentation, not a sequence)."""
    ext = extension(path)
    return (path.is_file() and not path.name.startswith(".") and ext not in ("", ".seq.nrrd")
            and not path.name.lower().endswith(".seg.nrrd") and not _NON_PHASE.search(stem(path)))


# ----------------------------------------------------------------------------- reading
def _nifti_header(head: bytes) -> Optional[tuple[str, list[int], int, int, int]]:
    """(byte order, dims, datatype, bitpix, data offset) of a NIfTI-1/2 header, or None."""
    for order in "<>":
        if len(head) >= 348 and struct.unpack(order + "i", head[:4])[0] == 348:
            dims = list(struct.unpack(order + "8h", head[40:56]))
            datatype, bitpix = struct.unpack(order + "2h", head[70:74])
            return order, dims, datatype, bitpix, max(int(struct.unpack(order + "f", head[108:112])[0]), 352)
        if len(head) >= 540 and struct.unpack(order + "i", head[:4])[0] == 540:
            datatype, bitpix = struct.unpack(order + "2h", head[12:16])
            dims = list(struct.unpack(order + "8q", head[16:80]))
            return order, dims, datatype, bitpix, max(int(struct.unpack(order + "q", head[168:176])[0]), 544)
    return None


def _nifti_bytes(path: Path) -> bytes:
    """The whole (decompressed) NIfTI file; raises OSError/EOFError/zlib.error when damaged."""
    data = path.read_bytes()
    return gzip.decompress(data) if path.name.lower().endswith(".gz") else data


def nifti_problem(data: bytes) -> Optional[str]:
    """Why the (decompressed) bytes of a NIfTI file cannot be used (truncated, NaN/inf voxels),
    or None.

    ITK's NIfTI reader fills missing bytes and replaces NaN silently, so the data are
    checked here: the byte count against the header, float voxels for non-finite values.
    """
    parsed = _nifti_header(data[:544])
    if parsed is None:
        return "not a NIfTI-1/2 header"
    order, dims, datatype, bitpix, offset = parsed
    n = int(np.prod([max(int(d), 1) for d in dims[1:1 + max(0, min(int(dims[0]), 7))]]))
    expected, size = n * bitpix // 8, max(0, len(data) - offset)
    if size < expected:
        return f"damaged or truncated ({size} of {expected} data bytes)"
    floats = {16: "f4", 64: "f8"}.get(datatype)
    if floats:
        values = np.frombuffer(data, dtype=order + floats, count=expected // (bitpix // 8), offset=offset)
        bad = int(values.size - np.count_nonzero(np.isfinite(values)))
        if bad:
            return f"{bad} NaN or infinite voxel(s)"
    return None


def _read_checked_nifti(path: Path) -> sitk.Image:
    """Read a NIfTI file once: its bytes are decompressed here for :func:`nifti_problem` and
    handed to ITK uncompressed (a temporary ``.nii``), not decompressed a second time."""
    import tempfile

    try:
        data = _nifti_bytes(path)
    except (OSError, EOFError, zlib.error) as exc:
        data, problem = None, f"damaged or truncated ({exc})"
    else:
        problem = nifti_problem(data)
    if problem:
        raise BadInputError(f"{path} cannot be used: the NIfTI file has {problem}. Re-export it." if "NaN" in problem
                            else f"{path} cannot be read: the NIfTI file is {problem}. Re-export it.")
    if not path.name.lower().endswith(".gz"):
        return sitk.ReadImage(str(path))
    try:
        with tempfile.TemporaryDirectory(prefix="breastdceseg-nii-") as folder:
            plain = Path(folder) / "phase.nii"
            plain.write_bytes(data)
            return sitk.ReadImage(str(plain))
    except OSError:  # no writable temporary folder: ITK decompresses it again
        return sitk.ReadImage(str(path))


def read_image(path: str | Path) -> sitk.Image:
    """Read one image file; every failure becomes a :class:`BadInputError` naming the file."""
    path = Path(path)
    if not path.exists():
        raise BadInputError(f"{path} does not exist.")
    if not extension(path):
        raise BadInputError(f"{path} has an unknown extension; use one of {', '.join(IMAGE_EXTENSIONS)} "
                            "(or a DICOM folder).")
    try:
        if extension(path) in (".nii", ".nii.gz"):
            return _read_checked_nifti(path)
        return sitk.ReadImage(str(path))
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unknown error"
        raise BadInputError(f"{path} cannot be read: the file is damaged, truncated or not an image ({first}).") from exc


def _stored_time(image: sitk.Image) -> Optional[float]:
    if image.HasMetaDataKey(TIME_KEY):
        try:
            return float(image.GetMetaData(TIME_KEY))
        except ValueError:
            return None
    if image.HasMetaDataKey("descrip"):
        m = re.search(r"time_s=([-+0-9.eE]+)(?:$|\s)", image.GetMetaData("descrip"))
        if m:
            return float(m.group(1))
    return None


def read_phase_files(paths: Sequence[str | Path], times: Optional[Sequence[Optional[float]]] = None,
                     case_id: Optional[str] = None) -> DCEStudy:
    """One file per phase, in the given order (pre-contrast first).

    Times come from ``times`` or, if every file stores one, from the files themselves.

    Raises:
        BadInputError: fewer than two files, an unreadable file, a file that is not 3-D, NaN
            voxels, phases that do not overlap, or times that do not increase.
    """
    paths = [Path(p) for p in paths]
    if len(paths) < 2:
        where = f" ({paths[0]})" if paths else ""
        raise BadInputError(f"A DCE study needs a pre-contrast and at least one post-contrast file; "
                            f"got {len(paths)}{where}. Give all phase files in order.")
    images = []
    for p in paths:
        image = read_image(p)
        if image.GetDimension() != 3:
            raise BadInputError(f"{p} is {image.GetDimension()}-D; one file per phase must hold a 3-D volume. "
                                "A 4-D file holds the whole study: give it alone.")
        images.append(image)
    if times is None:
        stored = [_stored_time(im) for im in images]
        times = stored if all(t is not None for t in stored) else None
    cid = case_id or re.sub(r"[_\-. ]*(\d+|pre|post\d*)$", "", stem(paths[0]), flags=re.IGNORECASE) or stem(paths[0])
    return DCEStudy.from_images(images, times=times, case_id=cid, sources=[str(p) for p in paths],
                                metadata={"format": extension(paths[0]).lstrip("."), "source_files": [str(p) for p in paths]})


def order_phase_files(paths: Sequence[Path]) -> list[Path]:
    """Order phase files by the phase number in their names.

    Raises:
        BadInputError: a name without phase number, or two files with the same number.
    """
    ranks = {p: phase_rank(p.name) for p in paths}
    unknown = [p.name for p, r in ranks.items() if r is None]
    if unknown:
        raise BadInputError(f"Cannot tell the phase order of {', '.join(unknown)} in {paths[0].parent}: name the "
                            "files <case>_0000 (pre), <case>_0001 ... or pre/post1/post2, or give them as an ordered list.")
    seen: dict[int, Path] = {}
    for p, r in ranks.items():
        if r in seen:
            raise BadInputError(f"{seen[r].name} and {p.name} in {p.parent} both look like phase {r}; "
                                "remove one or give the files as an ordered list.")
        seen[r] = p
    return [seen[r] for r in sorted(seen)]


def read_phase_folder(folder: str | Path, times: Optional[Sequence[Optional[float]]] = None,
                      case_id: Optional[str] = None) -> DCEStudy:
    """All phase files of a folder, ordered by the phase number in their names."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BadInputError(f"{folder} is not a folder.")
    entries = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    candidates = [p for p in entries if is_phase_file(p)]
    skipped = [p.name for p in entries if extension(p) and p not in candidates]
    if skipped:
        log.info("not phases (masks, labels, sequences), skipped in %s: %s", folder, ", ".join(skipped))
    if not candidates:
        raise BadInputError(f"{folder} holds no phase images ({', '.join(IMAGE_EXTENSIONS[1:])}); "
                            "it is empty or holds other files.")
    return read_phase_files(order_phase_files(candidates), times=times, case_id=case_id or folder.name)


# ----------------------------------------------------------------------------- writing
def _storage_array(array: np.ndarray) -> np.ndarray:
    """int16 when every voxel is an integer that fits, else float32 (keeps values exactly)."""
    if np.all(np.isfinite(array)) and np.array_equal(array, np.round(array)) \
            and array.min(initial=0) >= -32768 and array.max(initial=0) <= 32767:
        return array.astype(np.int16)
    return array.astype(np.float32)


def write_image(image: sitk.Image, path: str | Path, overwrite: bool = False, compress: Optional[bool] = None) -> Path:
    """Write one image atomically (NIfTI, NRRD, MHA). ``compress`` None: only ``.nii.gz``."""
    path = Path(path)
    ext = extension(path)
    if ext in ("", ".seq.nrrd"):
        raise BadInputError(f"{path}: unknown image extension; use .nii.gz, .nii, .nrrd, .nhdr, .mha or .mhd.")
    compress = ext == ".nii.gz" if compress is None else compress
    if ext in (".nhdr", ".mhd"):  # header + detached data file: cannot be renamed atomically as one
        raise BadInputError(f"{path}: write attached-data files (.nrrd, .mha) instead of {ext}.")
    with atomic_path(path, overwrite=overwrite) as tmp:
        sitk.WriteImage(image, str(tmp), useCompression=bool(compress))
    return path


def write_study_phases(study: DCEStudy, folder: str | Path, ext: str = ".nrrd", overwrite: bool = False,
                       case_id: Optional[str] = None, compress: Optional[bool] = None) -> list[Path]:
    """Write each phase as ``<case>_000k<ext>`` (pre-contrast ``_0000``), times in the headers."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    case = re.sub(r"[^A-Za-z0-9_.-]+", "_", case_id or study.case_id) or "study"
    paths = [folder / f"{case}_{k:04d}{ext}" for k in range(study.n_phases)]
    for p in paths:
        check_writable(p, overwrite)
    for k, (phase, path) in enumerate(zip(study.phases, paths)):
        image = sitk.GetImageFromArray(_storage_array(sitk.GetArrayViewFromImage(phase)))
        image.CopyInformation(phase)
        t = study.times[k]
        if t is not None:
            image.SetMetaData(TIME_KEY, repr(float(t)))
            image.SetMetaData("ITK_FileNotes", f"BreastDCESeg phase {k} time_s={float(t)!r}")
        write_image(image, path, overwrite=overwrite, compress=compress)
    return paths

