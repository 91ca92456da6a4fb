"""The search levels of the kinetic method (:mod:`.kinetic`): the thresholds scaled down for a
breast that enhances little, raised for marked background enhancement, and the subtraction and
curve levels searched last; the phase whose enhancement they read (:func:`early_index`).

Usage (``pe_breast``: early percent enhancement of the breast's valid voxels)::

    from BreastDCESegLib.models.kinetic_levels import scaled_to_background, subtraction_level
    weaker, background_p90 = scaled_to_background(params, pe[valid & ~large_lesion_voxels(pe, valid, sp, params, change)])
    level, level_maps = subtraction_level(params, subtraction, reference_signal, valid, maps)
    level, gate = curve_level(params, background_p90, interior_change, maps["change"], interior) or (None, None)
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any, Optional

import numpy as np
from scipy import ndimage

from .. import kinetics

if TYPE_CHECKING:
    from ..study import DCEStudy
    from .kinetic import KineticParams


def early_index(study: "DCEStudy", p: "KineticParams") -> int:
    """The phase whose enhancement the method reads: ``early_phase`` if given (negative: from the
    end), else the first post-contrast phase acquired 60 s or more after the pre-contrast one (by
    :func:`kinetics.reading_times`: without phase times, the phases spread over 6 minutes)."""
    if p.early_phase is not None:
        return p.early_phase if p.early_phase > 0 else study.n_phases + p.early_phase
    times = kinetics.reading_times(study)
    if times is not None:
        for k in range(1, study.n_phases):
            if times[k] - times[0] >= 60.0:
                return k
    return 1


def large_lesion_voxels(pe: np.ndarray, valid: np.ndarray, spacing, p: KineticParams,
                        change: Optional[np.ndarray] = None) -> np.ndarray:
    """The voxels of each compact component (elongation at most ``split_max_elongation``) of ``valid`` candidate
    voxels (early enhancement at least ``pe_threshold``) that holds ``background_exclude_mm3`` or more and, with a
    delayed ``change`` map, does not read persistent (its median change): a large cancer, left out of the breast's
    enhancement percentile (:func:`scaled_to_background`). A locally advanced cancer fills a tenth of a small breast
    or more, and that percentile then reads the cancer's own enhancement as marked background enhancement: the lesion
    thresholds rose above the cancer's mean (the second phantom with a 90 mm cancer, 189 mL: a 90th percentile of
    105 %, the threshold 137 %, the cancer's 111 %; docs/kinetic_method_log.md, *A cancer larger than 100 mL*).
    Background enhancement rises persistently or comes in sprawling components."""
    from ..morphology import label_26
    from .kinetic_components import elongation

    out = np.zeros(valid.shape, bool)
    if p.background_exclude_mm3 <= 0:
        return out
    labels, n = label_26(valid & (pe >= p.pe_threshold))
    voxel = float(np.prod(spacing))
    for k, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None or (labels[sl] == k).sum() * voxel < p.background_exclude_mm3:
            continue
        m = labels[sl] == k
        curve = None if change is None else kinetics.delayed_curve(float(np.median(change[sl][m])), p.curve_tolerance)
        if elongation(m, spacing) <= p.split_max_elongation and curve != "persistent":
            out[sl] |= m
    return out


def scaled_to_background(p: KineticParams, pe_breast: np.ndarray) -> tuple[list[KineticParams], float]:
    """(weaker search levels, the breast's 90th percentile of early enhancement): a study whose
    breast enhances little overall (no fat suppression, late first frame, minimal enhancement)
    and where the standard levels found no lesion is searched again with its candidate and lesion
    thresholds lowered in proportion to that percentile, down to ``min_threshold_scale``; where
    that finds nothing either and the breast enhances less still, once more down to
    ``last_threshold_scale`` for lesions of at least ``last_min_volume_mm3``, the levels at which
    large weak components are split scaled too (``scale_last_split``: at that level a weak cancer
    merges with the enhancing parenchyma around it). At both, the low pass for small lesions keeps
    components of ``scaled_low_min_volume_mm3`` and more. Never raised (marked background
    enhancement is split instead)."""
    background = float(np.percentile(pe_breast, 90)) if pe_breast.size else p.background_reference_pe
    ratio = background / p.background_reference_pe

    def scaled(scale: float, split: bool = False, **changes) -> KineticParams:
        return replace(p, pe_threshold=p.pe_threshold * scale, low_pe_threshold=p.low_pe_threshold * scale,
                       min_lesion_pe=p.min_lesion_pe * scale, low_min_lesion_pe=p.low_min_lesion_pe * scale,
                       split_pe_thresholds=tuple(t * scale for t in p.split_pe_thresholds) if split
                       else p.split_pe_thresholds, large_lesion_scale=1.0,
                       low_min_volume_mm3=max(p.low_min_volume_mm3, p.scaled_low_min_volume_mm3), **changes)

    levels = []
    if ratio < 1.0 and p.min_threshold_scale < 1.0:
        levels.append(scaled(max(ratio, p.min_threshold_scale)))
    if ratio < p.min_threshold_scale and p.last_threshold_scale < p.min_threshold_scale:
        levels.append(scaled(max(ratio, p.last_threshold_scale), p.scale_last_split,
                             min_volume_mm3=max(p.min_volume_mm3, p.last_min_volume_mm3)))
    return levels, background


def raised_for_marked_background(p: KineticParams, background: float) -> KineticParams:
    """With marked background enhancement (its 90th percentile times ``marked_background_ratio``
    above ``min_lesion_pe``) a lesion must stand that far above it: the lesion thresholds are
    raised to it and large weak components are split at 1.1, 1.3 and 1.5 times the percentile.
    A percentile above ``max_background_pe`` is not background parenchyma (the breast mask
    holds other enhancing tissue): nothing is raised."""
    level = p.marked_background_ratio * background
    if p.marked_background_ratio <= 0 or level <= p.min_lesion_pe or background > p.max_background_pe:
        return p
    return replace(p, min_lesion_pe=level, low_min_lesion_pe=max(p.low_min_lesion_pe, level),
                   split_pe_thresholds=tuple(round(k * background, 1) for k in (1.1, 1.3, 1.5)))


def subtraction_level(p: KineticParams, sub_e: np.ndarray, ref: float, valid: np.ndarray, maps: dict[str, Any]
                      ) -> tuple[KineticParams, dict[str, Any]]:
    """(level, maps) of the subtraction level: candidates and lesions read on the early subtraction in
    percent of the breast's median pre-contrast signal (``maps["pe"]`` replaced), at
    ``subtraction_candidate_ratio`` and ``subtraction_lesion_ratio`` times its
    ``subtraction_percentile`` over the breast. Without fat suppression a lesion's own percent
    enhancement is diluted by the bright fat around it (its smoothed pre-contrast signal), and the
    dark fibroglandular tissue's is inflated; the subtraction, which radiologists read there, still
    puts the lesion at the top of the breast. No low pass, no split of weak components; as at the
    scaled levels, a component needs ``scaled_low_min_volume_mm3`` (200 mm3): smaller ones were foci
    of background enhancement in lesion-free studies (63-146 mm3; the cancers found: 221-525 mm3)."""
    relative = 100.0 * sub_e / max(ref, 1e-6)
    top = float(np.percentile(relative[valid], p.subtraction_percentile))
    candidate = round(p.subtraction_candidate_ratio * top, 2)
    level = replace(p, pe_threshold=candidate, low_pe_threshold=candidate, split_pe_thresholds=(),
                    min_lesion_pe=round(p.subtraction_lesion_ratio * top, 2), large_lesion_scale=1.0,
                    small_washout_scale=1.0, min_volume_mm3=max(p.min_volume_mm3, p.scaled_low_min_volume_mm3))
    return level, {**maps, "pe": relative}


def curve_level_may_apply(p: KineticParams) -> bool:
    """True where the curve level may be searched: it is on (``curve_candidate_ratio``). Checked before the
    breast's interior is computed for it (:func:`curve_level` checks it again). In any breast: a weak
    cancer of a breast enhancing little (no fat suppression) or of a marked parenchyma (dense-motion)
    enhances as the top of the parenchyma, and the curve tells them apart in both."""
    return p.curve_candidate_ratio > 0


def curve_level(p: KineticParams, background: float, interior_change: Optional[float], change: np.ndarray,
                interior: np.ndarray) -> Optional[tuple[KineticParams, np.ndarray]]:
    """(level, candidate gate) of the curve level, or None where it does not apply: in a breast whose
    parenchyma rises clearly (``interior_change``, the median
    delayed change of the background band in the breast's ``interior``, above
    ``curve_tolerance + BELOW_BACKGROUND``), candidates are the interior's voxels whose own delayed
    ``change`` is at most ``min(MILD_RISE, interior_change - BELOW_BACKGROUND)`` (the plateau-read-late
    reading of :func:`kinetics.plateau_read_late`, voxel by voxel) and whose early enhancement reaches
    ``curve_candidate_ratio`` times the breast's 90th percentile ``background``; lesions a mean of
    ``curve_lesion_ratio`` times it, ``last_min_volume_mm3`` or more, elongation at most
    ``small_washout_max_elongation`` (compact: a vessel fragment or, on coarse voxels, a vessel's
    cross-section is not; a washout or plateau component, a persistent one read late as plateau included,
    of ``split_min_volume_mm3`` or more, at most ``split_max_elongation``, as at every level:
    :func:`.kinetic_components.select`), and they are
    re-delineated only inside the gate and no further than ``curve_grow_mm`` beyond the component (the
    gate also holds flat parenchyma and noise next to a large lesion, which the rules then read as
    diffuse enhancement).

    Without fat suppression and with a slow contrast agent a cancer can enhance no more than the
    top of the parenchyma around it (community-15t: a 27 mm washout cancer at a median 58 % early
    against the fibroglandular tissue's 90th percentile of 62 %); what tells them apart is the
    curve: the cancer's is flat (+8 %), the parenchyma's rises (+60 %). So can a cancer in a markedly
    enhancing parenchyma (dense-motion 12505: a 27 mm rim-enhancing washout cancer inside an 18 mL
    persistent component of mean 88 %, against a 90th percentile of 68 %)."""
    from .. import kinetics

    if (not curve_level_may_apply(p) or interior_change is None
            or interior_change - kinetics.BELOW_BACKGROUND <= p.curve_tolerance):
        return None
    gate = interior & (change <= min(kinetics.MILD_RISE, interior_change - kinetics.BELOW_BACKGROUND))
    candidate = round(p.curve_candidate_ratio * background, 2)
    lesion = round(p.curve_lesion_ratio * background, 2)
    level = replace(p, pe_threshold=candidate, low_pe_threshold=candidate, split_pe_thresholds=(),
                    min_lesion_pe=lesion, low_min_lesion_pe=lesion, large_lesion_scale=1.0, small_washout_scale=1.0,
                    min_volume_mm3=max(p.min_volume_mm3, p.last_min_volume_mm3),
                    max_elongation=min(p.max_elongation, p.small_washout_max_elongation), persistent_max_diameter_mm=0.0)
    return level, gate
