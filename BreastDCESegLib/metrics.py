"""Overlap and surface metrics between a predicted and a reference tumor mask.

Overlap: :func:`dice`, :func:`jaccard`, :func:`sensitivity` (recall), :func:`precision`,
:func:`relative_volume_difference`. Surface: :func:`hd95` (95th-percentile symmetric
Hausdorff distance) and :func:`average_surface_distance` (symmetric mean), both in mm
with the physical voxel spacing. :func:`evaluate` returns all of them as a JSON-ready dict
(the measures MAMA-MIA studies report: Dice, precision, recall, volume, plus HD95).

Usage::

    from BreastDCESegLib import metrics
    scores = metrics.evaluate(pred, truth, spacing=(0.7, 0.7, 1.5))  # numpy (z, y, x), spacing x y z
    scores = metrics.evaluate(pred_image, truth_image)               # sitk images: spacing from the image
    metrics.hd95(pred, truth, spacing, backend="monai")              # cross-check with MONAI

Inputs are numpy arrays (z, y, x) (any non-zero voxel is foreground) with spacing in
ITK order (x, y, z), or SimpleITK images (spacing read from the prediction image).

Surface distances follow MONAI's definition: the surface of a mask is its voxels with a
face-neighbour (6-connectivity) outside the mask; for every surface voxel of one mask the
Euclidean distance (mm) to the nearest surface voxel centre of the other is taken; HD95 is
the larger of the two directed 95th percentiles, the average surface distance is the mean
of both directions' distances pooled. The default backend is SimpleITK
(``BinaryContour`` + ``SignedMaurerDistanceMap``) and needs no torch; ``backend="monai"``
calls ``monai.metrics`` (imported only then) and agrees to rounding.

Empty-mask conventions (``P`` prediction, ``T`` truth):

============================  ==========  ==========  ============  ============  ============
case                           Dice/Jacc.  sensitivity precision     HD95 / ASD    rel. volume
============================  ==========  ==========  ============  ============  ============
both empty                     1.0         1.0         1.0           0.0           0.0
P empty, T not                 0.0         0.0         NaN           inf           -1.0
T empty, P not                 0.0         NaN         0.0           inf           inf
============================  ==========  ==========  ============  ============  ============

The single-metric functions return floats (``NaN`` = undefined, ``inf`` = a distance to
nothing); :func:`evaluate` turns NaN and infinities into ``None`` so its result is strict
JSON.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Optional, Sequence, Union

import numpy as np
import SimpleITK as sitk

from .errors import BadInputError

MaskLike = Union[np.ndarray, sitk.Image]


# ----------------------------------------------------------------------------- inputs
def _as_pair(a: MaskLike, b: MaskLike, spacing: Optional[Sequence[float]], need_spacing: bool = True
             ) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """Boolean (z, y, x) arrays of both masks and the spacing (x, y, z).

    ``spacing=None`` takes the spacing of the first SimpleITK image among the inputs.
    """
    if spacing is None:
        source = a if isinstance(a, sitk.Image) else b if isinstance(b, sitk.Image) else None
        if source is None and need_spacing:
            raise BadInputError("Distance and volume metrics on numpy masks need the voxel spacing (x, y, z) in mm.")
        spacing = source.GetSpacing() if source is not None else (1.0, 1.0, 1.0)
    arrays = []
    for m in (a, b):
        arr = sitk.GetArrayViewFromImage(m) if isinstance(m, sitk.Image) else np.asarray(m)
        arrays.append(arr != 0)
    if arrays[0].shape != arrays[1].shape:
        raise BadInputError(f"Prediction shape {arrays[0].shape} differs from the reference's {arrays[1].shape}; "
                            "resample the prediction onto the reference grid first.")
    if arrays[0].ndim != 3:
        raise BadInputError(f"Masks must be 3-D (z, y, x); got shape {arrays[0].shape}.")
    spacing = tuple(float(s) for s in spacing)
    if len(spacing) != 3 or min(spacing) <= 0:
        raise BadInputError(f"Spacing must be three positive values in mm (x, y, z); got {spacing}.")
    return arrays[0], arrays[1], spacing  # type: ignore[return-value]


def _ratio(num: float, den: float, both_empty: bool) -> float:
    if den == 0:
        return 1.0 if both_empty else math.nan
    return float(num) / float(den)


def _counts(a: np.ndarray, b: np.ndarray) -> tuple[int, int, int]:
    """(true positives, |a|, |b|)."""
    return int(np.count_nonzero(a & b)), int(np.count_nonzero(a)), int(np.count_nonzero(b))


# ----------------------------------------------------------------------------- overlap
def dice(pred: MaskLike, truth: MaskLike, spacing: Optional[Sequence[float]] = None) -> float:
    """Dice coefficient ``2|P∩T| / (|P|+|T|)``; 1.0 when both are empty."""
    p, t, _ = _as_pair(pred, truth, spacing, need_spacing=False)
    tp, np_, nt = _counts(p, t)
    return 1.0 if np_ + nt == 0 else 2.0 * tp / (np_ + nt)


def jaccard(pred: MaskLike, truth: MaskLike, spacing: Optional[Sequence[float]] = None) -> float:
    """Jaccard index (IoU) ``|P∩T| / |P∪T|``; 1.0 when both are empty."""
    p, t, _ = _as_pair(pred, truth, spacing, need_spacing=False)
    tp, np_, nt = _counts(p, t)
    union = np_ + nt - tp
    return 1.0 if union == 0 else tp / union


def sensitivity(pred: MaskLike, truth: MaskLike, spacing: Optional[Sequence[float]] = None) -> float:
    """Sensitivity (recall) ``|P∩T| / |T|``; NaN when only the truth is empty."""
    p, t, _ = _as_pair(pred, truth, spacing, need_spacing=False)
    tp, np_, nt = _counts(p, t)
    return _ratio(tp, nt, both_empty=np_ == 0)


recall = sensitivity


def precision(pred: MaskLike, truth: MaskLike, spacing: Optional[Sequence[float]] = None) -> float:
    """Precision (positive predictive value) ``|P∩T| / |P|``; NaN when only the prediction is empty."""
    p, t, _ = _as_pair(pred, truth, spacing, need_spacing=False)
    tp, np_, nt = _counts(p, t)
    return _ratio(tp, np_, both_empty=nt == 0)


def relative_volume_difference(pred: MaskLike, truth: MaskLike,
                               spacing: Optional[Sequence[float]] = None) -> float:
    """``(V_P - V_T) / V_T`` (signed; 0.25 = 25 % too large); inf when only the truth is empty."""
    p, t, _ = _as_pair(pred, truth, spacing, need_spacing=False)
    _, np_, nt = _counts(p, t)
    if nt == 0:
        return 0.0 if np_ == 0 else math.inf
    return (np_ - nt) / nt


# ----------------------------------------------------------------------------- surfaces
def _image(mask: np.ndarray, spacing: tuple[float, float, float]) -> sitk.Image:
    """uint8 image of ``mask`` padded by one voxel, so surfaces at the array border close."""
    image = sitk.GetImageFromArray(np.pad(mask, 1).astype(np.uint8))
    image.SetSpacing(spacing)
    return image


def _surface_and_distance(mask: np.ndarray, spacing: tuple[float, float, float]
                          ) -> tuple[np.ndarray, np.ndarray]:
    """The surface voxels of ``mask`` and the distance (mm) of every voxel to that surface."""
    contour = sitk.BinaryContour(_image(mask, spacing), fullyConnected=False, backgroundValue=0, foregroundValue=1)
    distance = sitk.SignedMaurerDistanceMap(contour, insideIsPositive=False, squaredDistance=False,
                                            useImageSpacing=True)
    return sitk.GetArrayFromImage(contour).astype(bool), np.maximum(sitk.GetArrayFromImage(distance), 0.0)


def surface_distances(pred: MaskLike, truth: MaskLike, spacing: Optional[Sequence[float]] = None
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Directed surface distances in mm: (prediction surface → truth, truth surface → prediction).

    Both masks must be non-empty (see the module docstring for the empty cases).
    """
    p, t, sp = _as_pair(pred, truth, spacing)
    if not p.any() or not t.any():
        raise BadInputError("Surface distances need two non-empty masks.")
    box = tuple(slice(int(w.min()), int(w.max()) + 1) for w in np.nonzero(p | t))
    p, t = p[box], t[box]  # surfaces lie inside the union's box: distances there are exact
    surf_p, dist_p = _surface_and_distance(p, sp)
    surf_t, dist_t = _surface_and_distance(t, sp)
    return dist_t[surf_p].astype(np.float64), dist_p[surf_t].astype(np.float64)


