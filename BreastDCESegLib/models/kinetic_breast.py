"""Whole-breast mask of the kinetic method, from the pre-contrast phase alone.

Body = Otsu threshold of the log signal; air = background connected to the anterior face
of the volume, everything else dark and enclosed is lung; the chest wall is a quadratic
surface fitted (robustly, outliers behind the heart rejected) to the anterior edge of the
lungs; the breast is the body anterior of that surface minus a muscle/rib margin, minus
the skin.

Usage::

    from BreastDCESegLib.models.kinetic_breast import breast_mask
    mask = breast_mask(study)          # bool (z, y, x)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import numpy as np
from scipy import ndimage

from ..morphology import binary_morphology
from ..study import DCEStudy

if TYPE_CHECKING:
    from .kinetic import KineticParams


# ----------------------------------------------------------------------------- helpers
def _axes(study: DCEStudy) -> dict[str, tuple[int, int]]:
    """numpy axis and sign (+1: index grows towards L / P / S) of each patient axis."""
    d = np.array(study.direction).reshape(3, 3)
    out = {}
    for a in range(3):
        m = int(np.argmax(np.abs(d[:, a])))
        out["LPS"[m]] = (2 - a, 1 if d[m, a] > 0 else -1)
    return out


LOG_OFFSET_FRACTION = 1.0 / 500.0  # the body threshold's log offset, a share of the signal's 99th percentile: 1, as
                                   # log1p had it, at the phantoms' typical 500 (their range: 180-2500)


def _otsu_log(values: np.ndarray) -> float:
    """Otsu threshold of ``log(signal + offset)``, the offset ``LOG_OFFSET_FRACTION`` of the positive signal's
    99th percentile: the threshold scales with the signal, so a study stored as 0-1 floats, 12-bit integers or
    scaled by a vendor's gain gets the same body (a fixed offset, ``log1p``, read 0-1 floats as linear)."""
    v = np.maximum(values, 0)
    positive = v[v > 0]
    offset = LOG_OFFSET_FRACTION * float(np.percentile(positive, 99)) if positive.size else 1.0
    v = np.log(v + offset)
    hist, edges = np.histogram(v, bins=256)
    centers = 0.5 * (edges[1:] + edges[:-1])
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centers)
    mu0 = m0 / np.maximum(w0, 1)
    mu1 = (m0[-1] - m0) / np.maximum(w1, 1)
    k = int(np.argmax(w0 * w1 * (mu0 - mu1) ** 2))
    return float(np.exp(centers[k]) - offset)


def _to_ap_last(arr: np.ndarray, ap_axis: int, ap_sign: int) -> np.ndarray:
    """View with the anterior-posterior axis last, index 0 most anterior."""
    out = np.moveaxis(arr, ap_axis, -1)
    return out if ap_sign > 0 else out[..., ::-1]


def _from_ap_last(arr: np.ndarray, ap_axis: int, ap_sign: int) -> np.ndarray:
    arr = arr if ap_sign > 0 else arr[..., ::-1]
    return np.moveaxis(arr, -1, ap_axis)


def _chest_surface(lung_ap: np.ndarray, spacing_ap: float, tol_mm: float = 8.0, start_percentile: float = 40.0
                   ) -> Optional[np.ndarray]:
    """Robust quadratic surface (in the two other axes) through the lungs' anterior edge, in voxels.

    The fit starts from the most anterior ``start_percentile`` % of the edge in each row (first
    axis), then keeps the points no deeper than ``tol_mm`` behind the fit. Behind the heart the
    lung's edge lies deep; started from every point, the quadratic bent into the heart where it
    fills one side of a unilateral field of view (two-phase profile: the heart in the breast mask
    in 7 of 20 tuning studies, none after)."""
    has = lung_ap.any(-1)
    if has.sum() < 20:
        return None
    front = np.argmax(lung_ap, axis=-1).astype(float)
    i, j = np.nonzero(has)
    step = max(1, int(np.sqrt(i.size / 4000)))
    i, j = i[::step], j[::step]
    y = front[i, j]
    u, v = i / max(1, has.shape[0]), j / max(1, has.shape[1])
    design = np.stack([np.ones_like(u), u, v, u * u, v * v, u * v], 1)
    keep = np.ones(y.size, bool)
    for row in np.unique(i):
        at = i == row
        keep[at] = y[at] <= np.percentile(y[at], start_percentile)
    for _ in range(4):
        coef, *_ = np.linalg.lstsq(design[keep], y[keep], rcond=None)
        resid = y - design @ coef
        keep = resid < tol_mm / spacing_ap  # deeper than the fit: lung behind the heart
        if keep.sum() < 10:
            return None
    uu, vv = np.meshgrid(np.arange(has.shape[0]) / max(1, has.shape[0]), np.arange(has.shape[1]) / max(1, has.shape[1]),
                         indexing="ij")
    return coef[0] + coef[1] * uu + coef[2] * vv + coef[3] * uu ** 2 + coef[4] * vv ** 2 + coef[5] * uu * vv


# ----------------------------------------------------------------------------- breast
def breast_mask(study: DCEStudy, params: Optional["KineticParams"] = None) -> np.ndarray:
    """Whole-breast mask (bool, z y x) from the pre-contrast phase; skin and chest wall removed."""
    if params is None:
        from .kinetic import KineticParams

        params = KineticParams()
    p = params
    sp = study.spacing
    pre = ndimage.gaussian_filter(study.array(0), 1.0)
    thr = _otsu_log(pre[:: 2, :: 2, :: 2])
    body = pre > thr
    ap_axis, ap_sign = _axes(study)["P"]
    body_ap = _to_ap_last(body, ap_axis, ap_sign)
    labels, _n = ndimage.label(~body_ap)
    air_ids = np.unique(labels[..., 0])
    air = np.isin(labels, air_ids[air_ids > 0])
    enclosed = ~body_ap & ~air
    sizes = np.bincount(labels[enclosed].ravel(), minlength=labels.max() + 1) * study.voxel_volume_mm3 / 1000.0
    lung = enclosed & (sizes[labels] >= p.min_lung_ml)
    filled = ~air
    spacing_ap = sp[2 - ap_axis]
    surface = _chest_surface(lung, spacing_ap)
    if surface is not None:
        cut = surface - p.chest_margin_mm / spacing_ap
        idx = np.arange(body_ap.shape[-1])
        filled &= idx[None, None, :] < cut[..., None]
    mask = _from_ap_last(filled, ap_axis, ap_sign) & ~_from_ap_last(lung, ap_axis, ap_sign)
    mask = binary_morphology(mask, sp, p.skin_mm, "erode")
    lab, n = ndimage.label(mask)
    if n > 1:
        sizes = np.bincount(lab.ravel())[1:]
        keep = np.concatenate([[False], sizes >= 0.1 * sizes.max()])
        mask = keep[lab]
    return mask
