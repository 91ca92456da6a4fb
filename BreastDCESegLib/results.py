"""`SegmentationResult`: what a segmentation model returns, on the study's original grid.

Usage::

    result = inference.segment(study, "kinetic")
    result.tumor            # sitk.Image, uint8, 1 = tumor, on study.reference's grid
    result.tumor_volume_ml  # float
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import SimpleITK as sitk


@dataclass
class SegmentationResult:
    """Masks (and optionally a probability map) on the study grid plus provenance.

    Attributes:
        tumor: uint8 label image (0 background, 1 tumor) on the study's pre-contrast grid.
        breast: uint8 whole-breast mask on the same grid, or None if the model makes none.
        probability: float32 tumor probability in [0, 1], or None.
        model_id: registry id of the model that produced it.
        device: where it ran ("cpu", "cuda:0", ...).
        seconds: wall time per stage, e.g. {"preprocess": 0.4, "breast": 1.2, "tumor": 3.1}.
        warnings: things the user should know (CPU fallback after out-of-memory...).
        extra: anything model-specific (thresholds used, kinetic maps...).
        uncertainty: float32 voxel uncertainty (std over test-time flips, option ``tta``), or None.
        other_lesions: uint8 mask of the enhancing lesions the lesion rules excluded
            (option ``other_lesions``, :mod:`BreastDCESegLib.lesions`), or None.
    """

    tumor: sitk.Image
    breast: Optional[sitk.Image] = None
    probability: Optional[sitk.Image] = None
    model_id: str = ""
    device: str = "cpu"
    seconds: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    uncertainty: Optional[sitk.Image] = None      # float32 voxel std of the probability (test-time flips)
    other_lesions: Optional[sitk.Image] = None    # uint8 lesions excluded by the lesion rules (lesions.py)

    def tumor_array(self) -> np.ndarray:
        """The tumor mask as a (z, y, x) uint8 array."""
        return sitk.GetArrayFromImage(self.tumor).astype(np.uint8, copy=False)

    def breast_array(self) -> Optional[np.ndarray]:
        return None if self.breast is None else sitk.GetArrayFromImage(self.breast).astype(np.uint8, copy=False)

    @property
    def tumor_volume_ml(self) -> float:
        voxel_mm3 = float(np.prod(self.tumor.GetSpacing()))
        return float(self.tumor_array().astype(bool).sum()) * voxel_mm3 / 1000.0
