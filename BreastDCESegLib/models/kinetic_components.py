"""Step 3 of the kinetic method (:mod:`.kinetic`): the features of each enhancing component
and the rules that keep it as a lesion or reject it (too small, too weak for its level, a small
persistent focus, a vessel), then the ranking of the kept ones.

A component's lesion threshold is the level's ``min_lesion_pe`` times a factor
(:func:`threshold_factor`): a large compact washout or plateau component in a breast enhancing
little needs ``large_lesion_scale`` of it, a small compact washout component (a tiny cancer
whose mean partial volume dilutes) ``small_washout_scale`` (in the main pass and the splits;
the low pass for small lesions already has its own lower threshold), any other component all of it.

Usage (``labels``: connected components of one candidate map, ``maps["pe"]``: early percent
enhancement, ``maps["change"]``: delayed change)::

    from BreastDCESegLib.models.kinetic_components import component_features, rank, select
    feats = component_features(labels, n, maps, study.spacing, has_late, params.curve_tolerance)
    kept = rank(select(feats, params, params.min_lesion_pe, params.max_lesion_volume_mm3,
                       params.large_lesion_max_volume_mm3), params)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from .. import kinetics
from ..study import DCEStudy

if TYPE_CHECKING:
    from .kinetic import KineticParams

Screen = Callable[[DCEStudy, np.ndarray, np.ndarray, list], tuple[np.ndarray, np.ndarray]]  # (study, lesions,
# breast, their rows) -> (lesions kept, lesions excluded as on the breast border): lesions.screen's


SMALL_PLATEAU_CONTRAST = 2.0  # the small-lesion plateau band (kinetics.plateau_read_late) holds for a focus whose mean
# early enhancement is at least this multiple of the breast's 90th percentile (maps["background_pe"]): the tiny
# cancers it finds enhance 2.3-3.3x theirs; foci of marked background enhancement rising 11-13 % (dense-motion 8556,
# 12513: 1.3-1.4x) grew into 1 mL masks far from the cancer


def elongation(mask: np.ndarray, spacing) -> float:
    """The square root of the ratio of the largest to the smallest variance of ``mask``'s voxel positions (mm;
    the smallest at least a quarter of the finest voxel side squared): 1 for a ball, high for a tube."""
    pts = np.argwhere(mask) * np.array(list(reversed(spacing)))
    var = np.linalg.eigvalsh(np.cov(pts.T)) if len(pts) > 3 else np.ones(3)
    return float(np.sqrt(max(var[-1], 1e-6) / max(var[0], 0.25 * min(spacing) ** 2)))


def component_features(labels: np.ndarray, n: int, maps: dict[str, np.ndarray], spacing, has_late: bool,
                       tol: float) -> list[dict[str, Any]]:
    """One dict per component of ``labels``: volume, mean early enhancement, diameter of the
    same-volume sphere, elongation and (``has_late``) the delayed curve type of its median change."""
    feats = []
    vox = float(np.prod(spacing))
    for i, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        m = labels[sl] == i
        pe = maps["pe"][sl][m]
        f = {"label": i, "slices": sl, "voxels": int(m.sum()), "volume_mm3": float(m.sum() * vox),
             "mean_pe": float(pe.mean()),
             "diameter_mm": float((6 * m.sum() * vox / np.pi) ** (1 / 3)), "elongation": elongation(m, spacing)}
        if has_late:
            change = np.median(maps["change"][sl][m])
            f["curve"] = kinetics.delayed_curve(float(change), tol)
            f["delayed_change"] = float(change)
            contrasted = f["mean_pe"] >= SMALL_PLATEAU_CONTRAST * maps.get("background_pe", np.inf)
            f["plateau_read_late"] = kinetics.plateau_read_late(float(change), maps.get("background_change"), tol,
                                                                f["diameter_mm"] if contrasted else None)
        else:
            f["curve"] = "unknown"
        feats.append(f)
    return feats


_CURVE_WEIGHT = {"washout": 1.0, "plateau": 0.9, "unknown": 0.8, "persistent": 0.5}
ELONGATED = "elongated (vessel)"  # the rejection of a thin long component
SHAPE_MIN_VOXELS = 50  # a large compact component keeps split_max_elongation where a level lowers max_elongation
                       # only if its elongation is read on this many voxels: on 3.5 mm voxels a vessel's 22-voxel
                       # cross-section (1.1 mL) reads 2.65 (the cancers kept this way: 70-528 voxels)


def _read_curve(f: dict[str, Any]) -> str:
    """The component's curve as it is scored: a persistent one read late as plateau
    (:func:`kinetics.plateau_read_late`) is a plateau."""
    return "plateau" if f.get("plateau_read_late") else f["curve"]


def _benign_persistent(f: dict[str, Any]) -> bool:
    """A persistent curve that rises with the background enhancement (not a plateau read late)."""
    return _read_curve(f) == "persistent"


def _large_compact(f: dict[str, Any], p: KineticParams, read_late: bool = False, unknown: bool = False) -> bool:
    """A large, compact component whose curve is washout or plateau (``read_late``: as scored,
    :func:`_read_curve`; ``unknown``: or none to read, one post-contrast phase): a lesion by its shape and
    kinetics even where its enhancement is diluted (a breast enhancing little overall)."""
    curves = ("washout", "plateau", "unknown") if unknown else ("washout", "plateau")
    return (f["volume_mm3"] >= p.split_min_volume_mm3 and f["elongation"] <= p.split_max_elongation
            and (_read_curve(f) if read_late else f["curve"]) in curves)


def _small_compact_washout(f: dict[str, Any], p: KineticParams) -> bool:
    """A small, compact washout component: a tiny cancer whose mean enhancement partial volume dilutes."""
    return (f["volume_mm3"] < p.small_component_mm3 and f["elongation"] <= p.small_washout_max_elongation
            and f["curve"] == "washout")


def threshold_factor(f: dict[str, Any], p: KineticParams) -> float:
    """The factor of a level's lesion threshold that a component needs to reach."""
    if _large_compact(f, p):
        return p.large_lesion_scale
    return p.small_washout_scale if _small_compact_washout(f, p) else 1.0


