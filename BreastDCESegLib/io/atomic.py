"""Atomic output paths: write under a temporary name, rename into place at the end.

A crashed or killed writer therefore never leaves a half-written output under the final
name, and an existing output is never replaced unless ``overwrite=True``.

Usage::

    from BreastDCESegLib.io.atomic import atomic_path

    with atomic_path("out/tumor.nrrd") as tmp:      # tmp: out/.tmp-<random>-tumor.nrrd
        sitk.WriteImage(label, str(tmp))             # the real name appears only on success

The temporary name ends with the final file name, so writers that pick a format from the
extension (SimpleITK, ``.seg.nrrd``, ``.nii.gz``) still do. It also works for folders
(a DICOM series): the caller creates the temporary folder and fills it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path
from typing import Iterator, Union

from ..errors import OutputExistsError

PathLike = Union[str, "os.PathLike[str]"]


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        with contextlib.suppress(OSError):
            path.unlink()


def check_writable(final_path: PathLike, overwrite: bool = False) -> Path:
    """Raise :class:`OutputExistsError` if ``final_path`` exists and ``overwrite`` is False."""
    final = Path(final_path)
    if final.exists() and not overwrite:
        raise OutputExistsError(
            f"Output {final} already exists; choose another name or ask for overwrite=True.")
    return final


@contextlib.contextmanager
def atomic_path(final_path: PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``final_path``; rename it to ``final_path`` on success.

    On an exception inside the block the temporary file (or folder) is removed and the
    exception propagates; ``final_path`` is left as it was.

    Raises:
        OutputExistsError: ``final_path`` exists and ``overwrite`` is False (checked before
            and again after the block, so nothing is replaced that appeared meanwhile).
    """
    final = check_writable(final_path, overwrite)
    final.parent.mkdir(parents=True, exist_ok=True)
    temp = final.parent / f".tmp-{uuid.uuid4().hex[:12]}-{final.name}"
    try:
        yield temp
        if not temp.exists():
            raise FileNotFoundError(f"nothing was written to the temporary output {temp} for {final}")
        check_writable(final, overwrite)
        if temp.is_dir() and final.is_dir():
            _remove(final)  # os.replace cannot replace a non-empty folder
        os.replace(temp, final)
    finally:
        _remove(temp)
