"""Enhanced (multi-frame) MR DICOM: one file holding every slice, often every phase.

Each frame is turned into a flat per-frame header (file attributes, then TemporalPositionIndex,
FrameAcquisitionDateTime and the trigger delay under their classic names, then the shared
and per-frame functional groups), so the classic reader can split and order the
frames like single-frame images. Pixels come from pydicom (frames selected and stacked in
slice order, rescale applied).

Usage::

    from BreastDCESegLib.io.dicomenhanced import is_multiframe, frame_headers
    if is_multiframe(ds):
        headers = frame_headers(ds)      # one pydicom Dataset per frame
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.dataset import Dataset

from ..errors import BadInputError

# classic keyword <- (functional group sequence, attribute) used when the classic one is absent
_ALIASES = {
    "TemporalPositionIdentifier": ("FrameContentSequence", "TemporalPositionIndex"),
    "AcquisitionDateTime": ("FrameContentSequence", "FrameAcquisitionDateTime"),
    "TriggerTime": ("CardiacSynchronizationSequence", "NominalCardiacTriggerDelayTime"),
    "AcquisitionNumber": ("FrameContentSequence", "FrameAcquisitionNumber"),
}
_SKIP = {"PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence", "PixelData"}


def is_multiframe(ds: Any) -> bool:
    """True for a multi-frame image with functional groups (Enhanced / Legacy Converted MR)."""
    return "PerFrameFunctionalGroupsSequence" in ds and int(getattr(ds, "NumberOfFrames", 1) or 1) > 1


def _merge_groups(target: Dataset, groups: Any) -> None:
    """Copy the attributes of each functional group (and converted-attribute sequence) into ``target``."""
    for group in groups:
        for elem in group:
            if elem.VR == "SQ" and elem.value:
                for inner in elem.value[0]:
                    target[inner.tag] = inner


def frame_headers(ds: Any) -> list[Dataset]:
    """A flat classic-style header per frame (see the module docstring)."""
    base = Dataset()
    for elem in ds:
        if elem.keyword not in _SKIP:
            base[elem.tag] = elem
    shared = getattr(ds, "SharedFunctionalGroupsSequence", [])
    headers = []
    for frame in ds.PerFrameFunctionalGroupsSequence:
        flat = Dataset()
        flat.update(base)
        for keyword, (group, attr) in _ALIASES.items():  # per-frame values beat file-level ones
            for source in (frame, *shared):
                items = getattr(source, group, None)
                if items and attr in items[0]:
                    if keyword in flat:
                        del flat[keyword]  # the element object is shared with the file header: replace it
                    setattr(flat, keyword, items[0][attr].value)
                    break
        _merge_groups(flat, shared)
        _merge_groups(flat, [frame])
        headers.append(flat)
    return headers


def read_frames(paths: Sequence[Path], frames: Sequence[int], headers: Sequence[Any],
                cache: Optional[dict[Path, np.ndarray]] = None) -> sitk.Image:
    """Stack the given frames (in slice order) into a 3-D image with the frames' geometry.

    ``cache`` keeps decoded pixel arrays per file between calls (one file, several phases).
    """
    cache = {} if cache is None else cache
    planes = []
    for path, index, header in zip(paths, frames, headers):
        if path not in cache:
            try:
                cache[path] = pydicom.dcmread(path).pixel_array
            except Exception as exc:
                raise BadInputError(f"{path}: the multi-frame pixel data cannot be read ({exc}); "
                                    "the file is damaged or truncated.") from exc
        slope = float(getattr(header, "RescaleSlope", 1.0) or 1.0)
        intercept = float(getattr(header, "RescaleIntercept", 0.0) or 0.0)
        planes.append(cache[path][index].astype(np.float32) * slope + intercept)
    first, last = headers[0], headers[-1]
    iop = np.array([float(v) for v in first.ImageOrientationPatient])
    normal = np.cross(iop[:3], iop[3:])
    p0 = np.array([float(v) for v in first.ImagePositionPatient])
    p1 = np.array([float(v) for v in last.ImagePositionPatient])
    dz = float(np.dot(p1 - p0, normal)) / max(len(planes) - 1, 1)
    row_spacing, col_spacing = (float(v) for v in first.PixelSpacing)
    image = sitk.GetImageFromArray(np.stack(planes))
    image.SetSpacing((col_spacing, row_spacing, dz if dz > 0 else float(getattr(first, "SliceThickness", 1.0))))
    image.SetOrigin(p0.tolist())
    image.SetDirection(np.column_stack([iop[:3], iop[3:], normal]).flatten().tolist())
    return image
