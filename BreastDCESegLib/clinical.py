"""Clinical measures of a tumor mask: volume, longest 3-D diameter, T-stage, lesions.

* :func:`volume_ml` — voxel count times voxel volume.
* :func:`longest_diameter_mm` — the widest 3-D diameter: the largest distance between
  two surface voxel centres in physical space (anisotropic spacing and direction
  respected), from the convex hull of the surface points.
* :func:`t_stage` — size category after Zhang et al. (Patterns 2023), who stage from the
  widest 3-D tumor diameter: T0 no tumor, T1 <= 20 mm, T2 <= 50 mm, T3 > 50 mm. T4
  (chest wall or skin invasion) is not a size criterion and is not assigned.
* :func:`lesion_count`, :func:`lesion_table` — 26-connected lesions with volume,
  diameter, centroid (LPS and RAS mm), bounding box and, given the study, mean percent
  enhancement, SER and dominant curve type (:mod:`BreastDCESegLib.kinetics`).
* :func:`summarize` — all of it as a JSON-ready dict for reports; "longest diameter" there
  and in every output is the largest lesion's (the T-stage's), ``extent_mm`` the widest
  distance across all lesions together (:func:`diameters`: just those numbers).

Usage::

    from BreastDCESegLib import clinical
    clinical.volume_ml(mask, spacing=(0.7, 0.7, 1.5))     # numpy (z, y, x), spacing x y z
    d = clinical.longest_diameter_mm(result.tumor)        # sitk image: its own geometry
    clinical.t_stage(d)                                   # "T2"
    report = clinical.summarize(result.tumor, study)      # dict, json.dumps-able

Distances are between voxel centres, so a lesion one voxel wide has diameter 0 and a
voxelised sphere of diameter D measures slightly under D (by at most about one voxel).
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, Union

import numpy as np
import SimpleITK as sitk
from scipy import ndimage as ndi

from .errors import BadInputError
from . import kinetics
from .kinetics import UNDETERMINED_CURVE
from .morphology import bounding_box, label_26

MaskLike = Union[np.ndarray, sitk.Image]
T1_MAX_MM = 20.0
T2_MAX_MM = 50.0


# ----------------------------------------------------------------------------- inputs
def _mask_geometry(mask: MaskLike, spacing: Optional[Sequence[float]] = None,
                   direction: Optional[Sequence[float]] = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(bool (z, y, x) array, spacing (x, y, z), 3x3 direction) of a mask image or array."""
    if isinstance(mask, sitk.Image):
        array = sitk.GetArrayViewFromImage(mask) != 0
        spacing = mask.GetSpacing() if spacing is None else spacing
        direction = mask.GetDirection() if direction is None else direction
    else:
        array = np.asarray(mask) != 0
        if spacing is None:
            raise BadInputError("A numpy mask needs its voxel spacing (x, y, z) in mm.")
    if array.ndim != 3:
        raise BadInputError(f"Masks must be 3-D (z, y, x); got shape {array.shape}.")
    sp = np.asarray(spacing, dtype=float)
    if sp.shape != (3,) or (sp <= 0).any():
        raise BadInputError(f"Spacing must be three positive values in mm (x, y, z); got {spacing}.")
    d = np.eye(3) if direction is None else np.asarray(direction, dtype=float).reshape(3, 3)
    return array, sp, d


# ----------------------------------------------------------------------------- size
def volume_ml(mask: MaskLike, spacing: Optional[Sequence[float]] = None) -> float:
    """Volume of the non-zero voxels in millilitres (1 mL = 1000 mm³)."""
    array, sp, _ = _mask_geometry(mask, spacing)
    return float(np.count_nonzero(array)) * float(np.prod(sp)) / 1000.0


def surface_points_mm(array: np.ndarray, spacing: Sequence[float], direction: Optional[np.ndarray] = None
                      ) -> np.ndarray:
    """Physical positions (mm, relative to the grid origin) of the surface voxel centres.

    Surface voxels have a face neighbour outside the mask (the array border counts as
    outside). Every extreme point of the mask is a surface voxel.
    """
    array = np.asarray(array, dtype=bool)
    surface = array & ~ndi.binary_erosion(array, border_value=0)
    zyx = np.argwhere(surface)
    xyz = zyx[:, ::-1].astype(float) * np.asarray(spacing, dtype=float)
    d = np.eye(3) if direction is None else np.asarray(direction, dtype=float).reshape(3, 3)
    return xyz @ d.T


