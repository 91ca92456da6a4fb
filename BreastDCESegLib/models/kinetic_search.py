"""Step 3 of the kinetic method (:mod:`.kinetic`) at one enhancement level: the candidate map's
components (:func:`detect`), the passes that find the lesions among them (:func:`find`: the main
pass, the low pass for small lesions diluted by partial volume, the split of large weak
components) and the search of a lesion off the vessel it touches (:func:`off_vessels`).

A cancer touching an enhancing vessel forms one component with it; read whole, it is elongated and
rejected as a vessel (academic-3t 12113: a 16 mm rim-enhancing cancer beside the lateral thoracic
vessel, one 9 mL component of elongation 10, Dice 0.0). A large component rejected as elongated is
therefore searched again opened by a ball of ``vessel_open_mm`` (3 mm: wider than the 1-2 mm
radius of a breast vessel, narrower than a lesion), and the compact components left (elongation at
most ``split_max_elongation``, 1 mL or more) are lesions as at every level; delineation
(:mod:`.kinetic_delineate`) then trims what stays of the vessel.

Usage (``valid``: the breast's candidate voxels; ``maps["pe"]``: early percent enhancement)::

    from BreastDCESegLib.models.kinetic_search import find
    feats, kept = find(valid, maps, study.spacing, has_late, params)
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from ..morphology import binary_morphology, label_26
from .kinetic_components import ELONGATED, component_features, select

if TYPE_CHECKING:
    from .kinetic import KineticParams


def union(components: list[dict[str, Any]], shape) -> np.ndarray:
    """The voxels of ``components`` (each one's ``labels`` array and ``label``)."""
    mask = np.zeros(shape, bool)
    for f in components:
        mask[f["slices"]] |= f["labels"][f["slices"]] == f["label"]
    return mask


def detect(cand: np.ndarray, maps: dict[str, np.ndarray], spacing, has_late: bool, p: KineticParams,
           min_pe: float, exclude: Optional[np.ndarray] = None, max_volume_mm3: Optional[float] = None
           ) -> tuple[list, list]:
    """Components of one candidate map, opened by ``opening_mm``: (all features, kept features).
    Those a lesion of ``exclude`` touches are left out; the large ones rejected as elongated are
    searched again off their vessel (:func:`off_vessels`)."""
    cand = binary_morphology(cand, spacing, p.opening_mm, "open")
    labels, n = label_26(cand)
    feats = component_features(labels, n, maps, spacing, has_late, p.curve_tolerance)
    if exclude is not None:
        feats = [f for f in feats if not (exclude[f["slices"]] & (labels[f["slices"]] == f["label"])).any()]
    for f in feats:
        f["labels"] = labels
    kept = select(feats, p, min_pe, max_volume_mm3 or p.max_lesion_volume_mm3,  # main pass: a large cancer too
                  0.0 if max_volume_mm3 else p.large_lesion_max_volume_mm3)
    more, found = off_vessels(feats, maps, spacing, has_late, p, min_pe, exclude, max_volume_mm3)
    return feats + more, kept + found


def off_vessels(feats: list[dict[str, Any]], maps: dict[str, np.ndarray], spacing, has_late: bool,
                p: KineticParams, min_pe: float, exclude: Optional[np.ndarray] = None,
                max_volume_mm3: Optional[float] = None) -> tuple[list, list]:
    """(features, kept lesions, each marked ``off_vessel``) of the components of at least
    ``split_min_volume_mm3`` that :func:`select` rejected as elongated, opened by ``vessel_open_mm``
    (a lesion touching a vessel); nothing when that is not wider than ``opening_mm`` (0: off). A lesion
    found so is compact (``split_max_elongation``) and as large (``split_min_volume_mm3``): what a
    3 mm opening leaves of a vessel are its junctions and bends, 0.2-0.8 mL (on the tuning seeds of
    every profile, 2.1 x 2.1 x 2.8 mm voxels: 235-805 mm3, washout as vessels read)."""
    touching = [f for f in feats if f.get("rejected") == ELONGATED and f["volume_mm3"] >= p.split_min_volume_mm3]
    if not touching or p.vessel_open_mm <= p.opening_mm:
        return [], []
    shape = touching[0]["labels"].shape
    more, kept = detect(union(touching, shape), maps, spacing, has_late, replace(p, opening_mm=p.vessel_open_mm),
                        min_pe, exclude, max_volume_mm3)
    kept = [f for f in kept if f["elongation"] <= p.split_max_elongation and f["volume_mm3"] >= p.split_min_volume_mm3]
    for f in kept:
        f["off_vessel"] = True
    return more, kept


def find(valid: np.ndarray, maps: dict[str, np.ndarray], spacing, has_late: bool, p: KineticParams
         ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(all component features, kept lesions): the main pass, the low pass for small lesions
    diluted by partial volume (its lesion threshold is that allowance: ``small_washout_scale``
    does not lower it further; it keeps components of ``low_min_volume_mm3`` and more), and the split
    of large weak components."""
    pe = maps["pe"]
    feats, kept = detect(valid & (pe >= p.pe_threshold), maps, spacing, has_late, p, p.min_lesion_pe)
    if p.low_pe_threshold < p.pe_threshold:
        taken = union(kept, valid.shape) if kept else None
        feats2, kept2 = detect(valid & (pe >= p.low_pe_threshold), maps, spacing, has_late,
                               replace(p, small_washout_scale=1.0,
                                       min_volume_mm3=max(p.min_volume_mm3, p.low_min_volume_mm3)),
                               p.low_min_lesion_pe, exclude=taken, max_volume_mm3=p.low_max_volume_mm3)
        feats, kept = feats + feats2, kept + kept2
    return feats, kept + split_weak(feats, valid, maps, spacing, has_late, p, kept)


def split_weak(feats: list[dict[str, Any]], valid: np.ndarray, maps: dict[str, np.ndarray], spacing,
               has_late: bool, p: KineticParams, kept: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Lesions found inside large components rejected as weak, at successively higher
    enhancement levels (``split_pe_thresholds``): with marked background enhancement a lesion and
    the enhancing fibroglandular tissue around it form one component whose mean stays low. A large
    component that a level finds strong enough but not compact (elongation over
    ``split_max_elongation``: the lesion with the brightest of that tissue still around it) is split
    at the next level too, as a weak one is (dense-motion 12528 at 256: a 26 mm plateau cancer of
    260 % mean enhancement in a 60 mL component of 118 %; at 100 % still a 5 mL component of
    elongation 3.5, at 125 % it comes out, Dice 0.99)."""
    def large_weak(components: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [f for f in components if f.get("rejected") == "weak" and f["volume_mm3"] >= p.split_min_volume_mm3]

    found: list[dict[str, Any]] = []
    weak, taken = large_weak(feats), union(kept, valid.shape)
    for level in p.split_pe_thresholds:
        if not weak:
            break
        sub_feats, sub_kept = detect(union(weak, valid.shape) & valid & (maps["pe"] >= level), maps, spacing,
                                     has_late, p, p.min_lesion_pe, exclude=taken)
        sprawling = [f for f in sub_kept if f["elongation"] > p.split_max_elongation
                     and f["volume_mm3"] >= p.split_min_volume_mm3]
        sub_kept = [f for f in sub_kept if f["elongation"] <= p.split_max_elongation]
        for f in sub_kept:
            f["split_level"] = level
        taken |= union(sub_kept, valid.shape)
        found += sub_kept
        weak = large_weak(sub_feats) + sprawling
    return found
