"""Preprocessing shared by every model: resampling, the papers' normalisations, cropping.

* :func:`resample_spacing` / :func:`resample_study` put an image or a whole study on a
  new voxel spacing (Zhang et al. resample to 1 mm isotropic) keeping origin, direction
  and physical extent; :func:`resample_back` brings a mask or probability map from the
  model grid back onto the study grid.
* :func:`normalize` applies one of the named intensity normalisations in
  :data:`NORMALIZATIONS` (each taken from a source paper, see its docstring).
* :func:`bounding_box`, :func:`crop_to_mask`, :func:`uncrop` cut a volume down to a
  (breast) mask and put a result back; :func:`pad_to_multiple` / :func:`unpad` make
  shapes divisible by a network's down-sampling factor.

Usage::

    from BreastDCESegLib import preprocess
    iso = preprocess.resample_study(study, spacing=(1.0, 1.0, 1.0))
    x = preprocess.normalize(iso.arrays(), "patterns_minmax")       # (P, z, y, x) float32
    crop, slices = preprocess.crop_to_mask(x, breast, margin_vox=4)
    ...                                                             # model on `crop`
    full = preprocess.uncrop(prob_crop, slices, iso.shape)
    prob = preprocess.resample_back(iso.image_like(full, "float32"), study.reference)

Arrays are numpy (z, y, x) or (P, z, y, x); spacings are ITK order (x, y, z).
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence, Union

import numpy as np
import SimpleITK as sitk

from .errors import BadInputError
from .study import DCEStudy, image_like

Slices = tuple[slice, slice, slice]


# ----------------------------------------------------------------------------- resampling
def resampled_size(image: sitk.Image, spacing: Sequence[float]) -> tuple[int, int, int]:
    """Voxel count per axis (x, y, z) that covers ``image``'s extent at ``spacing``."""
    size = np.asarray(image.GetSize(), dtype=float)
    old = np.asarray(image.GetSpacing(), dtype=float)
    new = np.asarray(spacing, dtype=float)
    return tuple(int(max(1, round(n))) for n in size * old / new)


def resample_spacing(image: sitk.Image, spacing: Optional[Sequence[float]] = (1.0, 1.0, 1.0),
                     interpolator: int = sitk.sitkLinear, default_value: float = 0.0) -> sitk.Image:
    """Resample ``image`` to ``spacing`` (mm, x y z) on the same origin, direction and extent.

    The first voxel centre (origin) and the direction cosines are kept; the voxel count
    is ``round(size * old_spacing / spacing)`` so the field of view changes by less than
    one new voxel. ``spacing=None`` returns the image unchanged. Use
    ``sitk.sitkNearestNeighbor`` for label images; the pixel type is kept.
    """
    if spacing is None:
        return image
    spacing = [float(s) for s in spacing]
    if len(spacing) != image.GetDimension() or min(spacing) <= 0:
        raise BadInputError(
            f"Resampling spacing {spacing} must be {image.GetDimension()} positive values in mm (x, y, z).")
    if np.allclose(spacing, image.GetSpacing(), rtol=0, atol=1e-6):
        return image
    return sitk.Resample(image, resampled_size(image, spacing), sitk.Transform(), interpolator,
                         image.GetOrigin(), spacing, image.GetDirection(), default_value, image.GetPixelID())


def resample_study(study: DCEStudy, spacing: Optional[Sequence[float]] = (1.0, 1.0, 1.0),
                   interpolator: int = sitk.sitkLinear) -> DCEStudy:
    """Every phase of ``study`` resampled to ``spacing`` (``None`` keeps the native grid)."""
    if spacing is None or np.allclose(spacing, study.spacing, rtol=0, atol=1e-6):
        return study
    phases = [resample_spacing(p, spacing, interpolator) for p in study.phases]
    metadata = dict(study.metadata)
    metadata["native_spacing"] = list(study.spacing)
    return DCEStudy(phases=phases, times=list(study.times), metadata=metadata, case_id=study.case_id)


