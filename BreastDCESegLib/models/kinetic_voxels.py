"""The last step of the kinetic method: each lesion's edge re-cut on the study's own, unsmoothed voxels.

The method searches and delineates on a smoothed subtraction (0.7 voxel, :mod:`.kinetic`), which
steadies a lesion's level against noise but spreads enhancement into the tissue between enhancing
voxels. A non-mass enhancement (clumped enhancing tissue through a segment of a duct system, half of
it enhancing) then reads as one solid region: on the multifocal-nme tuning studies its masks held
1.5x the enhancing voxels (Dice 0.64 on 18 such lesions). Re-cut on the unsmoothed subtraction, the
clumps come apart from the tissue between them.

Per lesion (a 26-connected component of the tumor mask, on the study grid):

1. its peak: the 95th percentile of the smoothed early subtraction inside it (as the delineation's);
2. the voxels within two voxels of it (6-connected steps, none nearer another lesion) whose unsmoothed
   early subtraction reaches ``fraction`` of that peak, the 26-connected parts of them that touch the
   lesion, holes filled;
3. given back: the parts of the lesion that step 2 drops and that are thick (they survive an erosion by
   one 6-connected step; given back with that step): a non-enhancing core the delineation filled (a
   rim-enhancing cancer whose core opens to the outside of the enhancing voxels) stays in the tumor,
   while the one- and two-voxel gaps between enhancing clumps and noise at the edge go.

On the tuning studies (seeds ``8000 + 100 * profile + 0..7`` and multifocal-nme ``8800..8849``, 160
matrix, unsmoothed per-lesion Dice): non-mass lesions 0.64 -> 0.77, the other multifocal-nme lesions
0.87 -> 0.90, and no profile's mean lower (README, *Non-mass enhancement*). ``fraction`` 0.5 let noise
at the edge in (tiny-lesions 0.84 -> 0.74); 0.65 cut into rims (sagittal-uni 0.95 -> 0.95, academic-3t
0.95 -> 0.94). The field ``voxel_recut_fraction`` of :class:`.kinetic.KineticParams` sets it (0: off).

Usage::

    from BreastDCESegLib.models import kinetic_voxels
    tumor = kinetic_voxels.recut(tumor, subtraction, fraction=0.6)  # masks and arrays (z, y, x)
    result = kinetic_voxels.recut_result(result, study, 0.6)        # a SegmentationResult on study's grid
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..results import SegmentationResult
from ..study import DCEStudy

SMOOTH_SIGMA_VOX = 0.7  # the smoothing the lesion's peak is read on (KineticParams.smooth_sigma_vox)
PEAK_PERCENTILE = 95.0  # the lesion's peak: this percentile of its smoothed subtraction (as kinetic_delineate)
ZONE_STEPS = 2          # the re-cut reaches this many 6-connected steps beyond the lesion
_CONN26 = np.ones((3, 3, 3), bool)
CENTROID_MATCH_MM = 1.0  # a tumor row and a lesion of the mask are one when their centroids are this close


def recut_lesion(lesion: np.ndarray, sub: np.ndarray, smoothed: np.ndarray, fraction: float,
                 zone: np.ndarray) -> np.ndarray:
    """One lesion (mask ``lesion``) re-cut in ``zone`` at ``fraction`` of its peak (module docstring);
    ``sub``: the unsmoothed early subtraction, ``smoothed``: the same smoothed, all of one shape."""
    level = fraction * float(np.percentile(smoothed[lesion], PEAK_PERCENTILE))
    above = zone & (sub >= level)
    parts, _n = ndimage.label(above, _CONN26)
    ids = np.unique(parts[lesion & above])
    cut = ndimage.binary_fill_holes(np.isin(parts, ids[ids > 0]))
    dropped = lesion & ~cut
    thick = lesion & ndimage.binary_dilation(ndimage.binary_erosion(dropped))
    return cut | thick


def recut(tumor: np.ndarray, sub: np.ndarray, fraction: float = 0.6) -> np.ndarray:
    """``tumor`` (z, y, x) with each 26-connected lesion re-cut on the unsmoothed early subtraction
    ``sub`` (module docstring); unchanged for ``fraction`` <= 0 or an empty mask."""
    return _recut(np.asarray(tumor, bool), sub, fraction)[0]


def _recut(tumor: np.ndarray, sub: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """(re-cut mask, the 26-connected lesion labels of ``tumor``, each lesion's voxels after the re-cut)."""
    labels, n = ndimage.label(tumor, _CONN26)
    if fraction <= 0 or n == 0:
        return tumor, labels, np.bincount(labels.ravel(), minlength=n + 1)[1:].tolist()
    out, voxels = np.zeros_like(tumor), []
    margin = ZONE_STEPS + 1 + int(np.ceil(3 * SMOOTH_SIGMA_VOX))
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        box = tuple(slice(max(0, s.start - margin), min(size, s.stop + margin)) for s, size in zip(box, tumor.shape))
        lesion = labels[box] == index
        others = (labels[box] > 0) & ~lesion
        zone = ndimage.binary_dilation(lesion, iterations=ZONE_STEPS)
        if others.any():
            zone &= ~ndimage.binary_dilation(others, iterations=ZONE_STEPS)
        box_sub = sub[box].astype(np.float32)
        cut = recut_lesion(lesion, box_sub, ndimage.gaussian_filter(box_sub, SMOOTH_SIGMA_VOX), fraction,
                           zone | lesion)
        out[box] |= cut
        voxels.append(int(cut.sum()))
    return out, labels, voxels


def recut_result(result: SegmentationResult, study: DCEStudy, fraction: float) -> SegmentationResult:
    """``result`` (the kinetic method's, on ``study``'s grid, after the lesion rules) with its tumor
    re-cut (:func:`recut`) on the early subtraction (phase ``result.extra["early_phase"]`` minus phase 0),
    the probability map made to agree (0.5 or more inside the tumor, under 0.5 outside) and each
    tumor row of ``extra["lesion_decisions"]`` given the re-cut ``volume_mm3`` (the volume the rules
    read, of the delineated lesion, kept as ``delineated_volume_mm3``; the rows' shape measures stay
    the delineation's: the rules judge a lesion's form, not its enhancing voxels). ``result``
    itself for ``fraction`` <= 0 or an empty tumor."""
    tumor = result.tumor_array() > 0
    if fraction <= 0 or not tumor.any():
        return result
    early = int(result.extra.get("early_phase") or 1)
    cut, labels, voxels = _recut(tumor, study.array(early).astype(np.float32) - study.array(0).astype(np.float32),
                                 fraction)
    extra = {**result.extra, "voxel_recut": {"fraction": fraction, "voxels_before": int(tumor.sum()),
                                             "voxels_after": int(cut.sum())}}
    if extra.get("lesion_decisions"):
        extra["lesion_decisions"] = _with_recut_volumes(extra["lesion_decisions"], labels, voxels, study)
    changes = {"tumor": study.image_like(cut.astype(np.uint8), np.uint8), "extra": extra}
    if result.probability is not None:
        prob = sitk.GetArrayFromImage(result.probability)
        prob = np.where(cut, np.maximum(prob, 0.5), np.minimum(prob, 0.49)).astype(np.float32)
        changes["probability"] = study.image_like(prob, np.float32)
    return replace(result, **changes)


def _with_recut_volumes(rows: list[dict[str, Any]], labels: np.ndarray, voxels: list[int], study: DCEStudy
                        ) -> list[dict[str, Any]]:
    """``rows`` with each tumor row's ``volume_mm3`` that of its re-cut lesion: the lesion of ``labels``
    whose centroid is its ``centroid_lps_mm`` (within ``CENTROID_MATCH_MM``)."""
    centroids = [np.asarray(study.reference.TransformContinuousIndexToPhysicalPoint(
        [float(v) for v in (np.argwhere(labels[box] == i).mean(axis=0) + [s.start for s in box])[::-1]]))
        for i, box in enumerate(ndimage.find_objects(labels), start=1)]
    out = []
    for row in rows:
        row = dict(row)
        if row.get("decision") == "tumor" and row.get("centroid_lps_mm") is not None and centroids:
            gaps = [float(np.linalg.norm(c - np.asarray(row["centroid_lps_mm"]))) for c in centroids]
            nearest = int(np.argmin(gaps))
            if gaps[nearest] <= CENTROID_MATCH_MM:
                row["delineated_volume_mm3"] = row.get("volume_mm3")
                row["volume_mm3"] = round(voxels[nearest] * study.voxel_volume_mm3, 2)
        out.append(row)
    return out
