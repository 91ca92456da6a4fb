"""Lesion-level decisions: every candidate lesion of a tumor mask gets a row and a malignancy
score; the tumor mask keeps the lesions that score at least ``lesion_threshold``, the others
stay listed (report ``extra["lesions"]``) and, when asked, form a second segment
("Other enhancing lesions", label 3).

Candidates are the 26-connected components of a model's tumor mask (for a network, its
probability above the model threshold after small-component removal; for the kinetic
method, the lesions it kept). Each row (:func:`lesion_rows`) holds what
:func:`clinical.lesion_table` measures (volume, longest diameter, early percent enhancement,
mean SER, dominant BI-RADS curve type) plus morphology:

* ``sphericity`` — SimpleITK's roundness, ``pi^(1/3) (6 V)^(2/3) / A`` (1 for a ball);
* ``irregularity`` — ``1 - V / V_hull``, the share of the lesion's convex hull it leaves
  empty (0 for a smooth convex lesion; lobulated and spiculated margins score high).

The curve a lesion is read by (``curve_read``) is the more suspicious (:func:`most_suspicious`) of
its dominant curve type and the curve of its most enhancing quarter (``core_curve_type`` from
``core_delayed_change``, :func:`kinetics.core_delayed_change`), as BI-RADS reads a curve where the
lesion enhances most: on a small lesion the partial-volume voxels around it rise with the
parenchyma and turn a plateau lesion persistent. Fibroadenomas measured the same in their core
within 0.08; on the tuning seeds of the site profiles the mean kinetic Dice went 0.769 -> 0.781
(tiny-lesions 0.49 -> 0.60), with no study lower by more than 0.02.

Malignancy score (a documented rule, not a trained classifier; phantom-tuned)::

    z = -1.0 + C[curve] + 2.0 * clip(SER - 1, -0.5, 0.5) + 4.0 * irregularity
        + 3.0 * (0.85 - sphericity) + 1.5 * log2(diameter_mm / 10) + 1.5 * rim
    score = 1 / (1 + exp(-z))
    C = {washout: +2.0, plateau: +1.0, undetermined: 0.0, persistent: -0.5, none: -1.0}

``rim`` is 1 for rim enhancement (BI-RADS: a suspicious internal enhancement pattern), read on the
first post-contrast phase: the lesion's inner part (holes filled, deeper than 0.75 of its largest
depth) enhancing under 0.65 of the lesion's 90th percentile (``inner_enhancement_ratio``,
:func:`benign_patterns.inner_enhancement_ratio`; 0 when the inner part has under 8 voxels). A
rim-enhancing mass is not the fibroadenoma pattern either, whatever its curve.

A lesion of a study with one post-contrast phase has no delayed curve ("undetermined"): no kinetic
evidence either way (0.0; it was +1.0, the plateau's, and a smooth 8 mm benign focus then stayed as
the study's best lesion: on the 32 two-phase tuning studies the kinetic Dice went 0.767 -> 0.854, three
studies without a cancer came out empty and two cancers lost Dice, 0.97 -> 0.91 and 0.87 -> 0.72).

A round (sphericity >= 0.85), smooth, persistent lesion of 10 mm or less scores about
0.2 (excluded); an irregular washout lesion scores above 0.9 (kept). A lesion is kept when
it scores at least ``lesion_threshold`` (0.5), and the study's best-scoring lesion already
from ``primary_threshold`` (0.35): a large persistent cancer, the only candidate, stays.
Exclusions, whatever the score (``excluded_because`` in the row; measured on kinetic and
network candidates of the site phantoms, where every cancer stayed within them):

* on the breast border — more than half of the voxels in the outer rim (5 mm) of the breast
  mask (``border_fraction``: skin folds, chest wall, a mask that took in the heart's edge; for a
  tumor network also outside its breast mask where the intensity-based one reads rim or nothing:
  the nipple, :mod:`breast_border`); a compact lesion (sphericity >= 0.8, thinness <= 2.4: a deep
  cancer against the pectoralis) only above 0.8;
* tubular or sheet-like — ``thinness`` (SimpleITK's largest of elongation and flatness)
  above ``max_thinness`` (2.8; cancers measured at most 2.3): vessels, skin folds (such a lesion
  of 2 mL or more, or a branching one, is opened by a ball of ``vessel_open_mm``: a compact mass a
  vessel joins is read apart as a lesion of its own, :func:`lesion_necks.separate_from_vessels`);
  vessel fragments: under 0.5 mL, thinness above ``small_max_thinness`` (2.4, a compact lesion's limit; cancers <= 2.05;
  a 0.56 mL non-mass cancer 2.45 at 1.25 mm), or under 1 mL above ``rim_vessel_thinness`` (2.0) with over 20 % on the
  rim (cancers over 2.0: <= 11 % on it; over 20 % on it: <= 1.92; ``benchmarks/lesion_features.py``): entering vessels;
  a tumor network's lesion under 1 mL whose enhancement goes on as a tube (:mod:`vessel_continuation`);
* diffuse — sphericity below ``min_sphericity`` (0.55; cancers of the default generator at least
  0.73, large washout cancers on 12.8 mm³ voxels 0.57): background parenchymal or non-mass
  enhancement regions;
* branching — ``irregularity`` above ``max_irregularity`` (0.75; kept tuning lesions <= 0.60): a vessel tree;
* the BI-RADS benign patterns of :mod:`benign_patterns` — the fibroadenoma pattern (persistent,
  circumscribed oval, under ``benign_pattern_mm``), masses similar to it in the same study
  (``similar_benign``), multiple bilateral persistent masses (``bilateral_benign``) and, beside a
  kept washout or plateau lesion (the best-scoring one), a persistent mass over ``away_persistent_mm``
  from it;
* a fat-containing mass — at most ``fat_hilum_mm`` (15 mm) long, its notch reading fat on the
  pre-contrast image (:mod:`fat_hilum`): the fatty hilum of an intramammary lymph node;
* a persistent mass joined by a narrow neck to a washout or plateau one in a kept lesion: it is
  split off and listed (``neck_ratio``, :mod:`lesion_necks`; a fibroadenoma touching a cancer).

A persistent lesion whose rise is mild (in its most enhancing quarter, <= 30 %) and at least 25
points below the breast's background enhancement (``background_delayed_change``,
:func:`kinetics.background_delayed_change`) is a plateau read late (a slowly clearing contrast
agent, a late first frame): ``plateau_read_late`` in the row, scored as plateau and not taken
for the fibroadenoma pattern (beside a fibroadenoma, nearly oval, it is a similar mass). On the
community-15t tuning seeds a 22 mm plateau cancer rising 15 % against a background rising 69 %
went from excluded (Dice 0.0) to kept (0.97).

The decision is on by default (``lesion_rules``): on the held-out phantoms it does not lower
the Dice of the kinetic method or of resunet-demo (``benchmarks/lesion_rules.py``, README).

Usage::

    from BreastDCESegLib import lesions
    rows = lesions.lesion_rows(result.tumor, study)              # one dict per component
    kept, other, rows = lesions.decide(result.tumor, study, threshold=0.5)
    result = lesions.apply(study, result, {"lesion_rules": True, "other_lesions": True})
    kept_part = lesions.screen(options)(study, mask, breast)  # the kinetic method's search screen

The kinetic method applies the same rules while it searches (:func:`screen`): a level whose
lesions they all exclude found nothing. The lesions it cut out arrive as ``result.other_lesions``;
:func:`apply` lists them after the tumor's rows (``screened_out``; the search's ``excluded_because`` if none read).
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import replace
from typing import Any, Callable, Optional

import numpy as np
import SimpleITK as sitk

from . import fat_hilum, kinetics
from .benign_patterns import (benign_pattern, equivalent_diameter_mm, inner_enhancement_ratio, middle_phase, midline_x,
                              most_suspicious, multiple_bilateral, persistent_away, rim_enhancing, similar_masses,
                              washout_or_plateau_anchor)
from .breast_border import NetworkBorder, border_fraction, network_rim
from .lesion_necks import NECK_RATIO, separate_from_vessels, separate_joined_persistent
from .lesion_shape import ellipsoid_residual, morphology
from .results import SegmentationResult
from .study import DCEStudy
from .vessel_continuation import continuation_thinness

DEFAULTS: dict[str, Any] = {
    "lesion_rules": True,        # apply the keep/exclude decision to the tumor mask (held-out phantoms: kinetic
                                 # Dice 0.9185 -> 0.9212, resunet-demo 0.8584 -> 0.8587; benchmarks/lesion_rules.py)
    "lesion_threshold": 0.5,     # malignancy score a lesion needs to stay in the tumor mask
    "primary_threshold": 0.35,   # ... or, for the best-scoring lesion of the study, this
    "other_lesions": False,      # also return the excluded lesions as a second segment (label 3)
    "benign_pattern_mm": 30.0,   # fibroadenoma pattern below this longest diameter (or an elongated oval whose
                                 # sphere-equivalent diameter is under 0.8 of it) is excluded (0: off)
    "max_thinness": 2.8,         # more tubular or sheet-like than this: a vessel or skin fold (0: off)
    "min_sphericity": 0.55,      # less compact than this: diffuse background / non-mass enhancement (0: off)
    "max_irregularity": 0.75,    # filling less of its convex hull than 1 - this: a branching vessel tree (0: off)
    "rim_vessel_thinness": 2.0,  # small (VESSEL_FRAGMENT), thinner than this, on the rim: an entering vessel (0: off)
    "small_max_thinness": 2.4,   # under VESSEL_FRAGMENT's fragment_mm3, thinner than this: a vessel fragment (0: off)
    "bilateral_benign": True,    # persistent masses in both breasts are benign (multiple_bilateral; False: off)
    "similar_benign": True,      # nearly oval persistent masses beside a fibroadenoma are benign (similar_masses)
    "away_persistent_mm": 30.0,  # a persistent mass this far from the best washout / plateau one: listed (0: off)
    "neck_ratio": NECK_RATIO,    # a persistent mass a neck this narrow joins to a kept washout one: listed (0: off)
    "vessel_open_mm": 3.0,       # a large lesion excluded as a vessel opened by this ball: masses left (0: off)
    "fat_hilum_mm": 15.0,        # a mass at most this long with fat in its notch: a lymph node (fat_hilum; 0: off)
}
COMPACT = {"sphericity": 0.8, "thinness": 2.4}  # a compact lesion: at least this round, at most this thin
COMPACT_BORDER_FRACTION = 0.8  # a compact lesion is excluded as on the border only above this share
VESSEL_FRAGMENT = {"volume_mm3": 1000.0, "border_fraction": 0.2, "fragment_mm3": 500.0}  # entering: the first two
EXCLUSION_LIMITS = ("benign_pattern_mm", "max_thinness", "min_sphericity", "max_irregularity", "rim_vessel_thinness",
                    "small_max_thinness")
CURVE_WEIGHT = {"washout": 2.0, "plateau": 1.0, "undetermined": 0.0, "persistent": -0.5, "none": -1.0}
RIM_WEIGHT = 1.5  # rim enhancement (benign_patterns.rim_enhancing) in the malignancy score
OTHER_LABEL = 3
OTHER_SEGMENT = {"name": "Other enhancing lesions", "label": OTHER_LABEL, "color": (0.95, 0.75, 0.1),
                 "terminology": {"category": ("49755003", "SCT", "Morphologically Altered Structure"),
                                 "type": ("52988006", "SCT", "Lesion"), "region": ("76752008", "SCT", "Breast")}}


def malignancy_score(curve: str, ser: Optional[float], irregularity: float, sphericity: float,
                     diameter_mm: float, rim: bool = False) -> float:
    """The documented logistic score in [0, 1] (module docstring); ``rim``: rim enhancement."""
    z = -1.0 + CURVE_WEIGHT.get(curve, CURVE_WEIGHT["undetermined"]) + (RIM_WEIGHT if rim else 0.0)
    if ser is not None and math.isfinite(ser):
        z += 2.0 * float(np.clip(ser - 1.0, -0.5, 0.5))
    z += 4.0 * irregularity + 3.0 * (0.85 - sphericity) + 1.5 * math.log2(max(diameter_mm, 1.0) / 10.0)
    return 1.0 / (1.0 + math.exp(-z))


def lesion_rows(mask: sitk.Image, study: DCEStudy, min_volume_mm3: float = 0.0, breast: Optional[np.ndarray] = None,
                border_rim: Optional[NetworkBorder] = None, continuation: bool = False
                ) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """(component labels (z, y, x), one row per component, largest first) of ``mask`` on the study grid;
    with the ``breast`` mask (z, y, x) also ``border_fraction``, the share of the lesion in its outer rim
    (in ``border_rim`` when given, a tumor network's); with ``continuation`` (a tumor network's lesions) the rows
    under ``VESSEL_FRAGMENT["volume_mm3"]`` get ``continuation_thinness`` (:mod:`vessel_continuation`)."""
    from . import clinical

    table = clinical.lesion_table(mask, study, min_volume_mm3)
    array = sitk.GetArrayViewFromImage(mask) != 0
    labels, keep = clinical.label_lesions(array, study.spacing, min_volume_mm3)
    from scipy import ndimage

    boxes = ndimage.find_objects(labels)
    has_breast = breast is not None and bool(breast.any())
    background: Optional[list] = None  # the breast's background delayed change, computed when first needed
    early = kinetics.initial_phase(study)
    rows = []
    for row, index in zip(table, keep):
        box = boxes[index - 1]
        comp = labels[box] == index  # the component in its bounding box
        sph, irr, thin = morphology(labels, index, study.spacing, box)
        padded = tuple(slice(max(0, b.start - 3), b.stop + 3) for b in box)
        oval = ellipsoid_residual(labels[padded] == index, study.spacing)
        dominant = str(row.get("dominant_curve_type", "none"))
        dominant = dominant if dominant in CURVE_WEIGHT else "undetermined"
        core = core_curve = None
        if dominant in ("persistent", "plateau", "washout"):
            core = kinetics.core_delayed_change(study, box, comp, early=early)
            core_curve = kinetics.delayed_curve(core)
        curve = most_suspicious(dominant, core_curve)
        ser = row.get("mean_ser")
        change = late_rise = None
        if curve == "persistent" and breast is not None:
            if background is None:
                background = [kinetics.background_delayed_change(study, breast, early=early)]
            change = kinetics.median_delayed_change(study, box, comp, early=early)
        if dominant == "persistent" and any(t is None for t in study.times) and study.n_post >= 3:
            late_rise = kinetics.median_delayed_change(study, box, comp, early=middle_phase(study))
        late = change is not None and kinetics.plateau_read_late(
            change if core is None else core, background[0],
            diameter_mm=equivalent_diameter_mm(row["volume_ml"] * 1000.0))
        read = "plateau" if late else curve
        inner = inner_enhancement_ratio(study, box, comp)
        rim = rim_enhancing({"inner_enhancement_ratio": inner})
        score = malignancy_score(read, ser, irr, sph, float(row["longest_diameter_mm"]), rim)
        rows.append({"index": row["index"], "label": int(index), "volume_mm3": round(row["volume_ml"] * 1000.0, 2),
                     "longest_diameter_mm": row["longest_diameter_mm"], "curve_type": dominant, "curve_read": curve,
                     "mean_ser": ser, "mean_percent_enhancement": row.get("mean_percent_enhancement"),
                     "sphericity": round(sph, 4), "irregularity": round(irr, 4), "thinness": round(thin, 3),
                     "ellipsoid_residual": round(oval, 4), "rim_enhancement": rim,
                     "inner_enhancement_ratio": None if inner is None else round(inner, 4),
                     "malignancy_score": round(score, 4), "centroid_lps_mm": row["centroid_lps_mm"]})
        if core is not None:
            rows[-1].update(core_delayed_change=round(core, 4), core_curve_type=core_curve)
        if change is not None:
            rows[-1].update(delayed_change=round(change, 4), plateau_read_late=late,
                            background_delayed_change=None if background[0] is None else round(background[0], 4))
        if late_rise is not None:
            rows[-1]["late_rise"] = round(late_rise, 4)
        if border_rim is not None:
            rows[-1]["border_fraction"] = round(border_rim.fraction(comp, box), 4)
        elif has_breast:
            rows[-1]["border_fraction"] = round(border_fraction(breast, comp, box, study.spacing), 4)
        if continuation and rows[-1]["volume_mm3"] < VESSEL_FRAGMENT["volume_mm3"]:
            rows[-1]["continuation_thinness"] = round(continuation_thinness(study, labels, index, box), 3)
    return labels, rows


ON_BORDER = "on the breast border (skin or chest wall)"  # the border exclusion's reason


def exclusion(row: dict[str, Any], benign_pattern_mm: float = 0.0, max_thinness: float = 0.0,
              min_sphericity: float = 0.0, max_border_fraction: float = 0.5, max_irregularity: float = 0.0,
              rim_vessel_thinness: float = 0.0, small_max_thinness: float = 0.0) -> Optional[str]:
    """Why a candidate is not a tumor whatever its score (None: it is scored): on the breast
    border, tubular/sheet-like, a small vessel fragment, diffuse, branching, or the fibroadenoma pattern."""
    compact = row["sphericity"] >= COMPACT["sphericity"] and row["thinness"] <= COMPACT["thinness"]
    rim = row.get("border_fraction", 0.0)
    if rim > max(max_border_fraction, COMPACT_BORDER_FRACTION if compact else 0.0):
        return ON_BORDER
    if max_thinness > 0 and row["thinness"] > max_thinness:
        return f"tubular or sheet-like (thinness {row['thinness']:.1f} > {max_thinness:g}): vessel or skin fold"
    volume, thin, small = row.get("volume_mm3", math.inf), row["thinness"], VESSEL_FRAGMENT
    if volume < small["volume_mm3"] and 0 < rim_vessel_thinness < thin and rim > small["border_fraction"]:
        return f"thin ({thin:.1f} > {rim_vessel_thinness:g}), {rim:.0%} on the breast rim: entering vessel"
    if volume < small["fragment_mm3"] and 0 < small_max_thinness < thin:
        return f"small and thin ({thin:.2f} > {small_max_thinness:g}, under 0.5 mL): a vessel fragment"
    if max_thinness > 0 and row.get("continuation_thinness", 0.0) > max_thinness:  # a network's lesions only
        return (f"a piece of a vessel: its enhancement goes on as a tube (thinness {row['continuation_thinness']:.1f}"
                f" > {max_thinness:g}, vessel_continuation)")
    if min_sphericity > 0 and row["sphericity"] < min_sphericity:
        return f"diffuse (sphericity {row['sphericity']:.2f} < {min_sphericity:g}): background or non-mass enhancement"
    if max_irregularity > 0 and row["irregularity"] > max_irregularity:
        return f"branching (irregularity {row['irregularity']:.2f} > {max_irregularity:g}): a vessel tree"
    if benign_pattern(row, benign_pattern_mm):
        size = (f"< {benign_pattern_mm:g} mm" if row["longest_diameter_mm"] < benign_pattern_mm
                else f"an elongated oval, {row['longest_diameter_mm']:.0f} mm long")
        return f"fibroadenoma pattern (persistent, circumscribed oval, {size})"
    return None


def decide(mask: sitk.Image, study: DCEStudy, threshold: float = 0.5, primary_threshold: float = 0.35,
           min_volume_mm3: float = 0.0, breast: Optional[np.ndarray] = None, max_border_fraction: float = 0.5,
           bilateral_benign: bool = False, similar_benign: bool = False, away_persistent_mm: float = 0.0,
           neck_ratio: float = 0.0, vessel_open_mm: float = 0.0, fat_hilum_mm: float = 0.0,
           border_rim: Optional[NetworkBorder] = None, continuation: bool = False, **rules: float
           ) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]:
    """(kept mask, other mask, rows with ``decision``; the masks never overlap): lesions scoring >= ``threshold``
    are kept, and the best-scoring one from ``primary_threshold``; not, whatever its score, a lesion that
    :func:`exclusion` names a reason for (``rules``: its limits; border and rim with the ``breast`` mask), one of
    :func:`multiple_bilateral` (``bilateral_benign``) or :func:`similar_masses` (``similar_benign``), a kept
    persistent mass ``away_persistent_mm`` from the best kept washout or plateau lesion (:func:`persistent_away`),
    a fat-containing mass at most ``fat_hilum_mm`` long (:func:`fat_hilum.fat_containing`: a lymph node),
    and with ``neck_ratio`` a persistent mass a narrow neck joins to a washout or plateau one in a kept lesion
    (:func:`lesion_necks.separate_joined_persistent`: a row of its own). ``border_rim``, ``continuation``: a tumor
    network's readings (:func:`lesion_rows`)."""
    rows_of = functools.partial(lesion_rows, border_rim=border_rim, continuation=continuation)
    labels, rows = rows_of(mask, study, min_volume_mm3, breast)
    if any(t is None for t in study.times) and study.n_post < 3:  # no late rise to check: a plateau
        rules = {**rules, "benign_pattern_mm": 0.0}  # cancer read on its upslope would read persistent
    bilateral = multiple_bilateral(rows, midline_x(breast, study) if bilateral_benign and breast is not None else None,
                                   float(rules.get("benign_pattern_mm", 0.0)))
    similar = similar_masses(rows, float(rules.get("benign_pattern_mm", 0.0))) if similar_benign else []
    if vessel_open_mm > 0:  # a mass a vessel joins: read apart (lesion_necks)
        separate_from_vessels(labels, rows, study, breast, rows_of, vessel_open_mm,
                              lambda r: exclusion(r, max_border_fraction=max_border_fraction, **rules), COMPACT)
    fatty = fat_hilum.fat_containing(labels, rows, study, breast, fat_hilum_mm)
    for r in rows:
        reason = exclusion(r, max_border_fraction=max_border_fraction, **rules)
        if reason is None and r["label"] in bilateral:
            reason = "multiple bilateral persistent masses (BI-RADS: benign, e.g. fibroadenomas)"
        if reason is None and r["label"] in similar:
            reason = "persistent, nearly oval, like a fibroadenoma of the same study (BI-RADS: multiple similar masses)"
        if reason is None and r["label"] in fatty:
            reason = fat_hilum.reason(fat_hilum_mm)
        if reason is not None:
            r["malignancy_score"], r["excluded_because"] = 0.0, reason
    keep_ids = [r["label"] for r in rows if r["malignancy_score"] >= threshold]
    best = max(rows, key=lambda r: r["malignancy_score"], default=None)
    if best is not None and best["malignancy_score"] >= primary_threshold and best["label"] not in keep_ids:
        keep_ids.append(best["label"])
    kept_rows = [r for r in rows if r["label"] in keep_ids]
    anchor = washout_or_plateau_anchor(kept_rows)
    if anchor is not None:
        away = set(persistent_away(kept_rows, anchor, away_persistent_mm))
        for r in rows:
            if r["label"] in away:
                keep_ids.remove(r["label"])
                r["malignancy_score"], r["excluded_because"] = 0.0, (
                    f"persistent, over {away_persistent_mm:g} mm from a washout or plateau lesion (not its satellite)")
    if neck_ratio > 0:
        separate_joined_persistent(labels, rows, keep_ids, study, breast, rows_of, neck_ratio)
    other_ids = [r["label"] for r in rows if r["label"] not in keep_ids]
    for r in rows:
        r["decision"] = "tumor" if r["label"] in keep_ids else "other enhancing lesion"
    return np.isin(labels, keep_ids), np.isin(labels, other_ids), rows