def is_axis_aligned(direction: Sequence[float], tol: float = 1e-4) -> bool:
    """True when every image axis runs along a patient axis (axial, sagittal, coronal, flipped)."""
    d = np.abs(np.asarray(direction, dtype=float).reshape(3, 3))
    return bool(np.all((d < tol) | (np.abs(d - 1.0) < tol)) and np.allclose(d.sum(axis=0), 1.0, atol=tol))


def canonical_reference(image: sitk.Image, spacing: Optional[Sequence[float]] = None) -> sitk.Image:
    """An empty LPS-aligned grid (identity direction) that covers ``image``'s physical extent.

    ``spacing`` (mm, along L, P, S) defaults to the image's own spacing carried onto the
    patient axis each image axis is closest to. The grid starts at the low corner of the
    image's bounding box (voxel centres), so an axis-aligned image keeps its voxel centres.
    """
    d = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    native = np.asarray(image.GetSpacing(), dtype=float)
    if spacing is None:
        spacing = np.empty(3)
        for a in range(3):                           # image axis a lies mostly along patient axis m
            spacing[int(np.argmax(np.abs(d[:, a])))] = native[a]
    spacing = np.asarray(spacing, dtype=float)
    size = np.asarray(image.GetSize(), dtype=float)
    corners = np.array([[i, j, k] for i in (0, size[0] - 1) for j in (0, size[1] - 1) for k in (0, size[2] - 1)])
    points = np.asarray(image.GetOrigin(), dtype=float) + (corners * native) @ d.T
    low, high = points.min(axis=0), points.max(axis=0)
    count = [int(max(1, round(n))) for n in (high - low) / spacing + 1]
    reference = sitk.Image(count, sitk.sitkUInt8)
    reference.SetSpacing([float(v) for v in spacing])
    reference.SetOrigin([float(v) for v in low])
    return reference


def canonical_image(image: sitk.Image, spacing: Optional[Sequence[float]] = None,
                    interpolator: int = sitk.sitkLinear) -> sitk.Image:
    """``image`` in the one orientation every network sees: LPS axes (identity direction).

    Axis permutations and flips (sagittal, coronal, reversed axes) are undone exactly with
    ``sitk.DICOMOrient``; an oblique image is resampled onto :func:`canonical_reference`.
    Then ``spacing`` (mm along L, P, S; ``None`` keeps it) is applied.
    """
    if is_axis_aligned(image.GetDirection()):
        oriented = sitk.DICOMOrient(image, "LPS")
        return resample_spacing(oriented, spacing, interpolator)
    reference = canonical_reference(image, spacing)
    return sitk.Resample(image, reference, sitk.Transform(), interpolator, 0.0, image.GetPixelID())


def canonical_study(study: DCEStudy, spacing: Optional[Sequence[float]] = None,
                    interpolator: int = sitk.sitkLinear) -> DCEStudy:
    """Every phase of ``study`` through :func:`canonical_image` (the grid all networks see).

    Results computed on it go back onto the study grid with :func:`resample_back`
    (by physical position), whatever the acquisition's orientation.
    """
    if np.allclose(study.direction, np.eye(3).ravel(), atol=1e-6):
        return resample_study(study, spacing, interpolator)
    phases = [canonical_image(p, spacing, interpolator) for p in study.phases]
    metadata = dict(study.metadata)
    metadata["native_spacing"] = list(study.spacing)
    metadata["native_direction"] = list(study.direction)
    return DCEStudy(phases=phases, times=list(study.times), metadata=metadata, case_id=study.case_id)