def _farthest_pair_distance(points: np.ndarray, chunk: int = 512) -> float:
    """Largest pairwise distance of a point set (exact; chunked to bound memory)."""
    points = points - points.mean(axis=0)
    sq = (points ** 2).sum(axis=1)
    best = 0.0
    for start in range(0, len(points), chunk):
        block = points[start:start + chunk]
        d2 = sq[start:start + chunk, None] + sq[None, :] - 2.0 * block @ points.T
        best = max(best, float(d2.max()))
    return float(np.sqrt(max(best, 0.0)))


def _extreme_points(points: np.ndarray) -> np.ndarray:
    """Candidates for the farthest pair: convex hull vertices, also for flat and linear sets."""
    from scipy.spatial import ConvexHull, QhullError

    centred = points - points.mean(axis=0)
    _, sv, vt = np.linalg.svd(centred, full_matrices=False)
    scale = max(float(sv[0]), 1e-12)
    rank = int((sv > 1e-9 * scale).sum())
    if rank <= 1:  # collinear (or a single point): the two ends along the line
        t = centred @ vt[0]
        return points[[int(t.argmin()), int(t.argmax())]]
    coords = centred if rank == 3 else centred @ vt[:2].T  # planar sets: exact 2-D coordinates
    try:
        return points[ConvexHull(coords).vertices]
    except (QhullError, ValueError):  # pragma: no cover - numerically degenerate beyond the SVD test
        return points


def longest_diameter_mm(mask: MaskLike, spacing: Optional[Sequence[float]] = None,
                        direction: Optional[Sequence[float]] = None) -> float:
    """Widest 3-D diameter (mm): largest distance between two surface voxel centres.

    Args:
        mask: numpy (z, y, x) array with ``spacing`` (x, y, z) and optional ``direction``
            (9 cosines, ITK order), or a SimpleITK image (its own spacing and direction).

    Returns 0.0 for an empty mask or a single voxel.
    """
    array, sp, d = _mask_geometry(mask, spacing, direction)
    if not array.any():
        return 0.0
    box = ndi.find_objects(array.astype(np.uint8))[0]
    points = surface_points_mm(array[box], sp, d)
    if len(points) < 2:
        return 0.0
    return _farthest_pair_distance(_extreme_points(points))


def t_stage(diameter_mm: Optional[float]) -> str:
    """Size T category from the widest 3-D diameter (Zhang et al., Patterns 2023).

    ``None``, NaN or <= 0 mm -> "T0" (no tumor); <= 20 mm -> "T1"; <= 50 mm -> "T2";
    > 50 mm -> "T3".
    """
    if diameter_mm is None or not np.isfinite(diameter_mm) or diameter_mm <= 0:
        return "T0"
    if diameter_mm <= T1_MAX_MM:
        return "T1"
    if diameter_mm <= T2_MAX_MM:
        return "T2"
    return "T3"


# ----------------------------------------------------------------------------- lesions
def label_lesions(array: np.ndarray, spacing: Sequence[float], min_volume_mm3: float = 0.0
                  ) -> tuple[np.ndarray, list[int]]:
    """26-connected components and the labels of those with at least ``min_volume_mm3``,
    largest first."""
    labels, n = label_26(array)
    if n == 0:
        return labels, []
    counts = np.bincount(labels[bounding_box(labels)].ravel(), minlength=n + 1)[1:]
    voxel_mm3 = float(np.prod(spacing))
    keep = [i + 1 for i in np.argsort(-counts, kind="stable") if counts[i] * voxel_mm3 >= min_volume_mm3]
    return labels, keep


def lesion_count(mask: MaskLike, spacing: Optional[Sequence[float]] = None, min_volume_mm3: float = 0.0) -> int:
    """Number of 26-connected lesions of at least ``min_volume_mm3`` mm³."""
    array, sp, _ = _mask_geometry(mask, spacing)
    return len(label_lesions(array, sp, min_volume_mm3)[1])


def _as_mask_image(mask_image: MaskLike, study: Any) -> sitk.Image:
    """The mask as a uint8 image, on the study grid when a study is given."""
    if not isinstance(mask_image, sitk.Image):
        if study is None:
            raise BadInputError("lesion_table needs a mask image (or a numpy mask together with its study) "
                                "to place lesions in physical space.")
        array = np.asarray(mask_image)
        if array.shape != study.shape:
            raise BadInputError(f"Mask shape {array.shape} differs from the study's {study.shape}.")
        return study.image_like((array != 0).astype(np.uint8))
    image = sitk.Cast(mask_image != 0, sitk.sitkUInt8)
    image.CopyInformation(mask_image)
    if study is not None:
        from .study import same_grid

        if not same_grid(image, study.reference):
            image = sitk.Resample(image, study.reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0,
                                  sitk.sitkUInt8)
    return image