def rule_options(options: Optional[dict[str, Any]]) -> dict[str, Any]:
    """``options`` over :data:`DEFAULTS` (the keys of the lesion rules only; None values left at the default)."""
    return {**DEFAULTS, **{k: v for k, v in (options or {}).items() if k in DEFAULTS and v is not None}}


def _decide(opts: dict[str, Any], mask: sitk.Image, study: DCEStudy, breast: Optional[np.ndarray],
            rim: Optional[NetworkBorder] = None, network: bool = False
            ) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]]]:
    return decide(mask, study, float(opts["lesion_threshold"]), float(opts["primary_threshold"]), breast=breast,
                  bilateral_benign=bool(opts["bilateral_benign"]), similar_benign=bool(opts["similar_benign"]),
                  away_persistent_mm=float(opts["away_persistent_mm"]), neck_ratio=float(opts["neck_ratio"]),
                  vessel_open_mm=float(opts["vessel_open_mm"]), fat_hilum_mm=float(opts["fat_hilum_mm"]),
                  border_rim=rim, continuation=network, **{k: float(opts[k]) for k in EXCLUSION_LIMITS})


def screen(options: Optional[dict[str, Any]] = None
           ) -> Optional[Callable[..., tuple[np.ndarray, np.ndarray]]]:
    """The rules of :func:`apply` as the kinetic method's search screen
    (``kinetic.segment_kinetic(screen=...)``): ``kept, on_border = screen(study, mask, breast,
    kinetic_rows)``, the part of a lesion mask (a boolean array on ``study``'s grid) that the rules
    keep and the part they exclude as on the breast border; None when ``lesion_rules`` is off.
    ``kinetic_rows``, the kinetic method's rows of those lesions, serve a screen that re-delineates
    them on another grid (``kinetic_grid.screen_on_study_grid``); the rules read the mask alone."""
    opts = rule_options(options)
    if not opts["lesion_rules"]:
        return None

    def screened(study: DCEStudy, mask: np.ndarray, breast: np.ndarray, kinetic_rows: Optional[list] = None
                 ) -> tuple[np.ndarray, np.ndarray]:
        from . import clinical

        keep, _other, rows = _decide(opts, study.image_like(mask.astype(np.uint8), np.uint8), study, breast)
        labels, _ids = clinical.label_lesions(mask, study.spacing, 0.0)  # the labels of lesion_rows
        return keep, np.isin(labels, [r["label"] for r in rows if r.get("excluded_because") == ON_BORDER])
    return screened