def _empty_distance(p: np.ndarray, t: np.ndarray) -> Optional[float]:
    """0.0 / inf for the empty cases, None when both masks have voxels."""
    has_p, has_t = bool(p.any()), bool(t.any())
    if has_p and has_t:
        return None
    return 0.0 if has_p == has_t else math.inf


def _monai_distance(p: np.ndarray, t: np.ndarray, sp: tuple[float, float, float], which: str) -> float:
    try:
        from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance
    except ImportError as exc:  # pragma: no cover - depends on the environment
        from .errors import MissingDependencyError
        raise MissingDependencyError("backend='monai' needs MONAI and torch; use the default 'sitk' backend.") from exc
    y_pred, y = p[None, None].astype(np.float32), t[None, None].astype(np.float32)
    zyx = tuple(reversed(sp))
    with warnings.catch_warnings():  # MONAI's own use of its deprecated edge options
        warnings.simplefilter("ignore", FutureWarning)
        if which == "hd95":
            value = compute_hausdorff_distance(y_pred, y, include_background=True, percentile=95, spacing=zyx)
        else:
            value = compute_average_surface_distance(y_pred, y, include_background=True, symmetric=True,
                                                     spacing=zyx)
    return float(value.reshape(-1)[0])


def _reduce(d_pt: np.ndarray, d_tp: np.ndarray, which: str) -> float:
    """Symmetric HD95 (``"hd95"``) or average surface distance (``"asd"``) from both directions."""
    if which == "hd95":
        return float(max(np.percentile(d_pt, 95), np.percentile(d_tp, 95)))
    return float(np.concatenate([d_pt, d_tp]).mean())


