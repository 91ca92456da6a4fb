"""The signal's zero: a study whose phases were shifted below zero (z-scored, say) measured from its air again.

A magnitude MR image has no signal below zero, and air reads near it. Percent enhancement
(``(post - pre) / pre``, the kinetic method's maps, its breast mask's log threshold) needs that zero;
SER, the subtractions and the curve types do not. The MAMA-MIA dataset recommends z-scoring a DCE
series with the mean and SD of all its phases before its nnU-Net, and a study exported so reaches us
shifted by ``-mean / SD``. On the second phantom's seeds 0-19, z-scored, the kinetic method lost four
of its 12 cancers (mean Dice 0.953 -> 0.631) and gave one more study without a cancer a mask: percent
enhancement read against a pre-contrast signal near zero. Measured from the air, every study gets the
mask of its magnitude images (0.953, the same 1 of 8).

A study whose pre-contrast phase has at least ``MIN_NEGATIVE_SHARE`` of its voxels below zero is
therefore shifted, every phase by the same amount, so that its air (the pre-contrast's
``AIR_PERCENTILE``-th percentile) reads zero again. A common scale (the SD) needs no undoing: the
methods read ratios. A study without negative voxels is left as it is: a positive offset cannot be
told from a dark tissue.

Usage::

    from BreastDCESegLib import signal_zero
    study, offset = signal_zero.from_air(study)   # offset: what was added to every phase (0.0: nothing)
    result = signal_zero.annotate(result, offset)  # extra["signal_offset"] and a warning, when it is not 0
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from .results import SegmentationResult
from .study import DCEStudy

MIN_NEGATIVE_SHARE = 0.01  # pre-contrast voxels below zero, share: more, and the study was shifted (z-scored
                           # phantoms: 0.65-0.73; magnitude images: none)
AIR_PERCENTILE = 0.1  # the air's level: within 0.01 SD of the true zero on z-scored phantoms of every profile


def offset(study: DCEStudy) -> float:
    """What to add to every phase of ``study`` so that its air reads zero: 0.0 unless its pre-contrast phase
    has at least ``MIN_NEGATIVE_SHARE`` of its voxels below zero."""
    pre = study.array(0)
    if float(np.mean(pre < 0)) < MIN_NEGATIVE_SHARE:
        return 0.0
    return -float(np.percentile(pre, AIR_PERCENTILE))


def from_air(study: DCEStudy) -> tuple[DCEStudy, float]:
    """(``study`` with every phase shifted by :func:`offset`, the offset); the same study when it is 0."""
    shift = offset(study)
    if shift == 0.0:
        return study, 0.0
    phases = []
    for image in study.phases:
        shifted = sitk.Cast(image, sitk.sitkFloat32) + shift
        shifted.CopyInformation(image)
        phases.append(shifted)
    return DCEStudy(phases=phases, times=list(study.times), metadata=dict(study.metadata),
                    case_id=study.case_id), shift


def annotate(result: SegmentationResult, shift: float) -> SegmentationResult:
    """``result`` with ``shift`` in ``extra["signal_offset"]`` and a warning saying so; as it is when 0."""
    if shift:
        result.extra = {**result.extra, "signal_offset": round(shift, 6)}
        result.warnings = [*result.warnings, f"the pre-contrast phase reads below zero (z-scored?): every phase "
                                             f"shifted by {shift:.4g} so that its air reads zero"]
    return result