def acquired_region(native: sitk.Image, grid: sitk.Image) -> Optional[np.ndarray]:
    """Voxels (z, y, x) of ``grid`` that lie inside the acquired field of view ``native``;
    ``None`` when every voxel does (axis-aligned or permuted acquisitions). Normalisation
    statistics use only these voxels, so the empty corners that an oblique acquisition
    leaves on the canonical grid do not shift them."""
    if is_axis_aligned(native.GetDirection()):
        return None
    ones = sitk.Image(native.GetSize(), sitk.sitkUInt8) + 1
    ones.CopyInformation(native)
    inside = sitk.GetArrayFromImage(sitk.Resample(ones, grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0)) > 0
    return None if inside.all() else inside


def resample_back(image_or_array: Union[sitk.Image, np.ndarray], target_reference: sitk.Image,
                  interpolator: Optional[int] = None, source_reference: Optional[sitk.Image] = None,
                  default_value: float = 0.0) -> sitk.Image:
    """Bring a mask or probability map from the model grid back onto ``target_reference``.

    Args:
        image_or_array: an image on the model grid, or a (z, y, x) array that lies on
            ``source_reference`` (or, without one, already on the target grid).
        target_reference: the study grid (``study.reference``).
        interpolator: default nearest neighbour for integer/bool data (labels) and linear
            for floating-point data (probabilities). A smoother mask comes from resampling
            the probability (linear) and thresholding it on the target grid.
        source_reference: the grid of ``image_or_array`` when it is an array.

    Returns:
        an image on the target grid with the input's pixel type (bool arrays become uint8).
    """
    if isinstance(image_or_array, sitk.Image):
        image = image_or_array
    else:
        array = np.asarray(image_or_array)
        if array.dtype == bool:
            array = array.astype(np.uint8)
        reference = source_reference if source_reference is not None else target_reference
        if array.shape != tuple(reversed(reference.GetSize())):
            raise BadInputError(
                f"Array of shape {array.shape} does not fit the grid of size {reference.GetSize()} (x, y, z); "
                "pass the model grid as source_reference.")
        image = image_like(array, reference)
    if interpolator is None:
        floating = image.GetPixelID() in (sitk.sitkFloat32, sitk.sitkFloat64)
        interpolator = sitk.sitkLinear if floating else sitk.sitkNearestNeighbor
    return sitk.Resample(image, target_reference, sitk.Transform(), interpolator, default_value,
                         image.GetPixelID())


# ----------------------------------------------------------------------------- normalisation
def _reference_values(array: np.ndarray, mask: Optional[np.ndarray]) -> np.ndarray:
    return array[mask] if mask is not None else array.ravel()


def _safe_scale(lo: float, hi: float) -> float:
    return hi - lo if hi - lo > 1e-12 else 1.0


def patterns_minmax(arrays: np.ndarray, mask: Optional[np.ndarray] = None) -> np.ndarray:
    """Zhang et al., Patterns 2023: clip the top 1 %, min-max from the first post-contrast phase.

    The 99th percentile ``hi`` and the minimum ``lo`` of the first post-contrast phase
    (phase 1; phase 0 when only one is given), within ``mask`` if given, define one linear
    map ``(min(x, hi) - lo) / (hi - lo)`` applied to every phase, so the enhancement between
    phases is kept. Values below ``lo`` in other phases map below 0.
    """
    ref = arrays[1] if arrays.shape[0] > 1 else arrays[0]
    values = _reference_values(ref, mask)
    hi, lo = float(np.percentile(values, 99.0)), float(values.min())
    return ((np.minimum(arrays, hi) - lo) / _safe_scale(lo, hi)).astype(np.float32)


def joint_zscore(arrays: np.ndarray, mask: Optional[np.ndarray] = None) -> np.ndarray:
    """Abdikenov & Suvorov (MAMA-MIA generalisation): one z-score over all phases jointly.

    One mean and one standard deviation over the voxels of all given phases (within
    ``mask`` if given), so phases keep their relative intensities. Their model takes the
    pre-contrast and first post-contrast phases; choosing the phases is the caller's job.
    """
    values = arrays[:, mask] if mask is not None else arrays
    mean, std = float(values.mean(dtype=np.float64)), float(values.std(dtype=np.float64))
    return ((arrays - mean) / (std if std > 1e-12 else 1.0)).astype(np.float32)


