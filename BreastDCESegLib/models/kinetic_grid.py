"""The kinetic method's working grid: one voxel size whatever the site's matrix.

The kinetic method's thresholds (volumes aside, which are in mm3) act on voxels: the
smoothing of the subtraction (0.7 voxel), the openings, partial volume at a lesion's
edge, the noise of one voxel's curve. They were set on the site profiles' 160-voxel
matrices, 2.0-2.2 mm in-plane with 2.8-3.2 mm slices. A finer study (a 256 or 512 matrix,
0.6-1.4 mm) reads differently: on the 256-voxel matrix of seven site profiles the method
scored 0.80 mean Dice against 0.87 at 160 (docs/kinetic_method_log.md, *The working grid*). So a study finer
than :data:`WORKING_SPACING_MM` is resampled to it (linear, on the same field of view)
before the method runs (its search is on that grid); the masks then go back onto the study
grid, where the lesion rules make the final decisions (shapes read better on finer voxels: a
3 mm vessel is a tube there, on 2 mm voxels it can read compact). The rules screening each
level of the search read each lesion on the study grid as well (:func:`screen_on_study_grid`),
so that the search does not set aside a lesion the final rules would keep:

- the tumor is re-delineated on the study's own voxels (:func:`delineated_on_study_grid`):
  each kept lesion's mask, mapped back, is re-cut at the subtraction level its delineation
  used on the working grid (``boundary_level``), within one working voxel of it, so its
  edge keeps the study's resolution;
- the whole-breast mask and the excluded lesions are mapped back (linear, at one half);
- the probability map is mapped back (linear), and is 0.5 or more inside the re-cut tumor.

A study whose in-plane voxel is at least 0.9x the working one (1.8 mm) runs on its own grid. Option
``working_spacing_mm`` (a field of :class:`~.kinetic.KineticParams`; ``[0, 0, 0]``: the
study grid always) sets the voxel: in-plane on the study's two finest axes, the third on
its coarsest (the slice axis of an axial or sagittal acquisition).

Usage::

    from BreastDCESegLib.models import kinetic_grid
    work = kinetic_grid.working_study(study, (2.0, 2.0, 3.0))   # `study` itself when coarse enough
    screen = kinetic_grid.screen_on_study_grid(lesions.screen(options), work, study, early_index(work, params))
    result = kinetic_grid.to_study_grid(segment_kinetic(work, params, screen=screen), work, study)  # lesions.apply
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Optional, Sequence

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from .. import preprocess
from ..results import SegmentationResult
from ..study import DCEStudy
from .kinetic_components import Screen
from .kinetic_delineate import PEAK_PERCENTILE

WORKING_SPACING_MM = (2.0, 2.0, 3.0)  # in-plane, in-plane, slice: the grid the thresholds were set on
TOLERANCE = 0.9  # a study whose in-plane voxel is at least this fraction of the working one keeps its grid
SMOOTH_SIGMA_VOX = 0.7  # the subtraction's smoothing on the study grid (as KineticParams.smooth_sigma_vox)
STUDY_PEAK_WEIGHT = 0.5  # the re-cut level's share from the lesion's peak on the study grid (delineated_on_study_grid)


def working_spacing(spacing: Sequence[float], minimum: Sequence[float] = WORKING_SPACING_MM,
                    tolerance: float = TOLERANCE) -> Optional[tuple[float, float, float]]:
    """The working voxel (x, y, z mm) for a study of voxel ``spacing``, or ``None`` when the study
    grid is coarse enough: its in-plane voxel (the two finest axes) at least ``tolerance`` times
    ``minimum[0]``. Else each in-plane axis gets at least ``minimum[0]``, the slice axis (the
    coarsest) at least ``minimum[2]``."""
    sp = np.asarray(spacing, dtype=float)
    plane, slab = float(minimum[0]), float(minimum[2])
    if plane <= 0 or np.sort(sp)[1] >= tolerance * plane:
        return None
    target = np.full(3, plane)
    target[int(np.argmax(sp))] = slab
    return tuple(float(s) for s in np.maximum(sp, target))


def _centred_grid(image: sitk.Image, spacing: Sequence[float]) -> sitk.Image:
    """An empty grid of ``spacing`` on ``image``'s direction, centred on its field of view."""
    old, size = np.asarray(image.GetSpacing(), float), np.asarray(image.GetSize(), float)
    new = np.asarray(spacing, float)
    count = np.maximum(1, np.round(size * old / new)).astype(int)
    d = np.asarray(image.GetDirection(), float).reshape(3, 3)
    centre = np.asarray(image.GetOrigin(), float) + d @ ((size - 1) * old / 2)
    grid = sitk.Image([int(c) for c in count], sitk.sitkUInt8)
    grid.SetSpacing([float(s) for s in new])
    grid.SetOrigin([float(c) for c in centre - d @ ((count - 1) * new / 2)])
    grid.SetDirection(image.GetDirection())
    return grid


