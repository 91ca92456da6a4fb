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

A study z-scored phase by phase (each phase with its own mean and SD, as per-channel
normalisation does; every phase then has mean 0 and SD 1 within ``BY_PHASE_TOLERANCE``) has lost
more: each phase its own zero and its own scale. So has one mapped phase by phase from its minimum
and maximum to 0-1 (per-volume normalisation: the enhancing heart and vessels set each
post-contrast phase's maximum). On the second phantom's seeds 0-19 so exported, the kinetic method
fell from 0.953 to 0.357 (z-scored; 0.293 with each phase's air back at zero but no scale: the
post-contrast phases' SDs were 1.9-2.6 times the pre-contrast's) and 0.121 (0-1). :func:`by_phase`
gives each phase its zero at its own air and its scale from the air's noise, which the receiver
sets the same in every phase of a dynamic series: each phase is scaled so that the median of the
air voxels (those of the pre-contrast phase under ``AIR_SIGNAL_FRACTION`` of its 99th percentile)
matches the pre-contrast phase's. The scales come back within 2.4 % on average (at most 10 %, over
71 phases) and the 20 studies give 0.953 again from both encodings (two masks differ, by 0.006 in
Dice at most; ``benchmarks/signal_exports.py``). Without such air (a noiseless background) the scale
cannot be recovered, and the study is refused with a message rather than read wrong.

Usage::

    from BreastDCESegLib import signal_zero
    study, restored = signal_zero.restore(study)   # by_phase, then from_air: what each did
    restored["by_phase"]                            # {"normalised", "offsets", "gains"}, or None
    restored["offset"]                              # what from_air added to every phase (0.0: nothing)
    result = signal_zero.annotate(result, restored)  # extra["signal_offset"] / ["signal_by_phase"], a warning
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import SimpleITK as sitk

from .errors import BadInputError
from .results import SegmentationResult
from .study import DCEStudy

MIN_NEGATIVE_SHARE = 0.01  # pre-contrast voxels below zero, share: more, and the study was shifted (z-scored
                           # phantoms: 0.65-0.73; magnitude images: none)
AIR_PERCENTILE = 0.1  # the air's level: within 0.01 SD of the true zero on z-scored phantoms of every profile
BY_PHASE_TOLERANCE = 0.01  # every phase's mean within this of 0 and SD within this of 1: z-scored phase by phase
AIR_SIGNAL_FRACTION = 0.05  # air: the pre-contrast phase (its air at zero) under this share of its 99th percentile
MIN_AIR_SHARE = 0.01  # fewer air voxels than this share of the image: no scale to recover
_SAID = {"z-score": "z-scored, mean 0 and SD 1", "min-max": "mapped from its minimum and maximum to 0-1"}


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
    return mapped(study, [shift] * study.n_phases, [1.0] * study.n_phases), shift


def mapped(study: DCEStudy, offsets: list[float], gains: list[float]) -> DCEStudy:
    """``study`` with phase ``k`` mapped to ``(phase + offsets[k]) * gains[k]`` (float32, same grid)."""
    phases = []
    for image, o, g in zip(study.phases, offsets, gains):
        out = (sitk.Cast(image, sitk.sitkFloat32) + o) * g
        out.CopyInformation(image)
        phases.append(out)
    return DCEStudy(phases=phases, times=list(study.times), metadata=dict(study.metadata), case_id=study.case_id)


def normalised_by_phase(study: DCEStudy) -> Optional[str]:
    """How ``study`` (two or more phases) was normalised phase by phase: ``"z-score"`` when every phase
    has mean 0 and SD 1 within ``BY_PHASE_TOLERANCE``, ``"min-max"`` when every phase spans exactly
    0 to 1 (within 1e-6); None otherwise (magnitude images, a study normalised as a whole)."""
    if study.n_phases < 2:
        return None
    kinds = set()
    for k in range(study.n_phases):
        a = study.array(k).astype(np.float64, copy=False)
        if abs(float(a.min())) <= 1e-6 and abs(float(a.max()) - 1.0) <= 1e-6:
            kinds.add("min-max")
        elif abs(float(a.mean())) <= BY_PHASE_TOLERANCE and abs(float(a.std()) - 1.0) <= BY_PHASE_TOLERANCE:
            kinds.add("z-score")
        else:
            return None
    return kinds.pop() if len(kinds) == 1 else None


def by_phase(study: DCEStudy) -> tuple[DCEStudy, Optional[dict[str, Any]]]:
    """(``study`` with each phase's zero at its own air and its scale matched to the pre-contrast
    phase's by the air's noise, ``{"normalised": kind, "offsets": [...], "gains": [...]}``: phase ``k``
    became ``(phase + offsets[k]) * gains[k]``) for a study :func:`normalised_by_phase`;
    ``(study, None)`` otherwise.

    Raises:
        BadInputError: normalised phase by phase without air noise to recover the scale from.
    """
    kind = normalised_by_phase(study)
    if kind is None:
        return study, None
    offsets = [-float(np.percentile(study.array(k), AIR_PERCENTILE)) for k in range(study.n_phases)]
    pre = study.array(0) + offsets[0]
    air = pre < AIR_SIGNAL_FRACTION * float(np.percentile(pre, 99))
    noise = [float(np.median(study.array(k)[air] + offsets[k])) for k in range(study.n_phases)] if air.any() else [0.0]
    if float(air.mean()) < MIN_AIR_SHARE or min(noise) <= 0:
        raise BadInputError(
            f"{study.case_id or 'the study'}: every phase was normalised on its own ({_SAID[kind]}), and it has no "
            f"air with noise to recover the phases' relative scale from, so enhancement cannot be measured. Give "
            f"the phases as acquired, or normalised together (one mean and SD for all phases).")
    gains = [noise[0] / n for n in noise]
    scaled = {"normalised": kind, "offsets": [round(o, 6) for o in offsets], "gains": [round(g, 6) for g in gains]}
    return mapped(study, offsets, gains), scaled


def restore(study: DCEStudy) -> tuple[DCEStudy, dict[str, Any]]:
    """(``study`` with its signal's zero, and each phase's scale, back: :func:`by_phase` then
    :func:`from_air`; ``{"by_phase": its correction or None, "offset": its shift}``).

    Raises:
        BadInputError: normalised phase by phase without air noise (:func:`by_phase`).
    """
    study, scaled = by_phase(study)
    study, shift = from_air(study)
    return study, {"by_phase": scaled, "offset": shift}


def annotate(result: SegmentationResult, restored: dict[str, Any]) -> SegmentationResult:
    """``result`` with what :func:`restore` did: the shift in ``extra["signal_offset"]`` and the
    :func:`by_phase` correction in ``extra["signal_by_phase"]``, each with a warning saying so."""
    scaled, shift = restored.get("by_phase"), restored.get("offset", 0.0)
    if scaled:
        result.extra = {**result.extra, "signal_by_phase": scaled}
        gains = ", ".join(f"{g:.3g}" for g in scaled["gains"][1:])
        said = _SAID[scaled.get("normalised", "z-score")]
        result.warnings = [*result.warnings, f"every phase was normalised on its own ({said}): each phase "
                                             f"shifted so that its air reads zero and scaled so that its air's "
                                             f"noise matches the pre-contrast phase's (post-contrast gains {gains})"]
    if shift:
        result.extra = {**result.extra, "signal_offset": round(shift, 6)}
        result.warnings = [*result.warnings, f"the pre-contrast phase reads below zero (z-scored?): every phase "
                                             f"shifted by {shift:.4g} so that its air reads zero"]
    return result