def select(feats: list[dict[str, Any]], p: KineticParams, min_pe: float, max_volume_mm3: float,
           large_max_volume_mm3: float = 0.0) -> list[dict[str, Any]]:
    """The components kept as lesions at lesion threshold ``min_pe``; every component gets its
    ``rejected`` reason (None when kept) and its ``score``. A component over ``max_volume_mm3`` is background
    enhancement, unless it is a large compact washout or plateau one, or one with no curve to read
    (:func:`_large_compact`), within ``large_max_volume_mm3``: a locally advanced cancer
    (docs/kinetic_method_log.md, *A cancer larger than 100 mL*)."""
    kept = []
    for f in feats:
        reason = None
        limit = max(max_volume_mm3, large_max_volume_mm3) if _large_compact(f, p, unknown=True) else max_volume_mm3
        if f["volume_mm3"] < p.min_volume_mm3:
            reason = "small"
        elif f["mean_pe"] < min_pe * threshold_factor(f, p) or f["volume_mm3"] > limit:
            reason = "weak"  # too weak, or too large for one lesion: background enhancement around it
        elif _benign_persistent(f) and f["diameter_mm"] < p.persistent_max_diameter_mm:
            reason = "small persistent focus"
        elif f["elongation"] > p.max_elongation and not (_large_compact(f, p, read_late=True)
                                                          and f["voxels"] >= SHAPE_MIN_VOXELS):
            reason = ELONGATED
        f["rejected"] = reason
        f["score"] = f["volume_mm3"] * f["mean_pe"] / 100.0 * _CURVE_WEIGHT[_read_curve(f)]
        if reason is None:
            kept.append(f)
    return kept


def regions(kept: list[dict[str, Any]], shape) -> np.ndarray:
    """The union of the delineated regions (``f["region"]``: box, mask) of ``kept`` lesions."""
    mask = np.zeros(shape, bool)
    for f in kept:
        sl, region = f["region"]
        mask[sl] |= region
    return mask


def rank_inside(delineated: list[dict[str, Any]], p: KineticParams, screen: Optional[Screen], study: DCEStudy,
                breast: np.ndarray) -> tuple[list[dict[str, Any]], np.ndarray]:
    """(:func:`rank` of the ``delineated`` lesions inside the breast, the union of those on its border):
    a lesion the rules (``screen``, :func:`lesions.screen`) exclude as on the breast border (skin, chest
    wall) is marked rejected before the rank cut, so that a large enhancing border region does not push
    a cancer under ``min_score_fraction`` of its score (community-15t 9399: a 27 mm washout cancer, 3.1
    mL, beside a 20 mL chest-wall region; docs/kinetic_method_log.md)."""
    on_border = np.zeros(study.shape, bool)
    if screen is not None and delineated:
        border = screen(study, regions(delineated, study.shape), breast, delineated)[1]
        inside = []
        for f in delineated:
            sl, region = f["region"]
            if (region & ~border[sl]).any():
                inside.append(f)
                continue
            on_border[sl] |= region
            f.pop("region")
            f["rejected"] = "on the breast border (lesion rules)"
        delineated = inside
    return rank(delineated, p, study.spacing), on_border


def rank(kept: list[dict[str, Any]], p: KineticParams, spacing=None) -> list[dict[str, Any]]:
    """The kept lesions by score, ``max_lesions`` at most: the best, and those scoring at least
    ``min_score_fraction`` of it or, delineated (``f["region"]``, with the study's ``spacing``), lying
    within ``satellite_mm`` of it: a satellite of a few millimetres scores a few percent of its
    primary (multifocal disease; the cut is for enhancing foci elsewhere in the breasts)."""
    kept = sorted(kept, key=lambda f: -f["score"])
    if not kept:
        return kept
    near = _near(kept[0], kept[1:], spacing, p.satellite_mm) if spacing is not None and p.satellite_mm > 0 else None
    return [kept[0], *(f for i, f in enumerate(kept[1:]) if (near is not None and near[i])
                       or f["score"] >= p.min_score_fraction * kept[0]["score"])][: p.max_lesions]


def _near(best: dict[str, Any], others: list[dict[str, Any]], spacing, mm: float) -> list[bool]:
    """Whether each of the ``others`` has a voxel within ``mm`` of one of ``best``'s (delineated regions)."""
    def points(f: dict[str, Any]) -> np.ndarray:
        box, mask = f["region"]
        return (np.argwhere(mask) + [s.start or 0 for s in box]) * np.asarray(spacing, float)[::-1]

    if "region" not in best:
        return [False] * len(others)
    tree = cKDTree(points(best))
    return ["region" in f and bool(tree.query(points(f), distance_upper_bound=mm)[0].min() <= mm) for f in others]
