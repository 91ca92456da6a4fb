"""The weight-free kinetic method: functional-tumor-volume style enhancement thresholding.

1. Whole-breast mask from the pre-contrast image (:mod:`.kinetic_breast`).
2. Candidate tumor voxels in the breast: early percent enhancement (smoothed
   subtraction / pre-contrast signal, with a floor on the pre-contrast signal) above a
   threshold, still enhancing at the late phase, then a small morphological opening
   (removes vessels, skin folds and misregistration edges).
3. Connected components with volume, mean enhancement, BI-RADS delayed curve type (from the early and late
   subtraction; skipped with one post-contrast phase) and elongation; small persistent foci (benign, BPE; a mild rise
   well below the background enhancement's, or of a focus under 9 mm enhancing 2x the background's at most 15 %, is a
   plateau read late, :func:`kinetics.plateau_read_late`, not one), thin long ones (vessels; a large one is searched
   again opened by a 3 mm ball, for a lesion touching a vessel: :mod:`.kinetic_search`) and weak ones are
   dropped; a large weak component (a lesion merged with marked background enhancement) is searched again at higher
   enhancement levels (a part of it strong enough there but still sprawling, at the next one too); the rest are
   ranked by volume x enhancement x curve weight (:mod:`.kinetic_components`; the cut at a fraction of the best
   score is made after step 4, so that a component without a boundary sets no reference, and without those the
   rules of step 5 exclude as on the breast border, :func:`.kinetic_components.rank_inside`). A
   small compact washout component (a tiny cancer diluted by partial volume) needs 0.9x the lesion threshold. In a
   breast that enhances little overall (its 90th percentile below 55 %) a large compact washout or plateau component
   needs its lesion threshold scaled by that ratio (to 0.6x at most); when nothing is found (no lesion, or only
   lesions without a boundary, step 4) the thresholds are scaled down and searched again (to 0.6x at most; then, for
   lesions of 500 mm3 or more, to 0.5x, the split levels of large weak components scaled as well); with marked
   background enhancement (1.3x its 90th percentile above 110 %, the percentile at most 110 %) a lesion must reach
   that level, and large weak components are split at 1.1, 1.3 and 1.5x the percentile.
4. Each kept lesion is re-delineated at the fraction of its own peak enhancement whose boundary is steepest (searched
   from 50 % to 70 %; from 55 % for a small component, whose partial volume spreads its half maximum outward; above it
   when that mask is diffuse: :mod:`.kinetic_delineate`), its core (rim enhancement) filled, thin protrusions (a
   vessel leaving it) trimmed (:func:`.kinetic_delineate.trim_thin`); a lesion that grows several times its own volume
   at the lowest level has no boundary (background enhancement) and is dropped, unless, at the standard thresholds, a
   washout or plateau lesion grows into voxels that read washout or plateau too (its own heterogeneous or rim-
   enhancing tumor; background rises persistently). A lesion split out of a large weak component grows only into
   voxels enhancing above its split level or, if lower, 1.3x the background's 90th percentile (a weakly enhancing
   breast's scaled split level can sit above much of the cancer's own diluted enhancement).
5. With a ``screen`` (the lesion rules, :func:`lesions.screen`; inference passes it), a level whose lesions the
   rules all exclude (the border, a vessel, a fibroadenoma) found nothing: those lesions are cut out
   (``other_lesions``) and the search goes on: to weaker enhancement levels only if all it excluded lay on the
   breast border (skin, chest wall), else (what enhanced inside was read and excluded) to the subtraction level.
   The subtraction level, searched last, with a screen only, in a breast enhancing less than the reference (90th
   percentile under ``background_reference_pe``; :func:`.kinetic_levels.subtraction_level`), reads candidates on
   the early subtraction in percent of the breast's median pre-contrast signal, at 1.2x its 99th percentile in the
   breast (lesions: a mean of 1.35x, 200 mm3 or more): without fat suppression the fat around a small cancer
   dilutes its percent enhancement, while the subtraction still puts it at the top of the breast
   (docs/kinetic_method_log.md, *Search levels screened by the lesion rules, and a subtraction level*). The curve
   level, after it (:func:`.kinetic_levels.curve_level`; with a screen, in any breast whose parenchyma, read in
   its interior, rises clearly: one enhancing little, without fat suppression, or markedly): candidates are the
   interior's voxels whose own curve is flat against it (a plateau read late, voxel by voxel) and that enhance at
   least the breast's 90th percentile; compact lesions of 500 mm3 or more, grown only into such voxels, 3 mm at
   most, that hold 500 mm3 of enhancing voxels re-cut on the unsmoothed subtraction as well
   (:func:`.kinetic_voxels.enough_enhancing`).
6. Multifocal disease: once an enhancement level found lesions, the next weaker one (a breast enhancing
   less than the reference) is searched within ``satellite_mm`` of them (:mod:`.kinetic_satellites`).

Run by :func:`inference.segment`, a study finer than ``working_spacing_mm`` is resampled to it first and the masks
mapped back, the tumor re-cut on the study's voxels (:mod:`.kinetic_grid`), before the final lesion rules; after
them each kept lesion is re-cut on the study's unsmoothed subtraction (:mod:`.kinetic_voxels`: non-mass
enhancement keeps its enhancing voxels, not the tissue between them).

Usage::

    from BreastDCESegLib.models.kinetic import KineticParams, segment_kinetic
    result = segment_kinetic(study, KineticParams(pe_threshold=80.0), progress=print)
    result.tumor, result.breast, result.extra["lesions"]
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from typing import Any, Callable, Optional

import numpy as np
from scipy import ndimage

from .. import kinetics
from ..results import SegmentationResult
from ..study import DCEStudy
from .kinetic_breast import breast_mask
from .kinetic_components import Screen, rank, rank_inside, regions
from .kinetic_delineate import delineate
from .kinetic_grid import centroid_lps
from .kinetic_levels import (curve_level, curve_level_may_apply, early_index, large_lesion_voxels,
                             raised_for_marked_background, scaled_to_background, subtraction_level)
from .kinetic_satellites import lesions_beside
from .kinetic_search import find
from .kinetic_voxels import enough_enhancing

Progress = Optional[Callable[..., None]]


@dataclass
class KineticParams:
    """Thresholds of the kinetic method (percent values in %, lengths in mm)."""

    early_phase: Optional[int] = None      # None: first post phase acquired >= 60 s (or phase 1)
    late_phase: int = -1
    pe_threshold: float = 80.0             # early percent enhancement of candidate voxels
    low_pe_threshold: float = 60.0         # second pass for small lesions diluted by partial volume
    low_min_lesion_pe: float = 85.0        # mean enhancement a second-pass component must reach
    split_pe_thresholds: tuple = (100.0, 125.0)  # inside a large weak component (a lesion merged with
                                           # background enhancement), candidates at these higher levels
    split_min_volume_mm3: float = 1000.0   # weak components at least this large are split
    max_lesion_volume_mm3: float = 100000.0  # larger components are background enhancement (split, not kept) ...
    large_lesion_max_volume_mm3: float = 400000.0  # ... but a compact washout or plateau one (_large_compact) in the
                                           # main pass is one lesion up to this: a locally advanced cancer (9 cm ball)
    background_exclude_mm3: float = 50000.0  # a compact candidate component this large, not persistent, is left out
                                           # of the breast's enhancement percentile (a large cancer; 0: off)
    low_max_volume_mm3: float = 30000.0    # larger low-pass components are background enhancement: split
    low_min_volume_mm3: float = 60.0       # smaller low-pass components are noise ...
    scaled_low_min_volume_mm3: float = 200.0  # ... and at the levels scaled to a weakly enhancing breast, these
                                           # (smaller: vessel fragments, blobs of background; 0: as low_min_volume_mm3)
    split_max_elongation: float = 3.0      # ... into compact lesions only (a vessel fragment is not one)
    vessel_open_mm: float = 3.0            # a large component rejected as elongated is searched again opened by a
                                           # ball of this radius (a lesion touching a vessel; kinetic_search)
    marked_background_ratio: float = 1.3   # lesions at least this multiple of the background's 90th percentile
                                           # of early enhancement (0: off; _raised_for_marked_background)
    max_background_pe: float = 110.0       # ... when that percentile is at most this (marked BPE reaches ~100 %;
                                           # above, the top decile is a large lesion or other tissue)
    background_reference_pe: float = 55.0  # the thresholds above hold for a breast whose 90th percentile of
    min_threshold_scale: float = 0.6       # early enhancement is this; a breast enhancing less (no fat
                                           # suppression, slow frames) scales them down, to this factor at most
    last_threshold_scale: float = 0.5      # ... and, where that finds nothing either, to this factor at most,
    last_min_volume_mm3: float = 500.0     # for lesions at least this large (a weaker search, a larger lesion)
    scale_last_split: bool = True          # ... with the split levels of large weak components scaled as well
    large_lesion_scale: float = 0.6        # in a breast enhancing less than the reference, a large compact washout
                                           # or plateau component (_large_compact) needs its lesion threshold scaled
                                           # by the breast's ratio, to this factor at most, at every level
                                           # (1.0: off; replaced by the factor used for the study)
    small_washout_scale: float = 0.9       # a small compact washout component (under small_component_mm3,
    small_washout_max_elongation: float = 2.0  # elongation at most this) needs this fraction of the lesion
                                           # threshold: partial volume dilutes a tiny cancer's mean (1.0: off;
                                           # not in the low pass, whose lower threshold is that allowance)
    search_past_unbounded: bool = True     # a level whose lesions all lack a boundary found nothing: search on
    min_pre_fraction: float = 0.15         # pre-contrast floor, fraction of the breast median signal
    working_spacing_mm: tuple = (2.0, 2.0, 3.0)  # inference runs a finer study resampled to this (kinetic_grid)
    late_fraction: float = 0.3             # late enhancement must keep this fraction of the early one
    curve_tolerance: float = kinetics.CURVE_TOLERANCE  # BI-RADS plateau band of the delayed change
    smooth_sigma_vox: float = 0.7
    opening_mm: float = 2.0
    min_volume_mm3: float = 60.0
    min_lesion_pe: float = 110.0           # a component's mean early enhancement must reach this
    persistent_max_diameter_mm: float = 14.0  # persistent components smaller than this are dropped
    max_elongation: float = 6.0            # sqrt of the largest / smallest principal variance (a level may
                                           # lower it; kinetic_components.select keeps split_max_elongation
                                           # for a large compact component read on SHAPE_MIN_VOXELS)
    min_score_fraction: float = 0.15       # further lesions must score this fraction of the best, or lie within
    satellite_mm: float = 30.0             # this distance of it; after a level found lesions, the next weaker level
    satellite_gap_mm: float = 5.0          # is searched within it, beyond this one (kinetic_satellites; 0: off)
    max_lesions: int = 4
    boundary_fraction: float = 0.5         # re-delineation from this fraction of a lesion's peak
    small_boundary_fraction: float = 0.55  # ... (this one for components under small_component_mm3: partial volume)
    boundary_search_max: float = 0.7       # ... up to this one, at the level of steepest boundary (0: no search)
    core_fraction: float = 0.7             # the lesion grows from voxels above this fraction of its peak
    core_fill_min_enclosed: float = 0.6    # a hole open to the outside is core if the lesion borders this share
    trim_voxels: float = 1.0               # thin protrusions (a vessel leaving the lesion) trimmed: opening radius
    refine_margin_mm: float = 6.0
    split_grow_background_ratio: float = 1.3  # a lesion split out of a weak component grows only into voxels
                                           # above its split level or, if lower, this multiple of the background's
                                           # 90th percentile (kinetic_delineate; 0: the split level)
    max_growth_ratio: float = 4.0         # a lesion whose re-delineation grows beyond this multiple of the
    small_max_growth_ratio: float = 6.0   # component found (this one for components under small_component_mm3,
    small_component_mm3: float = 500.0    # where partial volume shrinks the component) has no boundary: it is
                                          # background enhancement, not a lesion (0: no limit) ...
    own_curve_max_growth_ratio: float = 12.0  # ... unless, at the standard thresholds, a washout/plateau component
                                          # grows into voxels of its own curve (kinetic_delineate; 0: off)
    skin_mm: float = 4.0
    chest_margin_mm: float = 20.0          # muscle + ribs between the breast and the lung front
    min_lung_ml: float = 20.0
    subtraction_candidate_ratio: float = 1.2  # the subtraction level (kinetic_levels.subtraction_level), searched
    subtraction_lesion_ratio: float = 1.35    # last: candidates at this multiple of the breast's percentile of
    subtraction_percentile: float = 99.0      # the relative subtraction, lesions with a mean at the second
                                              # multiple (0: no subtraction level)
    curve_candidate_ratio: float = 1.0     # the curve level (kinetic_levels.curve_level), searched last: candidates
    curve_lesion_ratio: float = 1.25       # at this multiple of the background's 90th percentile, lesions a mean
                                           # of the second (0: no curve level) ...
    curve_grow_mm: float = 3.0             # ... re-delineated no further than this beyond the component found
                                           # (0: the candidate gate only)
    voxel_recut_fraction: float = 0.5      # last, each lesion's edge re-cut on the study's unsmoothed voxels at
                                           # its delineation's fraction of its peak, at least this (kinetic_voxels;
                                           # 0: off)


# ----------------------------------------------------------------------------- tumor
CANDIDATES_DELINEATED = 12  # components delineated per level (highest scores first) before the rank cut


def segment_kinetic(study: DCEStudy, params: Optional[KineticParams] = None, progress: Progress = None,
                    screen: Optional[Screen] = None) -> SegmentationResult:
    """Tumor (and whole-breast) mask of ``study`` by enhancement kinetics; no weights needed.

    ``screen(study, mask, breast, kinetic_rows)``: the parts of a level's lesions (``mask``, their rows) that
    the lesion rules keep and exclude as on the breast border (:func:`lesions.screen`); a level whose lesions
    they all exclude found nothing (step 5). Without it the rules apply only afterwards, to the result."""
    p = params or KineticParams()
    report = progress or (lambda *a, **k: None)
    seconds: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[stage], clock = round(now - clock, 4), now

    sp = study.spacing
    report("breast", 0.0, "whole-breast mask from the pre-contrast phase")
    breast = breast_mask(study, p)
    lap("breast")
    report("kinetics", 0.2, "subtraction, percent enhancement, curve type")
    early = early_index(study, p)
    late = p.late_phase if p.late_phase > 0 else study.n_phases + p.late_phase
    has_late = late != early and late > early
    subs = kinetics.subtraction_images(study)
    sigma = p.smooth_sigma_vox
    sub_e = ndimage.gaussian_filter(subs[early - 1], sigma)
    pre = ndimage.gaussian_filter(study.array(0), sigma)
    ref = float(np.median(pre[breast])) if breast.any() else float(np.median(pre[pre > 0]))
    floor = p.min_pre_fraction * ref
    pe = 100.0 * sub_e / np.maximum(pre, floor)
    maps = {"pe": pe}
    valid = breast & (pre >= floor)
    if has_late:
        sub_l = ndimage.gaussian_filter(subs[late - 1], sigma)
        maps["change"] = (sub_l - sub_e) / np.maximum(sub_e, 1e-3)
        band = kinetics.background_band(valid, pe)  # the whole mask's: the plateau-read-late reference
        maps["background_change"] = float(np.median(maps["change"][band])) if band.sum() >= 50 else None
        valid &= sub_l >= p.late_fraction * sub_e
    del subs
    given = p
    lap("kinetics")
    report("candidates", 0.5, f"{int((valid & (pe >= p.pe_threshold)).sum())} enhancing voxels")
    weaker, background = scaled_to_background(p, pe[valid & ~large_lesion_voxels(pe, valid, sp, p, maps.get("change"))])
    maps["background_pe"] = background  # the contrast a small focus needs for the small-lesion plateau band
    p = raised_for_marked_background(p, background)
    p = replace(p, large_lesion_scale=min(1.0, max(background / p.background_reference_pe, p.large_lesion_scale)))
    levels = [(level, maps, None) for level in [p, *weaker]]  # (params, maps, candidate gate)
    if (given.subtraction_candidate_ratio > 0 and valid.any() and screen is not None  # a reading this weak needs
            and background < given.background_reference_pe):  # the rules; a breast enhancing little (no fat sat.)
        levels.append((*subtraction_level(p, sub_e, ref, valid, maps), None))
    curve = interior_change = None
    if has_late and screen is not None and curve_level_may_apply(p):
        interior = kinetics.breast_interior(breast, sp)  # the parenchyma's curve, for the curve level only
        inner = kinetics.background_band(band, pe, interior)
        interior_change = float(np.median(maps["change"][inner])) if inner.sum() >= 50 else None
        curve = curve_level(p, background, interior_change, maps["change"], interior)
    if curve is not None:
        levels.append((curve[0], {**maps}, curve[1]))  # its own maps: searched after a level the rules excluded

    def delineate_best(found: list, level: KineticParams, level_maps: dict, standard: bool, gate=None) -> list:
        best = sorted(found, key=lambda f: -f["score"])[:CANDIDATES_DELINEATED]
        for f in best:
            if f.get("split_level") is not None:  # the floor of its re-delineation
                f["grow_level"] = (min(f["split_level"], level.split_grow_background_ratio * background)
                                   if level.split_grow_background_ratio > 0 else f["split_level"])
            delineate(f, sub_e, breast, sp, level, level_maps["pe"], study.voxel_volume_mm3, maps.get("change"),
                      standard, gate, level.curve_grow_mm if gate is not None else 0.0)
        return best

    feats: list[dict[str, Any]] = []
    excluded = np.zeros(study.shape, bool)      # the lesions of levels the rules excluded (other_lesions)
    screened_out = np.zeros(study.shape, bool)  # ... and the voxels next to them, out of later searches
    read_inside = False  # the rules excluded a lesion inside the breast, not on its border (skin, chest wall)
    reached: dict[str, KineticParams] = {}     # the last enhancement level searched, and the others reached
    for index, (level, level_maps, gate) in enumerate(levels):
        if read_inside and level_maps is maps:
            continue  # the rules excluded what enhanced inside: no weaker enhancement level, the subtraction one
        p = reached["curve" if gate is not None else "enhancement" if level_maps is maps else "subtraction"] = level
        more, kept = find(valid & ~screened_out & (True if gate is None else gate), level_maps, sp, has_late, p)
        feats += more
        delineated = delineate_best(kept, p, level_maps, index == 0, gate)
        if gate is not None:  # the curve level's lesions hold its minimum volume in enhancing voxels too
            delineated = enough_enhancing(delineated, study.array(early) - study.array(0), sub_e,
                                          p.voxel_recut_fraction, p.min_volume_mm3, study.voxel_volume_mm3)
        kept, on_border = rank_inside([f for f in delineated if not f.get("rejected")], p, screen, study, breast)
        feats += [f for f in delineated if f.get("rejected") and not any(f is g for g in feats)]  # split, border
        if on_border.any():  # skin or chest wall: listed, and out of the later levels
            excluded |= on_border
            screened_out |= ndimage.binary_dilation(excluded)
        found = regions(kept, study.shape) if kept and screen is not None else None
        verdict = screen(study, found, breast, kept) if found is not None else None  # (kept, on the border)
        if verdict is not None and not verdict[0].any():
            read_inside |= bool((found & ~verdict[1]).any())
            excluded |= found
            screened_out |= ndimage.binary_dilation(excluded)
            for f in kept:
                f.pop("region")
                f["rejected"] = "excluded by the lesion rules"
            feats += [f for f in kept if not any(f is g for g in feats)]
            kept = []
            continue
        if kept or (delineated and not p.search_past_unbounded):
            break
    weaker_next = [lv for lv, m, g in levels[index + 1:] if m is maps and g is None][:1] if kept else []
    if weaker_next and screen is not None and level_maps is maps and gate is None and p.satellite_mm > 0:
        kept = rank(kept + lesions_beside(  # multifocal disease beside a lesion found (kinetic_satellites)
            kept, weaker_next[0], lambda m, lv: find(m, maps, sp, has_late, lv)[1],
            lambda fs, lv: delineate_best(fs, lv, maps, False), screen, study, breast, valid & ~screened_out), p, sp)
    found_on = None if level_maps is maps else "subtraction" if gate is None else "curve"
    for f in kept:
        f.update({"found_on": found_on} if found_on else {})
        if found_on == "subtraction":  # report its percent enhancement as well
            f["mean_relative_subtraction"] = f["mean_pe"]
            f["mean_pe"] = float(pe[f["slices"]][f["labels"][f["slices"]] == f["label"]].mean())
    lap("components")
    report("refine", 0.8, f"{len(kept)} lesion(s) of {len(feats)} enhancing components")
    tumor = np.zeros(study.shape, bool)
    prob = np.zeros(study.shape, np.float32)
    prob[breast] = 0.45 / (1 + np.exp(-(pe[breast] - p.pe_threshold) / 20.0))
    for f in kept:
        if f.get("rejected"):
            continue
        sl, mask = f.pop("region")
        tumor[sl] |= mask
        f["centroid_lps_mm"] = centroid_lps(study, sl, mask)  # kinetic_grid re-cuts the lesion by it
        rel = sub_e[sl] / max(f["peak_subtraction"], 1e-6)
        soft = 1 / (1 + np.exp(-(rel - f["boundary_fraction"]) / 0.1))
        prob[sl] = np.where(mask, np.maximum(soft, 0.5), np.minimum(np.maximum(prob[sl], soft * 0.49), 0.49))
    kept = [f for f in kept if not f.get("rejected")]
    lap("refine")
    report("refine", 1.0, f"candidates {tumor.sum() * study.voxel_volume_mm3 / 1000.0:.2f} mL "
                          "(before the lesion rules and the re-cut)")
    lesions = [{k: v for k, v in f.items() if k not in ("slices", "label", "labels")} for f in kept]
    rejected = rejected_rows(study, feats)
    extra = {"params": asdict(given), "early_phase": early, "late_phase": late if has_late else None,
             "pre_floor": floor, "breast_reference_signal": ref, "background_pe_p90": round(background, 2),
             "background_delayed_change": maps.get("background_change"),
             "thresholds_used": {k: round(getattr(reached["enhancement"], k), 2)  # the last enhancement level
                                 for k in ("pe_threshold", "low_pe_threshold", "min_lesion_pe", "low_min_lesion_pe",
                                           "min_volume_mm3", "low_min_volume_mm3", "large_lesion_scale")},
             "interior_delayed_change": interior_change,  # read where the curve level may apply
             **{f"{name}_level": None if name not in reached else {  # searched: its thresholds (the subtraction
                 "candidate_threshold": reached[name].pe_threshold,  # level's in % of the breast's median
                 "lesion_threshold": reached[name].min_lesion_pe,   # pre-contrast signal)
                 **({"min_volume_mm3": reached[name].min_volume_mm3} if name == "subtraction" else {}),
                 "found": bool(kept) and found_on == name} for name in ("subtraction", "curve")},
             "lesions": lesions,
             "rejected_components": rejected, "n_components": len(feats),
             "curve_names": list(kinetics.CURVE_NAMES)}
    return SegmentationResult(tumor=study.image_like(tumor, np.uint8), breast=study.image_like(breast, np.uint8),
                              probability=study.image_like(prob, np.float32), model_id="kinetic", device="cpu",
                              seconds=seconds, extra=extra,
                              other_lesions=study.image_like(excluded, np.uint8) if excluded.any() else None)


def rejected_rows(study: DCEStudy, feats: list[dict[str, Any]], n: int = 50) -> list[dict[str, Any]]:
    """The ``n`` highest-scoring rejected components of ``feats`` (``extra["rejected_components"]``), each with
    its reason (``rejected``) and physical centre (``centroid_lps_mm``, LPS mm: where a missed lesion was
    dropped, ``benchmarks/lesion_features.py``)."""
    rows = []
    for f in sorted((f for f in feats if f.get("rejected")), key=lambda f: -f.get("score", 0.0))[:n]:
        row = {k: v for k, v in f.items() if k not in ("slices", "label", "labels", "region")}
        if "labels" in f:
            row["centroid_lps_mm"] = centroid_lps(study, f["slices"], f["labels"][f["slices"]] == f["label"])
        rows.append(row)
    return rows


def segment_any_orientation(study: DCEStudy, params: Optional[KineticParams] = None, progress: Progress = None,
                            screen: Optional[Screen] = None) -> SegmentationResult:
    """:func:`segment_kinetic`, identical for every axis order of one study: a flipped or permuted
    study (sagittal, coronal) is reoriented exactly onto LPS axes (the method's filters work in
    voxel units) and the masks are mapped back. An oblique study stays on its own grid (the
    method reads the anterior-posterior axis from the direction): resampling it would add
    empty corners outside the acquired field of view."""
    from .. import preprocess

    if np.allclose(study.direction, np.eye(3).ravel(), atol=1e-6) or not preprocess.is_axis_aligned(study.direction):
        return segment_kinetic(study, params=params, progress=progress, screen=screen)
    result = segment_kinetic(preprocess.canonical_study(study), params=params, progress=progress, screen=screen)
    back = {name: None if image is None else preprocess.resample_back(image, study.reference)
            for name, image in (("tumor", result.tumor), ("breast", result.breast),
                                ("probability", result.probability), ("other_lesions", result.other_lesions))}
    return replace(result, **back)
