"""A tumor network's small lesion that is a piece of a vessel: its enhancement goes on as a tube.

A network marks a blob where it sees one; cut out of a vessel that crosses the breast (a cross-section,
a bend, a branching point), the blob is compact, enhances early and washes out like a small cancer, and
the lesion rules' shape readings (thinness, sphericity) see the blob only. The kinetic method reads its
lesions on its own enhancement components, which follow the vessel. This module reads a network's lesion
the same way: the voxels around it (its box widened by ``widen_mm``) enhancing at least ``fraction`` of
its median early enhancement and connected to it (26-connected), and that region's thinness
(:func:`lesion_shape.shape_compactness`: the largest of elongation and flatness). A vessel piece reads
as a tube (second phantom, resunet-demo's components without a cancer: 66 of 110 above 2.8), a cancer
as a mass (47 cancer components there, every one at most 1.6; the first phantom's site profiles:
``benchmarks/results`` and the README's *A network's vessel pieces*).

Usage::

    from BreastDCESegLib import vessel_continuation
    thin = vessel_continuation.continuation_thinness(study, labels, index, box)   # a lesion's
"""

from __future__ import annotations

import numpy as np

from . import kinetics
from .lesion_shape import shape_compactness
from .study import DCEStudy

WIDEN_MM = 15.0   # the neighbourhood read around a lesion's box
FRACTION = 0.7    # of the lesion's median early percent enhancement: the level the region grows at


def continuation_thinness(study: DCEStudy, labels: np.ndarray, index: int, box: tuple[slice, ...],
                          widen_mm: float = WIDEN_MM, fraction: float = FRACTION) -> float:
    """The thinness of lesion ``index`` of ``labels`` (z y x; ``box`` its bounding box) grown into the voxels
    around it that enhance at least ``fraction`` of its median early percent enhancement
    (:func:`kinetics.percent_enhancement` at :func:`kinetics.initial_phase`)."""
    from scipy import ndimage

    widen = [int(np.ceil(widen_mm / s)) for s in reversed(study.spacing)]
    around = tuple(slice(max(0, b.start - w), min(n, b.stop + w)) for b, w, n in zip(box, widen, labels.shape))
    lesion = labels[around] == index
    pe = kinetics.percent_enhancement(study, phase=kinetics.initial_phase(study), box=around)
    level = fraction * float(np.median(pe[lesion]))
    grown, _n = ndimage.label(pe > level, np.ones((3, 3, 3), dtype=bool))
    touched = np.unique(grown[lesion])
    region = np.isin(grown, touched[touched > 0]) | lesion
    return float(shape_compactness(region.astype(np.uint8), study.spacing)[1])
