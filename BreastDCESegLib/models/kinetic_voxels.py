"""The last step of the kinetic method: each lesion the lesion rules kept re-cut on the study's own,
unsmoothed voxels.

The method searches and delineates on a smoothed subtraction (0.7 voxel, :mod:`.kinetic`), which
steadies a lesion's level against noise but spreads enhancement into the tissue between enhancing
voxels. A non-mass enhancement (clumped enhancing tissue through a segment of a duct system, half of
it enhancing) then reads as one solid region: on the multifocal-nme tuning studies its masks held
1.5x the enhancing voxels (Dice 0.64 on 18 such lesions). Re-cut on the unsmoothed subtraction, the
clumps come apart from the tissue between them. The lesion rules still read the delineated lesion:
they judge its form, which the re-cut voxels (a sponge, for non-mass enhancement) no longer show.

Per lesion (a 26-connected component of the tumor mask, on the study grid):

0. its open core filled (:func:`open_cores_filled`): a rim-enhancing cancer whose rim opens into
   non-enhancing tissue the breast mask keeps (the muscle in front of the chest wall) had only its rim as
   the tumor (fresh sagittal-uni 12306: Dice 0.77, 0.97 filled). Here, after the lesion rules: filled before
   them, a branching vessel tree (community-15t 12220) read as a 30 mL rim-enhancing mass;
1. its peak: the 95th percentile of the smoothed early subtraction inside it (as the delineation's);
2. its voxels whose unsmoothed early subtraction reaches the fraction of that peak its delineation found
   steepest (``boundary_fraction`` of its kinetic row, 0.5-0.7), or ``fraction`` where that is higher
   (a lesion without a kinetic row), holes filled;
3. given back: the parts of the lesion that step 2 drops and that are thick (they survive an erosion by
   one 6-connected step; given back with that step): a non-enhancing core the delineation filled (a
   rim-enhancing cancer whose core opens to the outside of the enhancing voxels) stays in the tumor,
   while the one- and two-voxel gaps between enhancing clumps and noise at the edge go;
4. where the re-cut parts the lesion, the pieces under ``MIN_PIECE_SHARE`` of its largest piece go: on the
   fresh 160 studies they were 2-6 voxel specks and a 35-voxel vessel stub (and one 26-voxel satellite),
   while the parted lesions that were two cancers touching held 18 % and 64 % of the larger one.

The re-cut never grows a lesion. Let to grow two voxels into what reaches the level, non-mass lesions
gained a little more, but at community-15t (1.5 T without fat suppression, glandular tissue beside a
cancer enhancing at 0.7 of its peak) cancers grew into that tissue (12206: Dice 0.85 -> 0.70).

The voxel uncertainty of the kinetic method (option ``tta``, as the networks' flip augmentation gives theirs):
each lesion cut at every level of ``ENSEMBLE_OFFSETS`` about its own (its fraction -0.1 to +0.1 of its peak, the
width of the range the delineation searched for its steepest boundary), the cut at its own level being its mask
and the others made within one voxel around the lesion (a lower level may take edge voxels the delineation left
out; :func:`cut_spread`); a voxel's uncertainty is the standard deviation of its membership over those cuts,
``sqrt(q (1 - q))`` for the share ``q`` of cuts that hold it. It is 0 where every cut agrees (a lesion's strongly
enhancing interior, a core given back, everything farther than one voxel from a lesion) and up to 0.49 on the band
of the boundary that moves with the level: where a reader refining the mask should look. The probability map
stays the method's own.

A floor of 0.6 instead of 0.5 (every lesion cut at 0.6 of its peak at least) did better on the
generator the method was tuned on (fresh multifocal-nme 0.77 against 0.75) and worse on the second
phantom, written separately with partial volume from geometry (0.874 against 0.883: edges at half
coverage cut away). Measured figures: docs/kinetic_method_log.md, *Non-mass enhancement*. ``voxel_recut_fraction`` of
:class:`.kinetic.KineticParams` sets ``fraction`` (0: off).

Usage::

    from BreastDCESegLib.models import kinetic_voxels
    tumor = kinetic_voxels.recut(tumor, subtraction, fraction=0.6)  # masks and arrays (z, y, x)
    result = kinetic_voxels.recut_result(result, study, 0.5)        # a SegmentationResult on study's grid
    result = kinetic_voxels.recut_result(result, study, 0.5, ensemble=True)  # with result.uncertainty
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable, Optional

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..results import SegmentationResult
from ..study import DCEStudy
from .kinetic_delineate import PEAK_PERCENTILE, fill_open_core
from .kinetic_grid import SMOOTH_SIGMA_VOX, agreeing_probability, lesion_levels

MIN_PIECE_SHARE = 0.1   # a piece of a re-cut lesion smaller than this share of its largest piece is dropped
_CONN26 = np.ones((3, 3, 3), bool)
ENSEMBLE_OFFSETS = (-0.1, -0.05, 0.0, 0.05, 0.1)  # the cut levels of the uncertainty, about a lesion's own fraction
CENTROID_MATCH_MM = 1.0  # a tumor row and a lesion of the mask are one when their centroids are this close


def recut_lesion(lesion: np.ndarray, sub: np.ndarray, smoothed: np.ndarray, fraction: float,
                 peak: Optional[float] = None) -> np.ndarray:
    """One lesion (mask ``lesion``) re-cut at ``fraction`` of its peak (module docstring; ``peak``: given, that
    value instead of the lesion's own); ``sub``: the unsmoothed early subtraction, ``smoothed``: the same smoothed,
    all of one shape."""
    level = fraction * (float(np.percentile(smoothed[lesion], PEAK_PERCENTILE)) if peak is None else peak)
    cut = ndimage.binary_fill_holes(lesion & (sub >= level))
    dropped = lesion & ~cut
    cut |= lesion & ndimage.binary_dilation(ndimage.binary_erosion(dropped))
    pieces, n = ndimage.label(cut, _CONN26)
    if n > 1:  # the pieces the re-cut parted: the small ones go (a vessel stub, noise at the edge)
        sizes = np.bincount(pieces.ravel(), minlength=n + 1)
        sizes[0] = 0
        cut = (sizes >= MIN_PIECE_SHARE * sizes.max())[pieces] & cut
    return cut


def enough_enhancing(found: list[dict[str, Any]], sub: np.ndarray, smoothed: np.ndarray, fraction: float,
                     min_volume_mm3: float, voxel_mm3: float) -> list[dict[str, Any]]:
    """``found`` (delineated lesions: ``f["region"]``, box and mask), each given ``enhancing_volume_mm3``, its
    volume re-cut (:func:`recut_lesion`, at its ``boundary_fraction`` or ``fraction`` where higher) on ``sub``,
    the unsmoothed early subtraction (``smoothed``: as the method smoothed it); those under ``min_volume_mm3``
    marked rejected, their region dropped. ``found`` as it is for ``fraction`` <= 0 (no re-cut).

    For the curve level (:func:`.kinetic_levels.curve_level`), whose 500 mm3 keep vessel fragments and small
    foci out: smoothed, a benign focus of a marked parenchyma reads 500 mm3 and more; re-cut, 11-18 voxels
    (benign-mix 8638 and 13615, without a cancer), where the cancers it finds keep 73-635."""
    if fraction <= 0:
        return found
    for f in found:
        if f.get("rejected") or "region" not in f:
            continue
        box, region = f["region"]
        cut = recut_lesion(region, sub[box].astype(np.float32), smoothed[box],
                           max(fraction, float(f.get("boundary_fraction", fraction))))
        f["enhancing_volume_mm3"] = round(float(cut.sum()) * voxel_mm3, 2)
        if f["enhancing_volume_mm3"] < min_volume_mm3:
            f["rejected"] = f"under {min_volume_mm3:g} mm3 of enhancing voxels, re-cut on the unsmoothed subtraction"
            f.pop("region")
    return found


def open_cores_filled(tumor: np.ndarray, breast: np.ndarray, spacing, min_enclosed: float = 0.6) -> np.ndarray:
    """``tumor`` with each 26-connected lesion's open core filled (:func:`.kinetic_delineate.fill_open_core`):
    after the lesion rules, which judge each lesion as delineated (a vessel tree filled to its hull would read as
    a rim-enhancing mass), before the re-cut, which keeps a thick non-enhancing part of a lesion."""
    out = tumor.copy()
    labels, _n = ndimage.label(tumor, _CONN26)
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        out[box] |= fill_open_core(labels[box] == index, breast[box], min_enclosed, spacing)
    return out


def cut_spread(lesion: np.ndarray, cut: np.ndarray, sub: np.ndarray, smoothed: np.ndarray, fraction: float,
               peak: float) -> np.ndarray:
    """The membership deviation (float32) over the cuts of ``lesion`` at ``fraction`` + ``ENSEMBLE_OFFSETS`` of its
    ``peak``: ``cut`` (its re-cut at ``fraction``) the middle one, the others cut within one voxel around the lesion
    (26-connected), so that a lower level may take the voxels at its edge that the delineation left out."""
    around = ndimage.binary_dilation(lesion, _CONN26)
    members = [cut if offset == 0 else recut_lesion(around, sub, smoothed, fraction + offset, peak)
               for offset in ENSEMBLE_OFFSETS]
    share = np.mean(members, axis=0)
    return np.sqrt(share * (1.0 - share)).astype(np.float32)


def recut(tumor: np.ndarray, sub: np.ndarray, fraction: float = 0.5) -> np.ndarray:
    """``tumor`` (z, y, x) with each 26-connected lesion re-cut on the unsmoothed early subtraction
    ``sub`` (module docstring); unchanged for ``fraction`` <= 0 or an empty mask."""
    tumor = np.asarray(tumor, bool)
    return _recut(tumor, ndimage.label(tumor, _CONN26)[0], sub, lambda _index: fraction)[0] if fraction > 0 else tumor


def _recut(tumor: np.ndarray, labels: np.ndarray, sub: np.ndarray, fraction_of: Callable[[int], float],
           spread: Optional[np.ndarray] = None) -> tuple[np.ndarray, list[int]]:
    """(re-cut mask, each lesion's voxels after the re-cut): lesion ``i`` of ``labels`` (the
    26-connected components of ``tumor``) at ``fraction_of(i)`` of its peak. ``spread`` (float32, the
    shape of ``tumor``): given, it receives each lesion's membership deviation over the cut levels
    ``ENSEMBLE_OFFSETS`` about its fraction (module docstring)."""
    out, voxels = np.zeros_like(tumor), []
    margin = 1 + int(np.ceil(3 * SMOOTH_SIGMA_VOX))  # the smoothing's reach
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        box = tuple(slice(max(0, s.start - margin), min(size, s.stop + margin)) for s, size in zip(box, tumor.shape))
        lesion = labels[box] == index
        box_sub = sub[box].astype(np.float32)
        smoothed = ndimage.gaussian_filter(box_sub, SMOOTH_SIGMA_VOX)
        fraction, peak = fraction_of(index), float(np.percentile(smoothed[lesion], PEAK_PERCENTILE))
        cut = recut_lesion(lesion, box_sub, smoothed, fraction, peak)
        out[box] |= cut
        if spread is not None:
            spread[box] = np.maximum(spread[box], cut_spread(lesion, cut, box_sub, smoothed, fraction, peak))
        voxels.append(int(cut.sum()))
    return out, voxels


def recut_result(result: SegmentationResult, study: DCEStudy, fraction: float, ensemble: bool = False
                 ) -> SegmentationResult:
    """``result`` (the kinetic method's, on ``study``'s grid, after the lesion rules) with its tumor
    re-cut (:func:`recut`) on the early subtraction (phase ``result.extra["early_phase"]`` minus phase 0),
    the probability map made to agree (0.5 or more inside the tumor, under 0.5 outside) and each
    tumor row of ``extra["lesion_decisions"]`` given the re-cut ``volume_mm3`` (the volume the rules
    read, of the delineated lesion, kept as ``delineated_volume_mm3``; the rows' shape measures stay
    the delineation's: the rules judge a lesion's form, not its enhancing voxels). ``result``
    itself for ``fraction`` <= 0 or an empty tumor. ``ensemble``: also the voxel uncertainty, the membership
    deviation over the cut levels (module docstring; all 0 for an empty tumor, none with the re-cut off), as
    ``result.uncertainty``."""
    tumor = result.tumor_array() > 0
    if ensemble and fraction > 0 and not tumor.any():
        return replace(result, uncertainty=study.image_like(np.zeros(tumor.shape, np.float32), np.float32))
    if fraction <= 0 or not tumor.any():
        return result
    early = int(result.extra.get("early_phase") or 1)
    breast = result.breast_array() > 0 if result.breast is not None else np.ones_like(tumor)
    tumor = open_cores_filled(tumor, breast, study.spacing)
    labels, n = ndimage.label(tumor, _CONN26)
    own = lesion_levels(labels, n, study, result.extra.get("lesions") or [])[1]  # the delineation's fractions
    spread = np.zeros(tumor.shape, np.float32) if ensemble else None
    cut, voxels = _recut(tumor, labels, study.array(early).astype(np.float32) - study.array(0).astype(np.float32),
                         lambda index: max(fraction, float(own[index])), spread)
    extra = {**result.extra, "voxel_recut": {"fraction": fraction, "voxels_before": int(tumor.sum()),
                                             "voxels_after": int(cut.sum())}}
    if extra.get("lesion_decisions"):
        extra["lesion_decisions"] = _with_recut_volumes(extra["lesion_decisions"], _centroids(labels, n, study),
                                                        voxels, study)
    changes = {"tumor": study.image_like(cut.astype(np.uint8), np.uint8), "extra": extra}
    if spread is not None:
        changes["uncertainty"] = study.image_like(spread, np.float32)
    if result.probability is not None:
        prob = agreeing_probability(sitk.GetArrayFromImage(result.probability), cut)
        changes["probability"] = study.image_like(prob, np.float32)
    return replace(result, **changes)


def _centroids(labels: np.ndarray, n: int, study: DCEStudy) -> list[np.ndarray]:
    """The LPS centroid (mm) of each of the ``n`` lesions of ``labels``, in label order."""
    return [np.asarray(study.reference.TransformContinuousIndexToPhysicalPoint((x, y, z)))
            for z, y, x in ndimage.center_of_mass(labels > 0, labels, range(1, n + 1))]


def _with_recut_volumes(rows: list[dict[str, Any]], centroids: list[np.ndarray], voxels: list[int],
                        study: DCEStudy) -> list[dict[str, Any]]:
    """``rows`` with each tumor row's ``volume_mm3`` that of its re-cut lesion: the lesion whose
    centroid (``centroids``) is its ``centroid_lps_mm`` (within ``CENTROID_MATCH_MM``)."""
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