def per_phase_clip(arrays: np.ndarray, mask: Optional[np.ndarray] = None,
                   lower: float = 0.1, upper: float = 99.9) -> np.ndarray:
    """Per-phase robust min-max, as MONAI's ``ScaleIntensityRangePercentiles(0.1, 99.9, 0, 1, clip=True)``.

    Each phase is clipped to its own 0.1 and 99.9 percentiles (within ``mask`` if given)
    and mapped linearly onto [0, 1]. Source: MONAI's percentile scaling transform, a
    general-purpose scheme rather than one of the five source papers; it removes
    scanner-dependent scaling per phase but also the enhancement ratio between phases.
    """
    out = np.empty(arrays.shape, dtype=np.float32)
    for k, phase in enumerate(arrays):
        lo, hi = (float(v) for v in np.percentile(_reference_values(phase, mask), [lower, upper]))
        out[k] = (np.clip(phase, lo, hi) - lo) / _safe_scale(lo, hi)
    return out


def no_normalization(arrays: np.ndarray, mask: Optional[np.ndarray] = None) -> np.ndarray:
    """No normalisation: the phases as float32 (for models that normalise internally)."""
    return np.array(arrays, dtype=np.float32, copy=True)


NORMALIZATIONS: dict[str, Callable[..., np.ndarray]] = {
    "patterns_minmax": patterns_minmax,
    "joint_zscore": joint_zscore,
    "per_phase_clip": per_phase_clip,
    "none": no_normalization,
}


def normalize(arrays: np.ndarray, scheme: str = "patterns_minmax", mask: Optional[np.ndarray] = None) -> np.ndarray:
    """Normalise (P, z, y, x) phases with a named scheme of :data:`NORMALIZATIONS`.

    Args:
        arrays: phases, pre-contrast first, (P, z, y, x).
        scheme: a key of :data:`NORMALIZATIONS`.
        mask: optional (z, y, x) mask (e.g. the breast) in which statistics are computed;
            the map is applied to every voxel.

    Raises:
        BadInputError: unknown scheme, wrong array shape, or a mask that is empty or of
            another shape.
    """
    if scheme not in NORMALIZATIONS:
        raise BadInputError(f"Unknown normalisation '{scheme}'; valid names: {', '.join(sorted(NORMALIZATIONS))}.")
    arrays = np.asarray(arrays)
    if arrays.ndim != 4 or arrays.shape[0] < 1:
        raise BadInputError(f"normalize expects phases as a (P, z, y, x) array; got shape {arrays.shape}.")
    arrays = arrays.astype(np.float32, copy=False)
    if mask is not None:
        mask = np.asarray(mask).astype(bool)
        if mask.shape != arrays.shape[1:]:
            raise BadInputError(f"Normalisation mask shape {mask.shape} differs from the phases' {arrays.shape[1:]}.")
        if not mask.any():
            raise BadInputError("The normalisation mask is empty; pass mask=None to use the whole volume.")
    return NORMALIZATIONS[scheme](arrays, mask)


# ----------------------------------------------------------------------------- cropping
def bounding_box(mask: np.ndarray) -> Optional[Slices]:
    """Tight (z, y, x) slices around the non-zero voxels of a 3-D mask; ``None`` if empty."""
    mask = np.asarray(mask)
    if mask.ndim != 3:
        raise BadInputError(f"bounding_box expects a (z, y, x) mask; got shape {mask.shape}.")
    where = np.nonzero(mask)
    if where[0].size == 0:
        return None
    return tuple(slice(int(w.min()), int(w.max()) + 1) for w in where)  # type: ignore[return-value]