def _surface_metric(pred: MaskLike, truth: MaskLike, spacing: Optional[Sequence[float]], backend: str,
                    which: str) -> float:
    p, t, sp = _as_pair(pred, truth, spacing)
    empty = _empty_distance(p, t)
    if empty is not None:
        return empty
    if backend == "monai":
        return _monai_distance(p, t, sp, which)
    return _reduce(*surface_distances(p, t, sp), which)


def hd95(pred: MaskLike, truth: MaskLike, spacing: Optional[Sequence[float]] = None,
         backend: str = "sitk") -> float:
    """95th-percentile symmetric Hausdorff distance in mm (0.0 both empty, inf one empty)."""
    return _surface_metric(pred, truth, spacing, backend, "hd95")


def average_surface_distance(pred: MaskLike, truth: MaskLike, spacing: Optional[Sequence[float]] = None,
                             backend: str = "sitk") -> float:
    """Symmetric average surface distance in mm (0.0 both empty, inf one empty)."""
    return _surface_metric(pred, truth, spacing, backend, "asd")


# ----------------------------------------------------------------------------- all at once
def _json_number(value: float, digits: int = 6) -> Optional[float]:
    value = float(value)
    return round(value, digits) if math.isfinite(value) else None


def evaluate(pred: MaskLike, truth: MaskLike, spacing: Optional[Sequence[float]] = None) -> dict[str, Any]:
    """Every metric at once, JSON-ready (undefined values and infinities become ``None``).

    Keys: ``dice``, ``jaccard``, ``sensitivity``, ``precision``, ``hd95_mm``, ``asd_mm``,
    ``relative_volume_difference``, ``volume_pred_ml``, ``volume_truth_ml``.
    """
    p, t, sp = _as_pair(pred, truth, spacing)
    tp, np_, nt = _counts(p, t)
    voxel_ml = float(np.prod(sp)) / 1000.0
    empty = _empty_distance(p, t)
    if empty is None:
        d_pt, d_tp = surface_distances(p, t, sp)
        hd, asd = _reduce(d_pt, d_tp, "hd95"), _reduce(d_pt, d_tp, "asd")
    else:
        hd = asd = empty
    return {
        "dice": _json_number(1.0 if np_ + nt == 0 else 2.0 * tp / (np_ + nt)),
        "jaccard": _json_number(1.0 if np_ + nt - tp == 0 else tp / (np_ + nt - tp)),
        "sensitivity": _json_number(_ratio(tp, nt, both_empty=np_ == 0)),
        "precision": _json_number(_ratio(tp, np_, both_empty=nt == 0)),
        "hd95_mm": _json_number(hd, 4),
        "asd_mm": _json_number(asd, 4),
        "relative_volume_difference": _json_number(relative_volume_difference(p, t, sp)),
        "volume_pred_ml": round(np_ * voxel_ml, 6),
        "volume_truth_ml": round(nt * voxel_ml, 6),
    }