def apply(study: DCEStudy, result: SegmentationResult, options: Optional[dict[str, Any]] = None,
          network: bool = False) -> SegmentationResult:
    """``result`` with the lesion rows in ``extra["lesion_decisions"]``; with ``lesion_rules`` the
    tumor mask keeps only lesions scoring >= ``lesion_threshold`` (probability zeroed elsewhere
    is left as it is: it stays the model's), with ``other_lesions`` the rest in ``result.other_lesions``;
    ``network``: read as a tumor network's lesions (border: :func:`breast_border.network_rim`; vessel pieces).
    The time it takes is ``result.seconds["lesions"]`` (a mask of many components takes seconds)."""
    opts = rule_options(options)
    if not (opts["lesion_rules"] or opts["other_lesions"]):
        return result
    started = time.perf_counter()
    breast = None if result.breast is None else result.breast_array() > 0
    border_rim = network_rim(study, breast) if network and breast is not None else None
    kept, other, rows = _decide(opts, result.tumor, study, breast, border_rim, network)
    if result.other_lesions is not None:  # lesions the kinetic method's search screened out: listed, as decided
        more = _decide(opts, result.other_lesions, study, breast, border_rim, network)[2]
        other |= sitk.GetArrayFromImage(result.other_lesions) > 0
        for row in more:
            row.update(index=len(rows) + 1, label=None, decision="other enhancing lesion", screened_out=True)
            row.setdefault("excluded_because", "excluded by the lesion rules in the kinetic search, on its search mask")
            rows.append(row)
    extra = {**result.extra, "lesion_decisions": rows, "lesion_threshold": float(opts["lesion_threshold"]),
             "primary_threshold": float(opts["primary_threshold"])}
    changes: dict[str, Any] = {"extra": extra}
    if study.n_post >= 2 and any(t is None for t in study.times):
        benign = ("need a rise from the middle phase on" if study.n_post >= 3
                  else "are off with two post-contrast phases")
        changes["warnings"] = [*result.warnings, (
            f"phase times unknown: the phases are taken as evenly spread over {kinetics.ASSUMED_DYNAMIC_S / 60:g} "
            f"minutes (curve types read from phase {kinetics.initial_phase(study)}) and the benign patterns "
            f"{benign}; give the times (DICOM, or timings.json next to a MAMA-MIA folder) for BI-RADS readings")]
    if opts["lesion_rules"]:
        changes["tumor"] = study.image_like(kept.astype(np.uint8), np.uint8)
    changes["other_lesions"] = study.image_like(other.astype(np.uint8), np.uint8) if opts["other_lesions"] else None
    changes["seconds"] = {**result.seconds, "lesions": round(time.perf_counter() - started, 4)}
    return replace(result, **changes)