def _kinetic_maps(study: Any, box: tuple[slice, ...], floor: float) -> dict[str, Any]:
    """Percent enhancement, SER and curve type of the block ``box`` (a lesion's bounding box)."""
    early = kinetics.initial_phase(study)  # the phase nearest 2 min after injection (phase 1 without times)
    return {
        "pe": kinetics.percent_enhancement(study, phase=early, baseline_floor=floor, box=box),
        "ser": kinetics.signal_enhancement_ratio(study, early=early, box=box),
        "curve": kinetics.curve_type_map(study, early=early, baseline_floor=floor, box=box),
        "names": np.array(kinetics.CURVE_NAMES),
        "single_post": study.n_post == 1,
    }


def _kinetic_row(maps: dict[str, Any], region: np.ndarray) -> dict[str, Any]:
    """Mean early percent enhancement, mean SER of enhancing voxels, curve-type mix (maps of the region's box)."""
    curve = maps["curve"][region]
    enhancing = curve > 0
    counts = np.bincount(curve, minlength=4)[1:4]
    names = [str(n) for n in maps["names"][1:4]]
    single = bool(maps["single_post"])
    if counts.sum() == 0:
        dominant = str(maps["names"][0])
    elif single:  # no delayed phase: neither plateau nor any other BI-RADS type can be read
        dominant = UNDETERMINED_CURVE
    else:  # most frequent; ties go to the more suspicious type (washout > plateau > persistent)
        dominant = names[max(range(3), key=lambda i: (counts[i], i))]
    ser = maps["ser"][region][enhancing]
    return {
        "mean_percent_enhancement": round(float(maps["pe"][region].mean()), 2),
        "mean_ser": round(float(ser.mean()), 3) if ser.size and not single else None,
        "dominant_curve_type": dominant,
        "enhancing_fraction": round(float(enhancing.mean()), 4),
        "curve_type_fractions": None if single else
        {n: round(float(c) / max(1, curve.size), 4) for n, c in zip(names, counts)},
    }


def lesion_table(mask_image: MaskLike, study: Any = None, min_volume_mm3: float = 0.0) -> list[dict[str, Any]]:
    """One JSON-ready dict per 26-connected lesion, largest first.

    Keys: ``index`` (1 = largest), ``n_voxels``, ``volume_ml``, ``longest_diameter_mm``,
    ``centroid_lps_mm``, ``centroid_ras_mm``, ``bbox_index_xyz`` (first voxel),
    ``bbox_size_xyz`` (voxels), ``bbox_extent_mm``; with a study also
    ``mean_percent_enhancement`` (at :func:`kinetics.initial_phase`, %), ``mean_ser`` (over the
    lesion's enhancing voxels), ``dominant_curve_type``, ``enhancing_fraction`` and
    ``curve_type_fractions``. With one post-contrast phase there is no delayed phase:
    ``dominant_curve_type`` is :data:`UNDETERMINED_CURVE`, ``mean_ser`` and
    ``curve_type_fractions`` are None. A mask on another grid than the study is resampled
    onto the study grid (nearest neighbour) first.
    """
    image = _as_mask_image(mask_image, study)
    array = sitk.GetArrayViewFromImage(image) != 0
    spacing = np.asarray(image.GetSpacing(), dtype=float)
    direction = np.asarray(image.GetDirection(), dtype=float).reshape(3, 3)
    labels, keep = label_lesions(array, spacing, min_volume_mm3)
    boxes = ndi.find_objects(labels)
    floor = kinetics.pre_contrast_floor(study) if study is not None and keep else None  # maps per lesion box
    rows = []
    for rank, lab in enumerate(keep, start=1):
        box = boxes[lab - 1]
        region = labels[box] == lab
        zyx = np.argwhere(region).mean(axis=0) + [s.start for s in box]
        centroid = np.asarray(image.TransformContinuousIndexToPhysicalPoint([float(v) for v in zyx[::-1]]))
        size_xyz = [s.stop - s.start for s in box][::-1]
        n_vox = int(region.sum())
        row: dict[str, Any] = {
            "index": rank,
            "n_voxels": n_vox,
            "volume_ml": round(n_vox * float(np.prod(spacing)) / 1000.0, 6),
            "longest_diameter_mm": round(longest_diameter_mm(region, spacing, direction), 3),
            "centroid_lps_mm": [round(float(v), 3) for v in centroid],
            "centroid_ras_mm": [round(float(v), 3) for v in centroid * [-1.0, -1.0, 1.0]],
            "bbox_index_xyz": [int(s.start) for s in box][::-1],
            "bbox_size_xyz": [int(n) for n in size_xyz],
            "bbox_extent_mm": [round(float(n * s), 3) for n, s in zip(size_xyz, spacing)],
        }
        if floor is not None:
            row.update(_kinetic_row(_kinetic_maps(study, box, floor), region))
        rows.append(row)
    return rows


