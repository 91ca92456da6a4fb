"""The phase geometry policy: when may a phase be resampled onto the pre-contrast grid?

The phases of one DCE acquisition share one voxel grid. A phase that does not is either
the same field of view sampled differently (another matrix or spacing: harmless to
resample) or a misregistered phase or a phase of another acquisition (a shifted, rotated
or rescaled field of view: resampling it silently moves the enhancement, and every
kinetic measure with it). :func:`check_phase_grid` decides:

==========================================================  ==========================================
the phase's grid against the pre-contrast grid               outcome
==========================================================  ==========================================
same grid (size, spacing, origin, direction within 1e-3)     accepted as is
same field of view: centre within 1 voxel, extent within     resampled, with a warning in the report
1 voxel per axis, axes within 1° (up to axis order/flips)
anything else (shift, rotation, spacing or extent change)    refused (:class:`BadInputError`), unless
                                                             resampling is allowed (``--allow-resample``,
                                                             :func:`resampling_allowed`): then resampled
                                                             with a warning
==========================================================  ==========================================

"1 voxel" is the larger voxel of the two grids along that axis. DICOM series with missing
or unevenly spaced slices fall under the same rule (:mod:`BreastDCESegLib.io.slicegaps`).

Usage::

    from BreastDCESegLib.phase_geometry import compare_grids, resampling_allowed
    compare_grids(post, pre).describe()          # 'shift 20.0 mm (13.3 voxels), rotation 0.0°, ...'
    with resampling_allowed():                   # the command line's --allow-resample
        study = read_study("misregistered/")     # accepted; study.metadata["warnings"] says so
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
from dataclasses import dataclass
from typing import Iterator, Optional

import numpy as np
import SimpleITK as sitk

from .errors import BadInputError

SHIFT_TOLERANCE_VOXELS = 1.0
ROTATION_TOLERANCE_DEG = 1.0
ALLOW_FLAG = "--allow-resample"
_allow: contextvars.ContextVar[bool] = contextvars.ContextVar("breastdceseg_allow_resample", default=False)


@contextlib.contextmanager
def resampling_allowed(allow: bool = True) -> Iterator[None]:
    """Within the block, phases off the pre-contrast field of view are resampled (with a
    warning) instead of refused. Readers need no extra argument."""
    token = _allow.set(bool(allow))
    try:
        yield
    finally:
        _allow.reset(token)


def resample_allowed() -> bool:
    """True inside :func:`resampling_allowed`."""
    return _allow.get()


@dataclass
class GridDifference:
    """How a phase's grid differs from the reference grid (shift/extent in mm and in voxels)."""

    shift_mm: float
    shift_voxels: float
    extent_mm: float
    extent_voxels: float
    rotation_deg: float
    spacing: tuple[float, ...]
    reference_spacing: tuple[float, ...]
    size: tuple[int, ...]
    reference_size: tuple[int, ...]

    @property
    def same_field_of_view(self) -> bool:
        return (self.shift_voxels <= SHIFT_TOLERANCE_VOXELS and self.extent_voxels <= SHIFT_TOLERANCE_VOXELS
                and self.rotation_deg <= ROTATION_TOLERANCE_DEG)

    def describe(self) -> str:
        """What differs, e.g. 'centre shifted 20.0 mm (5.6 voxels), axes rotated 17.0°'."""
        parts = []
        if self.shift_voxels > 0.01:
            parts.append(f"centre shifted {self.shift_mm:.1f} mm ({self.shift_voxels:.1f} voxels)")
        if self.extent_voxels > 0.01:
            parts.append(f"field of view differs by up to {self.extent_mm:.1f} mm ({self.extent_voxels:.1f} voxels)")
        if self.rotation_deg > 0.01:
            parts.append(f"axes rotated {self.rotation_deg:.1f}°")
        if not np.allclose(self.spacing, self.reference_spacing, atol=1e-3):
            parts.append(f"spacing {_fmt(self.spacing)} vs {_fmt(self.reference_spacing)} mm")
        if self.size != self.reference_size:
            parts.append(f"size {'x'.join(map(str, self.size))} vs {'x'.join(map(str, self.reference_size))}")
        return ", ".join(parts) or "sub-voxel differences"


