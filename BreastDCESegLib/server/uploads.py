"""Checks of a submitted study before it reaches a worker: names, sizes, zips, image headers.

Every check raises :class:`UploadRejected` with an HTTP status and a message that says what is
wrong and what to send instead; nothing is written outside the job's own directory (files are
saved under names this module makes up, never under the client's names).

Usage::

    phases = save_phase_files(uploads, job_dir / "inputs", limits)     # NRRD / NIfTI, one per phase
    check_phase_headers(phases, limits)                               # 3-D, sizes, one grid
    folder = extract_dicom_zip(zip_path, job_dir / "dicom", limits)    # DICOM files of one study
"""

from __future__ import annotations

import re
import shutil
import zipfile
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Sequence

import numpy as np

from .config import Limits

PHASE_SUFFIXES = (".nii.gz", ".nii", ".nrrd")
NRRD_DETACHED_KEYS = re.compile(rb"^\s*data\s*file\s*:", re.IGNORECASE | re.MULTILINE)
CHUNK = 1 << 20
GEOMETRY_TOLERANCE = 1e-3


class UploadRejected(Exception):
    """A submitted study that is refused; ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def phase_suffix(filename: str) -> str:
    """The accepted suffix of an uploaded phase file name.

    Raises:
        UploadRejected: 415 for any other kind of file (detached headers such as ``.nhdr`` or
            ``.mhd`` are refused: they point at other files).
    """
    lower = (filename or "").lower()
    for suffix in PHASE_SUFFIXES:
        if lower.endswith(suffix):
            return suffix
    raise UploadRejected(415, f"Phase file #{_ordinal(filename)} is not NRRD (.nrrd) or NIfTI (.nii, .nii.gz); "
                              "send one such file per phase, or a zip of the DICOM files.")


def _ordinal(filename: str) -> str:
    return "" if not filename else "(" + PurePosixPath(filename.replace("\\", "/")).name[-60:] + ")"


def copy_limited(source: BinaryIO, target: Path, budget: int, what: str) -> int:
    """Copy a stream into ``target``; refuse (413) once more than ``budget`` bytes came."""
    written = 0
    with open(target, "xb") as out:
        while True:
            chunk = source.read(CHUNK)
            if not chunk:
                return written
            written += len(chunk)
            if written > budget:
                raise UploadRejected(413, f"{what} is larger than the server accepts ({budget} bytes).")
            out.write(chunk)


def save_phase_files(files: Sequence[tuple[str, BinaryIO]], folder: Path, limits: Limits) -> list[Path]:
    """Save uploaded ``(client file name, stream)`` phases as ``phase_000<suffix>``... in ``folder``."""
    if len(files) < 2:
        raise UploadRejected(422, f"A DCE study needs a pre-contrast and at least one post-contrast phase; "
                                  f"{len(files)} phase file(s) were sent.")
    if len(files) > limits.max_phase_files:
        raise UploadRejected(413, f"{len(files)} phase files were sent; the server accepts at most "
                                  f"{limits.max_phase_files}.")
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (name, stream) in enumerate(files):
        path = folder / f"phase_{i:03d}{phase_suffix(name)}"
        copy_limited(stream, path, limits.max_upload_bytes, f"Phase file {i}")
        paths.append(path)
    return paths


def _check_nrrd_attached(path: Path, index: int) -> None:
    with open(path, "rb") as fh:
        head = fh.read(1 << 16)
    if not head.startswith(b"NRRD"):
        raise UploadRejected(422, f"Phase {index} is not an NRRD file (no NRRD magic); send NRRD or NIfTI images.")
    header = head.split(b"\n\n", 1)[0]
    if NRRD_DETACHED_KEYS.search(header):
        raise UploadRejected(422, f"Phase {index} is an NRRD header pointing at another data file; send NRRD "
                                  "files with attached data (.nrrd).")


def check_phase_headers(paths: Sequence[Path], limits: Limits) -> list[dict]:
    """Read each phase's header (not its voxels): 3-D scalar, within the size limits, all on one
    grid. Returns the geometry of each phase.

    Raises:
        UploadRejected: 422 not an image / not 3-D / phases on different grids; 413 too large.
    """
    import SimpleITK as sitk

    infos = []
    for i, path in enumerate(paths):
        if path.suffix == ".nrrd":
            _check_nrrd_attached(path, i)
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        try:
            reader.ReadImageInformation()
        except RuntimeError:
            raise UploadRejected(422, f"Phase {i} cannot be read as an image (damaged, truncated or not "
                                      f"{path.suffix.lstrip('.').upper()}).") from None
        size = list(reader.GetSize())
        if reader.GetDimension() != 3 or reader.GetNumberOfComponents() != 1:
            raise UploadRejected(422, f"Phase {i} has {reader.GetDimension()} dimension(s) and "
                                      f"{reader.GetNumberOfComponents()} component(s); send one 3-D scalar "
                                      "volume per phase.")
        if max(size) > limits.max_dimension or int(np.prod(size)) > limits.max_voxels:
            raise UploadRejected(413, f"Phase {i} has size {size}; the server accepts at most "
                                      f"{limits.max_dimension} voxels per axis and {limits.max_voxels} in all.")
        infos.append({"size": size, "spacing": reader.GetSpacing(), "origin": reader.GetOrigin(),
                      "direction": reader.GetDirection()})
    first = infos[0]
    for i, info in enumerate(infos[1:], start=1):
        for key in ("size", "spacing", "origin", "direction"):
            if not np.allclose(info[key], first[key], atol=GEOMETRY_TOLERANCE):
                raise UploadRejected(422, f"Phase {i} is on another grid than the pre-contrast phase: {key} "
                                          f"{_fmt(info[key])} vs {_fmt(first[key])}. Send every phase on the "
                                          "pre-contrast grid (resample them first).")
    return infos


def _fmt(values) -> str:
    return "[" + ", ".join(f"{float(v):g}" for v in values) + "]"


def safe_member_name(name: str) -> bool:
    """False for absolute paths, drive letters and any ``..`` component (path traversal)."""
    normalized = name.replace("\\", "/")
    if normalized.startswith("/") or re.match(r"^[A-Za-z]:", normalized):
        return False
    return ".." not in PurePosixPath(normalized).parts


def extract_dicom_zip(zip_path: Path, folder: Path, limits: Limits) -> Path:
    """Extract the files of a DICOM zip into ``folder`` as ``00000.dcm``...; refuse unsafe zips.

    Raises:
        UploadRejected: 422 not a zip, a member with a path-traversal or absolute name, an
            encrypted member, or a member that is not DICOM; 413 too many members, too large
            once decompressed, or a compression ratio of a zip bomb.
    """
    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError):
        raise UploadRejected(422, "The DICOM upload is not a readable zip file; zip the DICOM files of one "
                                  "study (folders inside are fine).") from None
    with archive:
        members = [m for m in archive.infolist() if not m.is_dir()]
        unsafe = [m.filename for m in archive.infolist() if not safe_member_name(m.filename)]
        if unsafe:
            raise UploadRejected(422, f"The zip has {len(unsafe)} member(s) with an absolute or '..' path "
                                      "(path traversal), e.g. " + repr(unsafe[0][:80]) + "; zip the files with "
                                      "relative names.")
        if not members:
            raise UploadRejected(422, "The zip holds no files; zip the DICOM files of one study.")
        if len(members) > limits.max_zip_members:
            raise UploadRejected(413, f"The zip holds {len(members)} files; the server accepts at most "
                                      f"{limits.max_zip_members}.")
        declared = sum(m.file_size for m in members)
        if declared > limits.max_decompressed_bytes:
            raise UploadRejected(413, f"The zip expands to {declared} bytes; the server accepts at most "
                                      f"{limits.max_decompressed_bytes}.")
        for m in members:
            if m.flag_bits & 0x1:
                raise UploadRejected(422, "The zip has encrypted members; send an unencrypted zip.")
            if m.file_size > CHUNK and m.file_size > limits.max_compression_ratio * max(m.compress_size, 1):
                raise UploadRejected(413, f"A zip member expands {m.file_size / max(m.compress_size, 1):.0f}-fold "
                                          "(a zip bomb?); the server refuses compression ratios above "
                                          f"{limits.max_compression_ratio:g}.")
        folder.mkdir(parents=True, exist_ok=True)
        budget = limits.max_decompressed_bytes
        for i, m in enumerate(members):
            target = folder / f"{i:05d}.dcm"
            with archive.open(m) as source:  # the real size counts, whatever the header declares
                budget -= copy_limited(source, target, budget, "The unzipped study")
    check_dicom_files(folder, limits)
    return folder


def check_dicom_files(folder: Path, limits: Limits) -> None:
    """Every file must be DICOM with an image size within the limits (headers only)."""
    import pydicom

    for path in sorted(folder.iterdir()):
        try:
            header = pydicom.dcmread(str(path), stop_before_pixels=True)
        except Exception:  # noqa: BLE001 - pydicom raises several kinds for non-DICOM files
            raise UploadRejected(422, f"Zip member #{int(path.stem)} is not a DICOM file; the zip must hold "
                                      "only the DICOM files of the study.") from None
        rows, cols = int(header.get("Rows", 0) or 0), int(header.get("Columns", 0) or 0)
        frames = int(header.get("NumberOfFrames", 1) or 1)
        if max(rows, cols, frames) > limits.max_dimension or rows * cols * frames > limits.max_voxels:
            raise UploadRejected(413, f"Zip member #{int(path.stem)} has {rows}x{cols}x{frames} pixels; the server "
                                      f"accepts at most {limits.max_dimension} per axis.")


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