def diameters(mask_image: MaskLike, min_volume_mm3: float = 0.0) -> dict[str, Any]:
    """``longest_diameter_mm`` (largest lesion, the T-stage's), ``extent_mm`` (all lesions
    together) and ``lesion_count`` of a mask image, as :func:`summarize` reports them.

    Example: ``clinical.diameters(result.tumor)["longest_diameter_mm"]``.
    """
    image = _as_mask_image(mask_image, None)
    array = sitk.GetArrayViewFromImage(image) != 0
    spacing, direction = image.GetSpacing(), image.GetDirection()
    labels, keep = label_lesions(array, spacing, min_volume_mm3)
    boxes = ndi.find_objects(labels)
    largest = max((longest_diameter_mm(labels[boxes[lab - 1]] == lab, spacing, direction) for lab in keep),
                  default=0.0)
    kept = np.isin(labels, keep) if min_volume_mm3 > 0 else array
    return {"longest_diameter_mm": largest, "extent_mm": longest_diameter_mm(kept, spacing, direction) if keep else 0.0,
            "lesion_count": len(keep)}


def summarize(mask_image: MaskLike, study: Any = None, min_volume_mm3: float = 0.0,
              stage_by: str = "largest_lesion") -> dict[str, Any]:
    """JSON-ready summary of a tumor mask for reports.

    Lesions smaller than ``min_volume_mm3`` are left out of every number. The T-stage
    uses the widest diameter of a single lesion (``stage_by="largest_lesion"``: the
    AJCC rule that multifocal tumors are staged by the largest, not summed) or of all
    lesions together (``"overall"``: the widest extent of the whole mask).

    Keys: ``volume_ml``, ``longest_diameter_mm`` (the widest diameter of the largest lesion:
    the one "longest diameter" of every output, the T-stage's), ``extent_mm`` (the widest
    distance across all lesions together, named so that it is never read as a diameter),
    ``largest_lesion_volume_ml``, ``t_stage``, ``t_stage_basis``, ``lesion_count``,
    ``lesions`` (:func:`lesion_table` rows) and ``warnings`` (e.g. the curve type cannot be
    determined from one post-contrast phase).

    Example: a 29 mm lesion and a speck 60 mm away give ``longest_diameter_mm`` ~29,
    ``t_stage`` "T2", ``extent_mm`` ~90 and ``lesion_count`` 2.
    """
    if stage_by not in ("largest_lesion", "overall"):
        raise BadInputError(f"stage_by must be 'largest_lesion' or 'overall'; got '{stage_by}'.")
    image = _as_mask_image(mask_image, study)
    lesions = lesion_table(image, study, min_volume_mm3)
    array = sitk.GetArrayViewFromImage(image) != 0
    spacing = image.GetSpacing()
    if min_volume_mm3 > 0 and lesions:
        labels, keep = label_lesions(array, spacing, min_volume_mm3)
        array = np.isin(labels, keep)
    elif not lesions:
        array = np.zeros(array.shape, dtype=bool)
    extent = longest_diameter_mm(array, spacing, image.GetDirection())
    largest_d = max((row["longest_diameter_mm"] for row in lesions), default=0.0)
    stage_d = largest_d if stage_by == "largest_lesion" else extent
    basis = "largest lesion" if stage_by == "largest_lesion" else "extent of all lesions"
    warnings = []
    if study is not None and lesions and getattr(study, "n_post", 2) == 1:
        warnings.append(f"curve type {UNDETERMINED_CURVE}: the delayed-phase type (persistent, plateau, "
                        "washout) needs at least two post-contrast phases")
    return {
        "volume_ml": round(volume_ml(array, spacing), 6),
        "longest_diameter_mm": round(float(largest_d), 3),
        "extent_mm": round(extent, 3),
        "largest_lesion_volume_ml": lesions[0]["volume_ml"] if lesions else 0.0,
        "t_stage": t_stage(stage_d),
        "t_stage_basis": f"widest 3-D diameter, {basis} ({stage_d:.1f} mm)",
        "lesion_count": len(lesions),
        "lesions": lesions,
        "warnings": warnings,
    }
