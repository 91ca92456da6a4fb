"""Multi-phase files: 4-D NIfTI/NRRD/MHA and Slicer volume sequences (``.seq.nrrd``).

A ``.seq.nrrd`` is a 4-D NRRD with one ``list`` axis and the sequence index in the
``axis N index type`` / ``axis N index values`` key/value pairs, as Slicer's
vtkMRMLVolumeSequenceStorageNode writes it (older Slicer: list axis first; Slicer 5.x:
list axis last; both are read). Index units are converted with
:data:`BreastDCESegLib.phase_labels.TIME_UNITS`.

Usage::

    from BreastDCESegLib.io.sequence import read_seq_nrrd, write_seq_nrrd, read_4d, write_4d
    write_seq_nrrd(study, "case1.seq.nrrd")          # loads in Slicer as a volume sequence
    study = read_seq_nrrd("case1.seq.nrrd")          # times from the index values
    study = read_4d("dynamic.nii.gz", times=[0, 90, 180])
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import SimpleITK as sitk

from ..errors import BadInputError
from ..phase_labels import seconds_per_unit
from ..study import DCEStudy
from .atomic import atomic_path
from .files import _storage_array, extension, read_image, stem, write_image
from .nrrd import read_nrrd, read_nrrd_header, write_nrrd



def _times_from_4d(image: sitk.Image, n: int) -> Optional[list[float]]:
    if image.HasMetaDataKey("descrip"):
        m = re.search(r"times_s=([-+0-9.eE,]+)", image.GetMetaData("descrip"))
        if m and len(m.group(1).split(",")) == n:
            return [float(v) for v in m.group(1).split(",")]
    dt, t0 = image.GetSpacing()[3], image.GetOrigin()[3]
    if dt > 0 and not np.isclose(dt, 1.0):
        return [t0 + k * dt for k in range(n)]
    return None


def read_4d(path: str | Path, times: Optional[Sequence[Optional[float]]] = None,
            case_id: Optional[str] = None) -> DCEStudy:
    """A 4-D NIfTI/NRRD/MHA file (x, y, z, phase); ``.seq.nrrd`` files go to :func:`read_seq_nrrd`.

    Times: ``times``, else ``times_s=`` in the NIfTI description, else the 4th axis origin and
    spacing when the spacing is not the default 1, else unknown.
    """
    path = Path(path)
    if extension(path) in (".seq.nrrd", ".nrrd", ".nhdr") and _has_list_axis(path):
        return read_seq_nrrd(path, times=times, case_id=case_id)
    image = read_image(path)
    if image.GetDimension() != 4:
        raise BadInputError(f"{path} is {image.GetDimension()}-D, not 4-D (x, y, z, phase). "
                            "Give one 3-D file per phase instead.")
    size = list(image.GetSize())
    n = size[3]
    try:
        phases = [sitk.Extract(image, size[:3] + [0], [0, 0, 0, k]) for k in range(n)]
    except RuntimeError as exc:
        raise BadInputError(f"{path}: cannot split the 4-D image into 3-D phases ({exc}).") from exc
    if times is None:
        times = _times_from_4d(image, n)
    sources = [f"{path}[{k}]" for k in range(n)]
    return DCEStudy.from_images(phases, times=times, case_id=case_id or stem(path), sources=sources,
                                metadata={"format": "4d-" + extension(path).lstrip("."), "source_files": [str(path)]})


def _has_list_axis(path: Path) -> bool:
    header = read_nrrd_header(path)
    if int(header.fields["dimension"]) != 4:
        return False
    return any(k in ("list", "vector") for k in header.list_field("kinds")) \
        or "none" in header.fields.get("space directions", "")


def _index_values(header, axis: int, n: int, unit: str) -> Optional[list[float]]:
    kv = header.keyvalues
    values = kv.get(f"axis {axis} index values")
    if values is not None and kv.get(f"axis {axis} index type", "numeric").strip().lower() == "numeric":
        scale = seconds_per_unit(unit, 1.0)
        try:
            parsed = [float(v) * scale for v in values.split()]
        except ValueError:
            return None
        return parsed if len(parsed) == n else None
    labels = kv.get("MultiVolume.FrameLabels")  # Slicer's older MultiVolume NRRD
    if labels:
        scale = seconds_per_unit(kv.get("MultiVolume.FrameIdentifyingDICOMTagUnits", "s"), 1.0)
        parsed = [float(v) * scale for v in labels.split(",")]
        return parsed if len(parsed) == n else None
    return None


def read_seq_nrrd(path: str | Path, times: Optional[Sequence[Optional[float]]] = None,
                  case_id: Optional[str] = None) -> DCEStudy:
    """A Slicer volume sequence (``.seq.nrrd``): a 4-D NRRD with one ``list`` axis.

    The list axis may be first (older Slicer, MultiVolume) or last (Slicer 5.x); the phase
    times come from ``axis N index values`` (unit from the axis ``units``, seconds by default).
    """
    path = Path(path)
    if not path.exists():
        raise BadInputError(f"{path} does not exist.")
    header, data = read_nrrd(path)
    kinds = [k.lower() for k in header.list_field("kinds")]
    dirs = header.space_directions()
    if data.ndim != 4:
        raise BadInputError(f"{path} is {data.ndim}-D; a volume sequence has 3 spatial axes and one list axis.")
    list_axes = [i for i, (k, d) in enumerate(zip(kinds, dirs)) if d is None or k in ("list", "vector")]
    if len(list_axes) != 1:
        raise BadInputError(f"{path}: expected exactly one list (sequence) axis, found kinds {kinds}.")
    axis = list_axes[0]
    spatial = [i for i in range(4) if i != axis]
    stacked = np.moveaxis(data, 3 - axis, 0)  # numpy axes are the NRRD axes reversed
    vectors = np.array([dirs[i] for i in spatial])  # rows: LPS vector of x, y, z
    spacing = np.linalg.norm(vectors, axis=1)
    direction = (vectors / spacing[:, None]).T  # columns are the axis directions
    units = header.list_field("units") if "units" in header.fields else [""] * 4
    if times is None:
        times = _index_values(header, axis, stacked.shape[0], units[axis] if axis < len(units) else "")
    phases = []
    for k in range(stacked.shape[0]):
        img = sitk.GetImageFromArray(np.ascontiguousarray(stacked[k]).astype(np.float32))
        img.SetSpacing(spacing.tolist())
        img.SetOrigin(header.space_origin().tolist())
        img.SetDirection(direction.flatten().tolist())
        phases.append(img)
    name = stem(path)
    name = name[:-4] if name.lower().endswith(".seq") else name
    return DCEStudy.from_images(phases, times=times, case_id=case_id or name,
                                sources=[f"{path}[{k}]" for k in range(len(phases))],
                                metadata={"format": "seq.nrrd", "source_files": [str(path)]})


def write_4d(study: DCEStudy, path: str | Path, overwrite: bool = False) -> Path:
    """Write a study as one 4-D image (NIfTI/NRRD/MHA); times in the NIfTI description when they fit."""
    arrays = _storage_array(study.arrays())
    phases = []
    for k in range(study.n_phases):
        img = sitk.GetImageFromArray(arrays[k])
        img.CopyInformation(study.reference)
        phases.append(img)
    image = sitk.JoinSeries(phases)
    if all(t is not None for t in study.times):
        note = "times_s=" + ",".join(f"{float(t):g}" for t in study.times)
        if len(note) <= 79 and all(float(f"{float(t):g}") == t for t in study.times):
            image.SetMetaData("ITK_FileNotes", note)
    return write_image(image, path, overwrite=overwrite)


def write_seq_nrrd(study: DCEStudy, path: str | Path, overwrite: bool = False, list_axis: str = "first",
                   index_name: str = "time", index_unit: str = "s") -> Path:
    """Write a study as a Slicer volume sequence (``.seq.nrrd``).

    ``list_axis="first"`` writes the layout every Slicer version reads (``kinds: list domain
    domain domain``, ``axis 0 index values``); ``"last"`` the one Slicer 5.x itself writes.
    Unknown times are written as phase numbers with index type ``text``.
    """
    path = Path(path)
    if not path.name.lower().endswith(".seq.nrrd"):
        raise BadInputError(f"{path}: a volume sequence file must end with .seq.nrrd.")
    data = _storage_array(study.arrays())  # (P, z, y, x): NRRD axes x, y, z, list
    d = np.array(study.direction).reshape(3, 3)
    spatial = [d[:, i] * study.spacing[i] for i in range(3)]
    known = all(t is not None for t in study.times)
    scale = seconds_per_unit(index_unit, 1.0)
    values = " ".join(repr(float(t) / scale) for t in study.times) if known else " ".join(str(k) for k in range(study.n_phases))
    if list_axis == "first":
        data, kinds, dirs, axis = np.ascontiguousarray(np.moveaxis(data, 0, -1)), ["list"] + ["domain"] * 3, \
            [None] + spatial, 0
    elif list_axis == "last":
        kinds, dirs, axis = ["domain"] * 3 + ["list"], spatial + [None], 3
    else:
        raise ValueError(f"list_axis must be 'first' or 'last', not {list_axis!r}")
    labels, units = ["", "", ""], ["", "", ""]
    labels.insert(axis, index_name)
    units.insert(axis, index_unit if known else "")
    keyvalues = {"DataNodeClassName": "vtkMRMLScalarVolumeNode",
                 f"axis {axis} index type": "numeric" if known else "text",
                 f"axis {axis} index values": values}
    with atomic_path(path, overwrite=overwrite) as tmp:
        write_nrrd(tmp, data, kinds, dirs, study.origin, keyvalues, labels=labels, units=units)
    return path
