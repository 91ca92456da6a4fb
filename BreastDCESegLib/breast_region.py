"""The whole-breast mask a tumor network's probability is masked with (step 2 of
:mod:`.inference`): the registry's breast model on its own grid, mapped onto the tumor
network's grid, or, when that model has no weights or finds nothing, the intensity-based
:func:`models.kinetic.breast_mask`.

The breast model's masks are remembered in-process for the last few inputs (``REMEMBERED``),
keyed by the model (id, weights), the device and options that change its output, the exact
arrays it reads and both grids: a second run on the same study (another tumor network, other
tumor options, the panel's re-run) does not run the breast model again, and any change to the
study or the model runs it afresh. A custom ``predictor`` (the instrumenting seam) always runs.

Usage::

    from BreastDCESegLib import breast_region
    mask = breast_region.on_grid(study, spec, registry, grid, device, opts, cache, stages, warnings, predictor)
    breast_region.clear()              # forget the remembered masks
    region = breast_region.widen_mask(mask, grid.spacing, 8.0)   # holes filled, 8 mm wider
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from .remembered import Remembered, digest, geometry
from .study import DCEStudy

REMEMBERED = 4  # breast masks kept for re-runs on the same study
_MASKS = Remembered(REMEMBERED)


def clear() -> None:
    """Forget the remembered breast masks."""
    _MASKS.clear()


def _key(bspec, device: str, opts: dict, arrays: np.ndarray, source, target) -> tuple:
    return (bspec.id, bspec.sha256, str(bspec.weights), str(device), bool(opts["amp"]), bspec.overlap,
            bspec.threshold, digest([arrays]), geometry(source), geometry(target))


def _network_mask(study: DCEStudy, bspec, grid: DCEStudy, device: str, opts: dict, cache: dict, stages,
                  warnings: list[str], predictor) -> np.ndarray:
    """The breast model's mask (bool, z y x) on ``grid``, remembered unless a ``predictor`` is given."""
    from .inference import _on_grid, _prepared, run_with_retries, sliding_window_probability

    bgrid, barrays = _prepared(study, bspec, cache)
    key = _key(bspec, device, opts, barrays, bgrid.reference, grid.reference) if predictor is None else None
    remembered = _MASKS.recall(key)
    if remembered is not None:
        stages.report(1.0, "breast mask of this study remembered from an earlier run")
        return remembered
    prob, _ = run_with_retries(
        lambda d, b: sliding_window_probability(bspec, barrays, d, b, bspec.overlap or 0.25, stages.report,
                                                opts["amp"], predictor),
        device, opts["sw_batch_size"], warnings)
    mask = _on_grid(prob >= bspec.threshold, bgrid.reference, grid.reference)
    _MASKS.remember(key, mask)
    return mask


def widen_mask(mask: np.ndarray, spacing, margin_mm: float) -> np.ndarray:
    """Fill the holes of a (z, y, x) ``mask`` and dilate it by the ellipsoid of
    ``round(margin_mm / spacing)`` voxels (at least 1) along each axis (``spacing`` x, y, z):
    the region a tumor network's probability is kept in.

    The dilation keeps the voxels whose distance to the mask, each axis in units of its radius,
    is at most 1: the voxels a binary dilation by that ellipsoid gives, at a cost that does not
    grow with its size (a 17-voxel ball on the 1 mm grid of a 256 x 256 x 80 study: 25 s as a
    dilation). Both steps run on the mask's bounding box widened by the radii and one voxel (so
    that filling sees the same outside). Equal radii: the integer squared distances of an exact
    Maurer map; unequal ones: a float64 Euclidean distance transform, whose error is far below
    the least amount (1 / (rz ry rx)^2) by which a voxel outside the ellipsoid exceeds it."""
    import SimpleITK as sitk
    from scipy import ndimage

    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return mask.copy()
    radius = [max(1, int(round(margin_mm / s))) for s in reversed(spacing)] if margin_mm > 0 else [0, 0, 0]
    box = tuple(slice(max(0, int(i.min()) - r - 1), min(n, int(i.max()) + r + 2))
                for i, r, n in zip(np.nonzero(mask), radius, mask.shape))
    wide = np.zeros(mask.shape, dtype=bool)
    filled = ndimage.binary_fill_holes(mask[box])
    if margin_mm <= 0:
        wide[box] = filled
    elif len(set(radius)) == 1:
        squared = sitk.SignedMaurerDistanceMap(sitk.GetImageFromArray(filled.astype(np.uint8)), insideIsPositive=False,
                                               squaredDistance=True, useImageSpacing=False)
        wide[box] = sitk.GetArrayViewFromImage(squared) <= radius[0] ** 2 + 0.5
    else:
        wide[box] = ndimage.distance_transform_edt(~filled, sampling=[1.0 / r for r in radius]) <= 1.0 + 1e-9
    return wide


def on_grid(study: DCEStudy, spec, registry, grid: DCEStudy, device: str, opts: dict, cache: dict, stages,
            warnings: list[str], predictor: Optional[Any]) -> np.ndarray:
    """Whole-breast mask (bool, z y x) on ``grid`` for the tumor model ``spec``."""
    from .inference import _on_grid
    from .models import kinetic

    shape = grid.shape
    if not opts["breast_mask"]:
        return np.ones(shape, dtype=bool)
    bspec = registry.breast_spec(spec)
    if bspec is not None and not bspec.is_kinetic and bspec.weights_available():
        mask = _network_mask(study, bspec, grid, device, opts, cache, stages, warnings, predictor)
        if mask.any():
            return mask
        warnings.append(f"the breast model {bspec.id} found no breast tissue; used the intensity-based breast mask")
    elif bspec is not None and not bspec.is_kinetic:
        warnings.append(f"weights of the breast model {bspec.id} are missing; used the intensity-based breast mask")
    mask = _on_grid(np.asarray(kinetic.breast_mask(study), dtype=bool), study.reference, grid.reference)
    if not mask.any():
        warnings.append("no breast tissue found; the tumor probability was not masked")
        return np.ones(shape, dtype=bool)
    return mask