def _fmt(values) -> str:
    return "(" + ", ".join(f"{v:g}" for v in np.round(values, 3)) + ")"


def _signed_permutations() -> list[np.ndarray]:
    out = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1, -1), repeat=3):
            p = np.zeros((3, 3))
            for col, (row, sign) in enumerate(zip(perm, signs)):
                p[row, col] = sign
            out.append(p)
    return out


_PERMUTATIONS = _signed_permutations()


def compare_grids(moving: sitk.Image, reference: sitk.Image) -> GridDifference:
    """Centre shift, field-of-view extent difference and rotation between two 3-D grids.

    Axis order and flips do not count as rotation (a sagittal and an axial grid over the
    same box are the same field of view).
    """
    dm = np.array(moving.GetDirection(), dtype=float).reshape(3, 3)
    dr = np.array(reference.GetDirection(), dtype=float).reshape(3, 3)
    em = np.array(moving.GetSize(), float) * np.array(moving.GetSpacing(), float)
    er = np.array(reference.GetSize(), float) * np.array(reference.GetSpacing(), float)
    best_angle, best_p = 180.0, np.eye(3)
    for p in _PERMUTATIONS:
        r = (dm @ p) @ dr.T
        angle = float(np.degrees(np.arccos(np.clip((np.trace(r) - 1.0) / 2.0, -1.0, 1.0))))
        if angle < best_angle - 1e-9:
            best_angle, best_p = angle, p
    perm = np.abs(best_p)
    extent_m = perm.T @ em                                     # moving extent along the reference axes
    spacing_m = perm.T @ np.array(moving.GetSpacing(), float)
    voxel = np.maximum(np.array(reference.GetSpacing(), float), spacing_m)  # the larger voxel per axis
    centre = lambda img: np.array(img.TransformContinuousIndexToPhysicalPoint(  # noqa: E731
        [(n - 1) / 2.0 for n in img.GetSize()]))
    shift = dr.T @ (centre(moving) - centre(reference))       # along the reference axes, mm
    extent = np.abs(extent_m - er)
    return GridDifference(
        shift_mm=float(np.linalg.norm(shift)), shift_voxels=float(np.max(np.abs(shift) / voxel)),
        extent_mm=float(np.max(extent)), extent_voxels=float(np.max(extent / voxel)), rotation_deg=best_angle,
        spacing=tuple(float(s) for s in moving.GetSpacing()),
        reference_spacing=tuple(float(s) for s in reference.GetSpacing()),
        size=tuple(int(s) for s in moving.GetSize()), reference_size=tuple(int(s) for s in reference.GetSize()))


def check_phase_grid(moving: sitk.Image, reference: sitk.Image, name: str, reference_name: str,
                     allow_resample: Optional[bool] = None) -> str:
    """The warning to report when ``moving`` (not on the reference grid) is resampled onto it.

    Raises:
        BadInputError: the phase is off the pre-contrast field of view beyond the tolerance
            and resampling is not allowed.
    """
    allow = resample_allowed() if allow_resample is None else allow_resample
    diff = compare_grids(moving, reference)
    if diff.same_field_of_view:
        return (f"{name} is on another grid than {reference_name} over the same field of view "
                f"({diff.describe()}); it was resampled onto the pre-contrast grid.")
    if not allow:
        raise BadInputError(
            f"{name} is not aligned with {reference_name}: {diff.describe()} (tolerance "
            f"{SHIFT_TOLERANCE_VOXELS:g} voxel / {ROTATION_TOLERANCE_DEG:g}°). The phases look misregistered or "
            f"from another acquisition, and resampling them would move the enhancement. Register the phases "
            f"first, or pass {ALLOW_FLAG} to resample them onto the pre-contrast grid anyway.")
    return (f"{name} is not aligned with {reference_name} ({diff.describe()}); it was resampled onto the "
            f"pre-contrast grid because resampling was allowed ({ALLOW_FLAG}). Check the registration: "
            "volumes and kinetics may be wrong.")