def _margins(margin_vox: Union[int, Sequence[int]]) -> tuple[int, int, int]:
    if np.isscalar(margin_vox):
        return (int(margin_vox),) * 3  # type: ignore[arg-type]
    m = tuple(int(v) for v in margin_vox)  # type: ignore[union-attr]
    if len(m) != 3:
        raise BadInputError(f"margin_vox must be one integer or three (z, y, x); got {margin_vox}.")
    return m  # type: ignore[return-value]


def crop_to_mask(arrays: np.ndarray, mask: np.ndarray, margin_vox: Union[int, Sequence[int]] = 0
                 ) -> tuple[np.ndarray, Slices]:
    """Crop the last three axes of ``arrays`` to ``mask``'s bounding box plus a margin.

    ``arrays`` is (z, y, x) or (..., z, y, x); the margin (voxels, one value or z y x) is
    clipped at the volume borders. An empty mask keeps the whole volume. Returns the
    cropped view's copy and the (z, y, x) slices for :func:`uncrop`.
    """
    arrays = np.asarray(arrays)
    spatial = arrays.shape[-3:]
    if np.shape(mask) != spatial:
        raise BadInputError(f"Crop mask shape {np.shape(mask)} differs from the volume's {spatial}.")
    box = bounding_box(mask)
    if box is None:
        slices: Slices = tuple(slice(0, n) for n in spatial)  # type: ignore[assignment]
    else:
        slices = tuple(slice(max(0, s.start - m), min(n, s.stop + m))  # type: ignore[assignment]
                       for s, m, n in zip(box, _margins(margin_vox), spatial))
    return arrays[(Ellipsis, *slices)].copy(), slices


def uncrop(cropped: np.ndarray, slices: Slices, shape: Sequence[int], fill: float = 0) -> np.ndarray:
    """Put ``cropped`` back into an array of spatial ``shape`` (z, y, x) filled with ``fill``.

    Leading axes of ``cropped`` (phases, channels) are kept; ``shape`` may include them.
    """
    cropped = np.asarray(cropped)
    shape = tuple(int(n) for n in shape)
    full_shape = cropped.shape[:-3] + shape[-3:]
    expected = tuple(s.stop - s.start for s in slices)
    if cropped.shape[-3:] != expected:
        raise BadInputError(f"Cropped array shape {cropped.shape[-3:]} does not match the crop slices {expected}.")
    out = np.full(full_shape, fill, dtype=cropped.dtype)
    out[(Ellipsis, *slices)] = cropped
    return out


# ----------------------------------------------------------------------------- padding
def pad_to_multiple(array: np.ndarray, multiple: Union[int, Sequence[int]], value: float = 0,
                    min_shape: Optional[Sequence[int]] = None
                    ) -> tuple[np.ndarray, tuple[tuple[int, int], ...]]:
    """Pad the last three axes at both ends to multiples of ``multiple`` (and ``min_shape``).

    Returns the padded array and the (before, after) widths per spatial axis for :func:`unpad`.
    """
    array = np.asarray(array)
    mult = _margins(multiple)
    if min(mult) < 1:
        raise BadInputError(f"pad multiple must be positive; got {multiple}.")
    least = tuple(int(v) for v in min_shape) if min_shape is not None else (1, 1, 1)
    pads = []
    for n, m, lo in zip(array.shape[-3:], mult, least):
        target = int(np.ceil(max(n, lo) / m) * m)
        extra = target - n
        pads.append((extra // 2, extra - extra // 2))
    widths = [(0, 0)] * (array.ndim - 3) + pads
    return np.pad(array, widths, mode="constant", constant_values=value), tuple(pads)


def unpad(array: np.ndarray, pads: Sequence[Sequence[int]]) -> np.ndarray:
    """Undo :func:`pad_to_multiple` on the last three axes."""
    slices = tuple(slice(b, n - a) for (b, a), n in zip(pads, array.shape[-3:]))
    return np.asarray(array)[(Ellipsis, *slices)]