def working_study(study: DCEStudy, minimum: Sequence[float] = WORKING_SPACING_MM) -> DCEStudy:
    """``study`` resampled (linear, float32) to its :func:`working_spacing`; ``study`` itself when
    it needs none. The metadata gets ``native_spacing``."""
    spacing = working_spacing(study.spacing, minimum)
    if spacing is None:
        return study
    grid = _centred_grid(study.reference, spacing)
    phases = [sitk.Resample(sitk.Cast(p, sitk.sitkFloat32), grid, sitk.Transform(), sitk.sitkLinear, 0.0,
                            sitk.sitkFloat32) for p in study.phases]
    metadata = {**study.metadata, "native_spacing": list(study.spacing)}
    return DCEStudy(phases=phases, times=list(study.times), metadata=metadata, case_id=study.case_id)


def centroid_lps(study: DCEStudy, box: tuple, mask: np.ndarray) -> list[float]:
    """Physical (LPS, mm) centre of ``mask``, a (z, y, x) block ``box`` of ``study``'s grid."""
    z, y, x = (c + s.start for c, s in zip(ndimage.center_of_mass(mask), box))
    return [round(v, 2) for v in study.reference.TransformContinuousIndexToPhysicalPoint((x, y, z))]


def _back(image: Optional[sitk.Image], target: sitk.Image) -> Optional[sitk.Image]:
    """``image`` as float32 on ``target``'s grid (linear), or ``None``."""
    return None if image is None else preprocess.resample_back(sitk.Cast(image, sitk.sitkFloat32), target)


def _geometry(image: sitk.Image) -> tuple:
    return image.GetSize(), image.GetOrigin(), image.GetSpacing(), image.GetDirection()


def nearest_labels(labels: np.ndarray, source: sitk.Image, target: sitk.Image,
                   maps: Optional[dict] = None) -> np.ndarray:
    """``labels`` (an int32 array on ``source``'s grid) on ``target``'s by nearest neighbour, 0 outside:
    ``preprocess.resample_back`` of the label image. With ``maps`` (a dict the caller keeps, e.g. for one
    segmentation) the same array from the grid pair's index map (each target voxel's source voxel, one
    resampling of the voxel numbers), made once and kept there."""
    if maps is None:
        return sitk.GetArrayFromImage(preprocess.resample_back(labels, target, source_reference=source))
    key = (_geometry(source), _geometry(target))
    if key not in maps:
        numbers = np.arange(1, labels.size + 1, dtype=np.int32).reshape(labels.shape)
        maps[key] = sitk.GetArrayFromImage(preprocess.resample_back(numbers, target, source_reference=source))
    return np.concatenate([np.zeros(1, labels.dtype), labels.ravel()])[maps[key]]


def _mask_back(image: Optional[sitk.Image], target: sitk.Image) -> Optional[sitk.Image]:
    back = _back(image, target)
    return None if back is None else sitk.Cast(back >= 0.5, sitk.sitkUInt8)


