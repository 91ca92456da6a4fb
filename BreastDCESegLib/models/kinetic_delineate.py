"""Step 4 of the kinetic method (:mod:`.kinetic`): each kept lesion re-delineated at a fraction
of its own peak early enhancement (half-maximum style), its non-enhancing core filled, and a
lesion that grows several times its own volume there rejected (no boundary: background
enhancement, not a lesion).

Usage (``f``: one component's features from :func:`.kinetic._detect`)::

    from BreastDCESegLib.models.kinetic_delineate import delineate
    delineate(f, subtraction, breast, study.spacing, params, percent_enhancement, study.voxel_volume_mm3)
    box, mask = f["region"]            # unless f["rejected"]
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import ndimage

from .kinetic_breast import _sitk_morph

if TYPE_CHECKING:
    from .kinetic import KineticParams


def refine(f: dict[str, Any], sub: np.ndarray, breast: np.ndarray, spacing, p: KineticParams, pe: np.ndarray
           ) -> tuple[tuple[slice, ...], np.ndarray, float]:
    """The lesion re-delineated at ``boundary_fraction`` of its peak early enhancement
    (``small_boundary_fraction`` under ``small_component_mm3``), core filled;
    a lesion split from background enhancement does not grow below the level it was found at."""
    labels = f["labels"]
    margin = [int(np.ceil(p.refine_margin_mm / s)) + 1 for s in reversed(spacing)]
    sl = tuple(slice(max(0, s.start - m), min(n, s.stop + m)) for s, m, n in zip(f["slices"], margin, labels.shape))
    comp = labels[sl] == f["label"]
    peak = float(np.percentile(sub[sl][comp], 95))
    fraction = p.small_boundary_fraction if f["volume_mm3"] < p.small_component_mm3 else p.boundary_fraction
    region = breast[sl] & (sub[sl] >= fraction * peak)
    if f.get("split_level") is not None:
        region &= pe[sl] >= f["split_level"]
    core = comp & (sub[sl] >= p.core_fraction * peak)
    lab, _n = ndimage.label(region)
    ids = np.unique(lab[core])
    mask = np.isin(lab, ids[ids > 0])
    mask = _sitk_morph(mask, spacing, 1.0 * max(spacing[:2]), "close") | mask
    mask = ndimage.binary_fill_holes(mask) & breast[sl]
    return sl, mask, peak


def delineate(f: dict[str, Any], sub: np.ndarray, breast: np.ndarray, spacing, p: KineticParams, pe: np.ndarray,
              voxel_mm3: float) -> None:
    """:func:`refine` ``f`` into ``f["region"]`` (box, mask), or mark it rejected when its
    re-delineation grows beyond ``max_growth_ratio`` times the component: no boundary."""
    sl, mask, peak = refine(f, sub, breast, spacing, p, pe)
    f["peak_subtraction"] = peak
    f["refined_volume_mm3"] = round(float(mask.sum()) * voxel_mm3, 2)
    limit = p.max_growth_ratio if f["volume_mm3"] >= p.small_component_mm3 else p.small_max_growth_ratio
    if limit > 0 and f["refined_volume_mm3"] > limit * f["volume_mm3"]:
        f["rejected"] = f"no boundary: grows {f['refined_volume_mm3'] / f['volume_mm3']:.1f}x into background"
    else:
        f["region"] = (sl, mask)
