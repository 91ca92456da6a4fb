"""The shape measures of a lesion mask that the lesion rows hold (:mod:`.lesions`): sphericity and
thinness (SimpleITK label shape statistics), irregularity (the share of the convex hull left empty)
and the ellipsoid residual (1 - Dice against the ellipsoid of the same second moments); and the
lesions of a mask, with two masses joined by a narrow neck read apart (:func:`split_lesions`).

Usage (``region``: a lesion mask, z, y, x; ``spacing``: x, y, z in mm)::

    from BreastDCESegLib.lesion_shape import ellipsoid_residual, morphology, shape_compactness
    sphericity, thinness = shape_compactness(region, spacing)
    sphericity, irregularity, thinness = morphology(labels, index, spacing, box)
    labels, keep = split_lesions(mask, spacing)  # as clinical.label_lesions, necked masses apart
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import SimpleITK as sitk

DEGENERATE_THINNESS = 99.0      # reported for a component one voxel thick (SimpleITK gives 0 or inf)
NECK_RATIO = 0.6      # a neck at most this fraction of both masses' radii (largest inscribed spheres) splits them
MIN_RADIUS_MM = 3.0   # ... each mass at least this radius (a 6 mm mass)
NECK_STEP_MM = 0.25   # the neck radii tried


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


def neck_parts(component: np.ndarray, spacing, ratio: float = NECK_RATIO, min_radius_mm: float = MIN_RADIUS_MM
               ) -> Optional[np.ndarray]:
    """Labels 1..k (0 outside) of the masses that ``component`` (one 26-connected lesion mask, z, y, x;
    ``spacing`` x, y, z mm) joins by narrow necks, or None when it is one mass.

    The voxels at least ``t`` mm inside the mask (its Euclidean distance map) are its cores at depth
    ``t``; the smallest ``t`` (in steps of :data:`NECK_STEP_MM`) at which two or more cores each reach a
    depth of ``min_radius_mm`` and of ``t / ratio`` splits it: the neck's radius is at most ``ratio`` of
    each mass's. Each voxel goes to the core it is reached from first, growing within the mask."""
    from scipy import ndimage

    depth = ndimage.distance_transform_edt(np.pad(component, 1), sampling=tuple(spacing)[::-1])[1:-1, 1:-1, 1:-1]
    top = float(depth.max())
    if top < min_radius_mm:
        return None
    full = np.ones((3, 3, 3), bool)
    for t in np.arange(NECK_STEP_MM, ratio * top + 1e-6, NECK_STEP_MM):
        cores, n = ndimage.label(depth >= t, structure=full)
        if n < 2:
            continue
        peaks = np.asarray(ndimage.maximum(depth, cores, np.arange(1, n + 1)))
        masses = np.flatnonzero(peaks >= max(min_radius_mm, t / ratio)) + 1
        if masses.size < 2:
            continue
        parts = np.zeros(component.shape, np.int32)
        for k, index in enumerate(masses, start=1):
            parts[cores == index] = k
        while True:  # grow the masses' cores through the rest of the mask
            missing = component & (parts == 0)
            grown = np.where(missing, ndimage.grey_dilation(parts, footprint=full), parts)
            if np.array_equal(grown, parts):
                return parts
            parts = grown
    return None


def split_lesions(array: np.ndarray, spacing, min_volume_mm3: float = 0.0, ratio: float = NECK_RATIO,
                  min_radius_mm: float = MIN_RADIUS_MM) -> tuple[np.ndarray, list[int]]:
    """:func:`clinical.label_lesions` (26-connected components, the labels of those of at least
    ``min_volume_mm3``, largest first) with each component that joins masses by narrow necks
    (:func:`neck_parts`) split into them; ``ratio`` 0: no split."""
    from scipy import ndimage

    from .clinical import label_lesions

    labels, keep = label_lesions(array, spacing, 0.0)
    voxel_mm3 = float(np.prod(spacing))
    smallest = 2 * 4.0 / 3.0 * math.pi * min_radius_mm ** 3  # two masses of the least radius
    split = False
    if ratio > 0:
        for index, box in enumerate(ndimage.find_objects(labels), start=1):
            component = labels[box] == index
            if component.sum() * voxel_mm3 < smallest:
                continue
            parts = neck_parts(component, spacing, ratio, min_radius_mm)
            if parts is not None:
                region = labels[box]
                region[parts > 1] = parts[parts > 1] + labels.max() - 1
                split = True
    if not split:
        return label_lesions(array, spacing, min_volume_mm3)
    counts = np.bincount(labels.ravel())
    counts[0] = 0
    order = [int(i) for i in np.argsort(-counts, kind="stable") if counts[i] > 0]
    return labels, [i for i in order if counts[i] * voxel_mm3 >= min_volume_mm3]