def lesion_levels(labels: np.ndarray, n: int, work: DCEStudy, lesions: list[dict[str, Any]]
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Per component of ``labels`` (on ``work``'s grid: the working grid, or the study's for
    :mod:`.kinetic_voxels`) the ``boundary_level`` and ``boundary_fraction`` of the kinetic lesion whose
    centroid lies nearest its own (index 0, and a missing value: 0)."""
    levels, fractions = np.zeros(n + 1, np.float32), np.zeros(n + 1, np.float32)
    known = [les for les in lesions if les.get("boundary_level") is not None and les.get("centroid_lps_mm")]
    if not known:
        return levels, fractions
    points = np.array([les["centroid_lps_mm"] for les in known], float)
    for i, (z, y, x) in enumerate(ndimage.center_of_mass(labels > 0, labels, range(1, n + 1)), start=1):
        here = np.asarray(work.reference.TransformContinuousIndexToPhysicalPoint((x, y, z)))
        nearest = known[int(np.argmin(np.linalg.norm(points - here, axis=1)))]
        levels[i], fractions[i] = nearest["boundary_level"], nearest.get("boundary_fraction") or 0.0
    return levels, fractions


def agreeing_probability(prob: np.ndarray, tumor: np.ndarray) -> np.ndarray:
    """``prob`` (float32) made to agree with the mask ``tumor``: 0.5 or more inside it, under 0.5 outside."""
    return np.where(tumor, np.maximum(prob, 0.5), np.minimum(prob, 0.49)).astype(np.float32)


def _radius(work: DCEStudy, study: DCEStudy) -> np.ndarray:
    """One working voxel in study voxels, per (z, y, x) axis (at least one)."""
    return np.maximum(np.round(np.asarray(work.spacing) / np.asarray(study.spacing)), 1).astype(int)[::-1]


def mapped_to_study_grid(tumor: sitk.Image, study: DCEStudy, maps: Optional[dict] = None
                         ) -> tuple[np.ndarray, np.ndarray, int, Optional[np.ndarray]]:
    """The working grid's ``tumor`` on ``study``'s grid, as :func:`delineated_on_study_grid` starts from it:
    (mask mapped back linearly at one half, its components' labels on the working grid and their number,
    those labels mapped by nearest neighbour, :func:`nearest_labels` with ``maps``; None before any component
    is mapped)."""
    mapped = sitk.GetArrayFromImage(_mask_back(tumor, study.reference)) > 0
    labels_w, n = ndimage.label(sitk.GetArrayFromImage(tumor) > 0)
    if not mapped.any() or n == 0:
        return mapped, labels_w, n, None
    return mapped, labels_w, n, nearest_labels(labels_w.astype(np.int32), tumor, study.reference, maps)


def delineated_on_study_grid(tumor: sitk.Image, lesions: list[dict[str, Any]], early: int, work: DCEStudy,
                             study: DCEStudy, peak_weight: float = STUDY_PEAK_WEIGHT,
                             mapping: Optional[tuple] = None) -> np.ndarray:
    """The working grid's ``tumor`` (uint8) re-cut on ``study``'s grid: its mask mapped back, then
    within one working voxel of it the study voxels whose smoothed early subtraction (phase
    ``early``) reaches the lesion's level, with the mapped mask's interior one working voxel in (a
    filled non-enhancing core), the parts touching the mapped mask, holes filled. A component
    without a level (no kinetic lesion in ``lesions``) stays as mapped.

    The level: ``(1 - peak_weight) x boundary_level + peak_weight x boundary_fraction x`` the
    lesion's peak on the study grid (the ``PEAK_PERCENTILE`` of the smoothed subtraction in its mapped mask,
    as the delineation reads it: its maximum is one voxel, and a noisy or strongly enhancing fine voxel set it
    high; second phantom seed 16 at 0.89 mm: Dice 0.72 with the maximum, 0.98 with the percentile). A
    small lesion's peak reads lower on the working grid (partial volume), so its edge level alone
    sits low on the study's voxels and the lesion grows; the study grid's peak alone can sit high on
    a noisy fine voxel (``STUDY_PEAK_WEIGHT``). A lesion row without ``boundary_fraction`` keeps
    its ``boundary_level``. ``mapping``: :func:`mapped_to_study_grid` of ``tumor``, when already made."""
    mapped, labels_w, n, labels = mapping or mapped_to_study_grid(tumor, study)
    if labels is None:
        return mapped
    radius = _radius(work, study)
    ball = np.ones(tuple(2 * r + 1 for r in radius), bool)
    margin = radius + int(np.ceil(3 * SMOOTH_SIGMA_VOX)) + 1
    lo = np.maximum(np.argwhere(mapped).min(axis=0) - margin, 0)
    hi = np.minimum(np.argwhere(mapped).max(axis=0) + margin + 1, mapped.shape)
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    inside, labels = mapped[box], ndimage.grey_dilation(labels[box], footprint=ball)
    levels, fractions = lesion_levels(labels_w, n, work, lesions)
    recut = ndimage.binary_dilation(inside, ball) & (levels[labels] > 0)
    if recut.any():  # the subtraction is read only where a lesion has a level (not for the screen's mapped reading)
        phases = study.arrays_in(box)
        sub = ndimage.gaussian_filter(phases[early] - phases[0], SMOOTH_SIGMA_VOX)
        peaks = np.zeros(n + 1, np.float32)
        peaks[1:] = ndimage.labeled_comprehension(sub, np.where(inside, labels, 0), np.arange(1, n + 1),
                                                  lambda v: np.percentile(v, PEAK_PERCENTILE), np.float32, 0.0)
        blend = (levels > 0) & (fractions > 0) & (peaks > 0)
        levels = np.where(blend, (1 - peak_weight) * levels + peak_weight * fractions * peaks, levels)
        recut &= sub >= levels[labels]
    cut = recut | ndimage.binary_erosion(inside, ball) | (inside & (levels[labels] <= 0))
    parts, _ = ndimage.label(cut)
    touching = np.unique(parts[inside & (parts > 0)])
    out = np.zeros(mapped.shape, bool)
    out[box] = ndimage.binary_fill_holes(np.isin(parts, touching) & (parts > 0))
    return out


def screen_on_study_grid(screen: Optional[Screen], work: DCEStudy, study: DCEStudy, early: int
                         ) -> Optional[Screen]:
    """``screen`` (:func:`lesions.screen`, for the search on ``work``, :func:`working_study`) reading
    each lesion on ``study``'s own voxels, where the final lesion rules read it (:func:`to_study_grid`,
    then ``lesions.apply``), so that the search does not set aside a lesion they would keep.

    The lesions are read twice on ``study``: re-cut as the final rules will read them
    (:func:`delineated_on_study_grid` with their kinetic rows' ``boundary_level``, phase ``early``)
    and mapped as they are (linear, at one half), the breast mapped. A working-grid lesion is kept
    when most of its voxels are in both readings (a small focus re-cut can read larger than it is),
    on the border when in either. A lesion that leaves no study voxel is screened on the working
    grid. The search may call it on ``work`` reoriented (``kinetic.segment_any_orientation``)."""
    if screen is None:
        return None
    fine_breast: dict[str, Any] = {}
    maps: dict = {}  # nearest-neighbour index maps of this segmentation's grid pairs (nearest_labels)
    radius = _radius(work, study)  # one working voxel in study voxels

    def screened(searched: DCEStudy, mask: np.ndarray, breast: np.ndarray, kinetic_rows: Optional[list] = None
                 ) -> tuple[np.ndarray, np.ndarray]:
        if fine_breast.get("of") is not breast:
            image = _mask_back(searched.image_like(breast.astype(np.uint8), np.uint8), study.reference)
            fine_breast.update(of=breast, mask=sitk.GetArrayFromImage(image) > 0)
        rows = [{"boundary_level": f["boundary_level"], "boundary_fraction": f.get("boundary_fraction"),
                 "centroid_lps_mm": centroid_lps(searched, *f["region"])}
                for f in kinetic_rows or [] if f.get("boundary_level") is not None and "region" in f]
        tumor = searched.image_like(mask.astype(np.uint8), np.uint8)
        if searched is not work:  # reoriented: back onto the working grid's axes (nearest neighbour, exact)
            tumor = preprocess.resample_back(tumor, work.reference)
        labels, n = ndimage.label(mask, structure=np.ones((3, 3, 3), bool))
        mapped = nearest_labels(labels.astype(np.int32), searched.reference, study.reference, maps)
        keep, on_border, unread = np.ones(n + 1, bool), np.zeros(n + 1, bool), np.zeros(n + 1, bool)
        mapping = mapped_to_study_grid(tumor, study, maps)  # the same for both readings
        for read in (rows, []):  # re-cut, then mapped as it is
            fine = delineated_on_study_grid(tumor, read, early, work, study, mapping=mapping)
            kept, border = screen(study, fine, fine_breast["mask"])
            owner = _owners(mapped, fine, radius)
            total = np.bincount(owner.ravel(), minlength=n + 1)
            keep &= 2 * np.bincount(owner[kept], minlength=n + 1) > total
            on_border |= 2 * np.bincount(owner[border], minlength=n + 1) > total
            unread |= total == 0
        keep[0] = on_border[0] = False
        unread = np.flatnonzero(unread[1:]) + 1
        if unread.size:
            coarse = screen(searched, np.isin(labels, unread), breast)
            return keep[labels] | coarse[0], on_border[labels] | coarse[1]
        return keep[labels], on_border[labels]
    return screened


def _owners(mapped: np.ndarray, fine: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """Per voxel of ``fine`` (a mask on the study grid) the working-grid component it comes from: its
    label in ``mapped`` (the components' labels mapped by nearest neighbour), else one within ``radius``
    voxels (one working voxel); 0 elsewhere."""
    owner = np.where(fine, mapped, 0)
    missing = fine & (mapped == 0)
    if missing.any():
        where = np.argwhere(missing)
        box = tuple(slice(int(a), int(b)) for a, b in zip(np.maximum(where.min(axis=0) - radius, 0),
                                                          np.minimum(where.max(axis=0) + radius + 1, fine.shape)))
        grown = ndimage.grey_dilation(mapped[box], footprint=np.ones(tuple(2 * r + 1 for r in radius), bool))
        owner[box] = np.where(missing[box], grown, owner[box])
    return owner


def to_study_grid(result: SegmentationResult, work: DCEStudy, study: DCEStudy) -> SegmentationResult:
    """``result``, computed on ``work`` (:func:`working_study`), on ``study``'s grid; ``extra`` gets
    ``working_grid`` (its spacing and size). ``result`` itself when ``work`` is ``study``."""
    if work is study:
        return result
    target = study.reference
    early = int(result.extra.get("early_phase") or 1)
    tumor = delineated_on_study_grid(result.tumor, result.extra.get("lesions", []), early, work, study)
    probability = _back(result.probability, target)
    if probability is not None:
        prob = sitk.GetArrayFromImage(probability)
        prob = agreeing_probability(prob, tumor)
        probability = study.image_like(prob, np.float32)
    extra = {**result.extra, "working_grid": {"spacing_mm": [round(s, 4) for s in work.spacing],
                                              "size": list(work.size), "study_spacing_mm": list(study.spacing)}}
    return replace(result, tumor=study.image_like(tumor.astype(np.uint8), np.uint8),
                   breast=_mask_back(result.breast, target), other_lesions=_mask_back(result.other_lesions, target),
                   probability=probability, uncertainty=_back(result.uncertainty, target), extra=extra)
