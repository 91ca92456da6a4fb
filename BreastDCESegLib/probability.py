"""Tumor masks from a probability map: threshold and minimum lesion size, without re-running a model.

The panel's threshold slider calls :func:`threshold_probability` on the probability the worker
returned, so moving the slider re-draws the tumor in a fraction of a second. Lesions are
26-connected components (as in :mod:`BreastDCESegLib.clinical`); components smaller than
``min_component_mm3`` are dropped.

Usage::

    from BreastDCESegLib.probability import threshold_probability
    mask = threshold_probability(prob, 0.3, spacing=(0.7, 0.7, 1.5), min_component_mm3=20.0)
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from .errors import BadInputError


def threshold_probability(probability: np.ndarray, threshold: float, spacing: Sequence[float],
                          min_component_mm3: float = 0.0, within: Optional[np.ndarray] = None) -> np.ndarray:
    """uint8 mask of ``probability >= threshold`` (inside ``within`` when given), keeping only
    26-connected components of at least ``min_component_mm3`` mm³ (``spacing`` x, y, z in mm).

    Example::

        threshold_probability(np.array([[[0.2, 0.8]]]), 0.5, (1, 1, 1)).tolist()   # [[[0, 1]]]
    """
    from .clinical import label_lesions

    if not 0.0 < float(threshold) <= 1.0:
        raise BadInputError(f"The probability threshold must be in (0, 1], got {threshold}.")
    if min_component_mm3 < 0:
        raise BadInputError(f"The minimum component size must be >= 0 mm³, got {min_component_mm3}.")
    probability = np.asarray(probability)
    mask = probability >= float(threshold)
    if within is not None:
        if np.shape(within) != probability.shape:
            raise BadInputError(f"The mask to threshold within has shape {np.shape(within)}, the probability "
                                f"{probability.shape}.")
        mask &= np.asarray(within) != 0
    if min_component_mm3 > 0 and mask.any():
        labels, keep = label_lesions(mask, spacing, min_component_mm3)
        mask = np.isin(labels, keep)
    return mask.astype(np.uint8)

