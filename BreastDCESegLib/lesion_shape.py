"""The shape measures of a lesion mask that the lesion rows hold (:mod:`.lesions`): sphericity and
thinness (SimpleITK label shape statistics), irregularity (the share of the convex hull left empty)
and the ellipsoid residual (1 - Dice against the ellipsoid of the same second moments).

Usage (``region``: a lesion mask, z, y, x; ``spacing``: x, y, z in mm)::

    from BreastDCESegLib.lesion_shape import ellipsoid_residual, morphology, shape_compactness
    sphericity, thinness = shape_compactness(region, spacing)
    sphericity, irregularity, thinness = morphology(labels, index, spacing, box)
"""

from __future__ import annotations

import math

import numpy as np
import SimpleITK as sitk

DEGENERATE_THINNESS = 99.0      # reported for a component one voxel thick (SimpleITK gives 0 or inf)


def shape_compactness(region: np.ndarray, spacing) -> tuple[float, float]:
    """(sphericity, thinness) of the mask ``region`` (z, y, x; ``spacing`` x, y, z), as the rows have them."""
    image = sitk.GetImageFromArray(np.pad(region.astype(np.uint8), 1))
    image.SetSpacing(tuple(float(s) for s in spacing))
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.ComputePerimeterOn()
    stats.Execute(image)
    sphericity = float(min(1.0, stats.GetRoundness(1))) if stats.HasLabel(1) else 0.0
    thin = float(max(stats.GetElongation(1), stats.GetFlatness(1))) if stats.HasLabel(1) else 1.0
    if not math.isfinite(thin) or (thin == 0.0 and region.sum() > 1):
        thin = DEGENERATE_THINNESS  # one voxel thick along an axis: a sheet or a line
    return sphericity, thin


def morphology(labels: np.ndarray, index: int, spacing, box) -> tuple[float, float, float]:
    """(sphericity, irregularity, thinness) of component ``index`` of ``labels`` (z, y, x)."""
    from scipy.spatial import ConvexHull, QhullError

    region = (labels[box] == index).astype(np.uint8)
    padded = np.pad(region, 1)
    sphericity, thin = shape_compactness(region, spacing)
    corners = np.argwhere(padded)[:, None, :] + np.array(
        [[i, j, k] for i in (-0.5, 0.5) for j in (-0.5, 0.5) for k in (-0.5, 0.5)])[None]
    points = corners.reshape(-1, 3) * np.array(list(reversed(spacing)))
    try:
        hull = ConvexHull(np.unique(points, axis=0)).volume
    except (QhullError, ValueError):
        return sphericity, 0.0, thin
    volume = float(region.sum() * np.prod(spacing))
    return sphericity, float(np.clip(1.0 - volume / max(hull, 1e-6), 0.0, 1.0)), thin


def ellipsoid_residual(region: np.ndarray, spacing) -> float:
    """``1 - Dice`` between a lesion mask (z, y, x) and the ellipsoid of the same centroid and
    second moments (semi-axes ``sqrt(5 * eigenvalue)``): near 0 for a circumscribed oval
    lesion, higher for a lobulated, irregular or spiculated one."""
    sp = np.array(list(reversed(spacing)), dtype=float)
    points = np.argwhere(region) * sp
    if len(points) < 5:
        return 0.0
    centre = points.mean(0)
    values, vectors = np.linalg.eigh(np.cov((points - centre).T))
    axes = np.sqrt(5.0 * np.maximum(values, 1e-6))
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in region.shape], indexing="ij"), -1) * sp - centre
    ellipsoid = (((grid @ vectors) / axes) ** 2).sum(-1) <= 1.0
    return float(1.0 - 2.0 * (ellipsoid & region).sum() / (ellipsoid.sum() + region.sum()))
