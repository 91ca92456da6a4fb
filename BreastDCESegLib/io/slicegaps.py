"""DICOM series with missing or unevenly spaced slices.

ITK's series reader puts the slices of a series on an even grid whatever their positions,
so a series with a missing slice is read a slice short, its anatomy shifted and squashed
(ITK only prints a line on stderr). :func:`check_slice_spacing` applies the phase geometry
policy (:mod:`BreastDCESegLib.phase_geometry`) to the slice positions: evenly spaced
series pass; others are refused, or — when resampling is allowed (``--allow-resample``) —
re-sampled by :func:`fill_gaps` onto an even grid at their real positions (linear
interpolation across the gap), with a warning.

Usage::

    warning = check_slice_spacing(positions_mm, "series 'post1' (folder)")   # raises, or None
    image = fill_gaps(image, positions_mm)                                     # with allowed resampling
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import SimpleITK as sitk

from ..errors import BadInputError
from ..phase_geometry import ALLOW_FLAG, resample_allowed

RELATIVE_TOLERANCE = 0.1  # of the usual slice distance
ABSOLUTE_TOLERANCE_MM = 0.01


def uneven(positions: Sequence[float]) -> Optional[tuple[float, float, float]]:
    """(usual step, largest step, position after which it occurs) when slices are unevenly spaced."""
    d = np.diff(np.sort(np.asarray(positions, dtype=float)))
    if d.size < 2:
        return None
    step = float(np.median(d))
    if np.allclose(d, step, rtol=RELATIVE_TOLERANCE, atol=ABSOLUTE_TOLERANCE_MM):
        return None
    worst = int(np.argmax(np.abs(d - step)))
    return step, float(d[worst]), float(np.sort(positions)[worst])


def check_slice_spacing(positions: Sequence[float], where: str) -> Optional[str]:
    """None for evenly spaced slices; a warning when resampling is allowed; else BadInputError."""
    found = uneven(positions)
    if found is None:
        return None
    step, worst, at = found
    what = (f"{where}: slices are not evenly spaced: {worst:.2f} mm between the slices at {at:.2f} and "
            f"{at + worst:.2f} mm along the slice normal where the usual distance is {step:.2f} mm "
            f"({len(positions)} slices; a slice is missing or duplicated)")
    if not resample_allowed():
        raise BadInputError(f"{what}. Export the complete series, or pass {ALLOW_FLAG} to interpolate "
                            "across the gap.")
    return f"{what}; resampled onto an even {step:.2f} mm grid because resampling was allowed ({ALLOW_FLAG})."


def fill_gaps(image: sitk.Image, positions: Sequence[float]) -> sitk.Image:
    """``image`` (slices in ascending ``positions`` order, mm along its third axis) on an even
    grid with the usual slice distance, values interpolated linearly between real slices."""
    positions = np.asarray(positions, dtype=float)
    step = float(np.median(np.diff(positions)))
    n = int(round((positions[-1] - positions[0]) / step)) + 1
    target = positions[0] + step * np.arange(n)
    data = sitk.GetArrayFromImage(image).astype(np.float32)  # (slices, rows, columns)
    upper = np.clip(np.searchsorted(positions, target, side="right"), 1, len(positions) - 1)
    lower = upper - 1
    w = np.clip((target - positions[lower]) / (positions[upper] - positions[lower]), 0.0, 1.0)
    filled = data[lower] * (1.0 - w)[:, None, None] + data[upper] * w[:, None, None]
    out = sitk.GetImageFromArray(filled)
    out.SetOrigin(image.GetOrigin())
    out.SetDirection(image.GetDirection())
    out.SetSpacing((image.GetSpacing()[0], image.GetSpacing()[1], step))
    return out
