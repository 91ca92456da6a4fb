"""Motion correction between phases: each post-contrast phase is registered to the
pre-contrast phase by a rigid translation (SimpleITK, Mattes mutual information, smoothed
then unsmoothed) and resampled onto it when it moved by more than ``min_shift_vox`` voxels.

Patients move between the phases of a dynamic study; a shift of one or two voxels turns
every edge of the subtraction images into a bright rim (false enhancement along the skin,
the chest wall and the fibroglandular tissue) and moves a lesion away from its
pre-contrast position, so kinetics are read from the wrong voxels. Segmentation and the
ground truth stay on the pre-contrast grid: only the post-contrast phases move.

Mutual information tolerates the contrast uptake (a few percent of the voxels change
their signal, the rest of the body outline and the fat do not). Phases that moved less
than the threshold are left untouched (no interpolation blur). The estimate runs on block
averages of about 3.2 mm voxels (Gaussian smoothing of 1 voxel, then none), on 5 % of their
voxels drawn at random (seeded): 0.6 s per phase of a 256 x 256 x 80 study on 2 threads
(``benchmarks/inference.py``: 2.9 s of a six-phase study). It ran on 1.6 mm blocks with a
pyramid shrinking them 4 and 2 times, 2.1 s per phase, most of it smoothing and shrinking the
full images. On phantoms moved by 1.5 voxels the rendered shift is now found within 0.07
voxels (0.13 before), on dense-motion site studies within 0.07 (0.06); over 51 phases of
phantoms moved by 0 to 2 voxels the largest error is 0.37 voxels (0.40 before), the mean 0.08
(0.08).

On thick-slice sagittal studies (0.96 x 0.96 x 4.8 mm voxels) of phases that did not move, the
sampled optimiser settles 0.4-1.3 voxels off in-plane (1.3 with samples on a regular grid,
0.4-0.9 with random ones), where the whole image is aligned worse
than at no shift (ITK's Mattes cost, the negative mutual information: -0.82 against -0.98), and
resampling moved an 8 mm lesion off its pre-contrast voxels. So an estimate is kept only when
that cost over every voxel of the working images is lower at the estimate than at zero
(:func:`alignment_cost`).
On moving studies both samplings found the rendered shift within 0.06-0.11 voxels (1.6 mm
blocks). On the 3.2 mm blocks the still sagittal study (seed 8353) settles 0.8 mm off, and is
left as it is.

Usage::

    from BreastDCESegLib import motion
    corrected, info = motion.correct(study)
    info["shifts_mm"]       # per phase, (x, y, z) translation in mm (LPS); phase 0 is (0, 0, 0)
    info["corrected"]       # indices of the phases that were resampled
    info["not_better"]      # phases whose estimate aligned them worse than no shift (kept as they are)
    info["remembered"]      # True on a re-run on the same arrays and grid: the estimates were reused
    motion.clear()          # forget the remembered estimates (inference.clear_cache does too)

The estimates of the last ``REMEMBERED`` studies are kept in-process, keyed by the exact phase
arrays, the grid, the threshold and the estimator: a second run on the same study (another
model, other options, the panel's re-run in the warm worker) resamples the phases again but
skips the registrations, most of the kinetic method's time (1.1 of 2.3 s on a 160-voxel study).
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np
import SimpleITK as sitk

from .remembered import Remembered, digest, geometry
from .results import SegmentationResult
from .study import DCEStudy

MIN_SHIFT_VOX = 0.5        # resample a phase when it moved by more than this along any axis
WORKING_SPACING_MM = 3.2  # the estimate runs on voxels about this size (block averages of the study's)
MAX_SHIFT_MM = 20.0        # larger estimates are registration failures: the phase is left as it is


def _working_images(fixed: sitk.Image, moving: sitk.Image) -> tuple[sitk.Image, sitk.Image]:
    """Both images as float block averages of about ``WORKING_SPACING_MM`` voxels."""
    factors = [max(1, int(round(WORKING_SPACING_MM / sp))) for sp in fixed.GetSpacing()]
    return tuple(sitk.BinShrink(sitk.Cast(image, sitk.sitkFloat32), factors) for image in (fixed, moving))


def _mutual_information(fixed: sitk.Image, moving: sitk.Image, shift_mm) -> float:
    """Mattes mutual information over every voxel of two working images, ``moving`` shifted."""
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(32)
    reg.SetMetricSamplingStrategy(reg.NONE)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetInitialTransform(sitk.TranslationTransform(3, tuple(float(v) for v in shift_mm)))
    return float(reg.MetricEvaluate(fixed, moving))


def alignment_cost(fixed: sitk.Image, moving: sitk.Image, shift_mm) -> float:
    """Mattes mutual information of ``moving`` shifted by ``shift_mm`` against ``fixed``, over
    every voxel of the working images, as ITK gives it: negative, lower is better aligned."""
    return _mutual_information(*_working_images(fixed, moving), shift_mm)


def _aligns_better(fixed: sitk.Image, moving: sitk.Image, shift_mm) -> bool:
    """Whether ``shift_mm`` aligns ``moving`` to ``fixed`` better than no shift (:func:`alignment_cost`)."""
    working = _working_images(fixed, moving)
    return _mutual_information(*working, shift_mm) < _mutual_information(*working, np.zeros(3))


def estimate_shift(fixed: sitk.Image, moving: sitk.Image, seed: int = 7) -> np.ndarray:
    """Translation (x, y, z, mm) that maps points of ``fixed`` onto ``moving``."""
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(32)
    reg.SetMetricSamplingStrategy(reg.RANDOM)    # not REGULAR: see the module docstring (still sagittal studies)
    reg.SetMetricSamplingPercentage(0.05, seed)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(learningRate=2.0, minStep=0.01, numberOfIterations=100,
                                                 relaxationFactor=0.6)
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel([1, 1])         # two levels on the working images: smoothed, then not
    reg.SetSmoothingSigmasPerLevel([1, 0])
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    reg.SetInitialTransform(sitk.TranslationTransform(3), inPlace=False)
    fixed, moving = _working_images(fixed, moving)
    transform = reg.Execute(fixed, moving)
    return np.array(transform.GetParameters(), dtype=float)


REMEMBERED = 4  # studies whose estimates are kept for re-runs (another model, other options, the panel's re-run)
_ESTIMATES = Remembered(REMEMBERED)


def clear() -> None:
    """Forget the remembered motion estimates."""
    _ESTIMATES.clear()


def _estimates(study: DCEStudy, min_shift_vox: float,
               progress: Optional[Callable[[str, float, str], None]]) -> tuple[tuple[tuple, Optional[tuple]], ...]:
    """Per post-contrast phase, (shift to use in mm, the estimate discarded as aligning worse or None);
    full precision (the info rounds them to 0.001 mm, the resampling does not)."""
    spacing = np.array(study.spacing, dtype=float)
    out = []
    for k in range(1, study.n_phases):
        if progress is not None:
            progress("motion", (k - 1) / (study.n_phases - 1),
                     f"aligning phase {k} of {study.n_phases - 1} to the pre-contrast phase")
        shift = estimate_shift(study.pre, study.phases[k])
        discarded = None
        if (np.abs(shift) / spacing).max() > min_shift_vox and not _aligns_better(study.pre, study.phases[k], shift):
            discarded, shift = tuple(float(v) for v in shift), np.zeros(3)
        out.append((tuple(float(v) for v in shift), discarded))
    return tuple(out)


def _moved(image: sitk.Image, fixed: sitk.Image, shift_mm) -> sitk.Image:
    """``image`` resampled (linear) onto ``fixed`` through a translation of ``shift_mm``; voxels that
    would come from outside its field of view keep their own value."""
    transform = sitk.TranslationTransform(3, tuple(float(v) for v in shift_mm))
    moved = sitk.Resample(image, fixed, transform, sitk.sitkLinear, np.nan, sitk.sitkFloat32)
    arr = sitk.GetArrayFromImage(moved)
    outside = np.isnan(arr)
    arr[outside] = sitk.GetArrayViewFromImage(image)[outside]
    out = sitk.GetImageFromArray(arr)
    out.CopyInformation(fixed)
    return out


def correct(study: DCEStudy, min_shift_vox: float = MIN_SHIFT_VOX, max_shift_mm: float = MAX_SHIFT_MM,
            progress: Optional[Callable[[str, float, str], None]] = None) -> tuple[DCEStudy, dict[str, Any]]:
    """(study with moved post-contrast phases registered to phase 0, info).

    A phase is resampled (linear) only when its estimated shift exceeds ``min_shift_vox``
    voxels along some axis, stays within ``max_shift_mm`` and aligns the phase better than no
    shift (:func:`alignment_cost`); otherwise the study's own image is kept. ``info``:
    ``shifts_mm`` and ``shifts_vox`` per phase (zero for a phase in ``not_better``),
    ``corrected`` (phase indices), ``rejected`` (estimates over ``max_shift_mm``), ``not_better``
    (estimates that aligned worse than no shift; ``discarded_mm`` holds them, in that order),
    ``remembered`` (True when the estimates of an earlier run on the same arrays and grid were
    reused: the registrations are the slow part, the resampling is redone).
    """
    spacing = np.array(study.spacing, dtype=float)
    key = (digest(sitk.GetArrayViewFromImage(image) for image in study.phases), geometry(study.pre),
           float(min_shift_vox), estimate_shift)  # the estimator too: a replaced one (a test's) estimates afresh
    estimates = _ESTIMATES.recall(key)
    remembered = estimates is not None
    if not remembered:
        estimates = _estimates(study, min_shift_vox, progress)
        _ESTIMATES.remember(key, estimates)
    images = list(study.phases)
    shifts, corrected, rejected, not_better, discarded = [[0.0, 0.0, 0.0]], [], [], [], []
    for k, (shift, dropped) in enumerate(estimates, start=1):
        if dropped is not None:
            not_better.append(k)
            discarded.append([round(v, 3) for v in dropped])
        shifts.append([round(v, 3) for v in shift])
        if np.abs(shift).max() > max_shift_mm:
            rejected.append(k)
        elif (np.abs(shift) / spacing).max() > min_shift_vox:
            images[k] = _moved(images[k], study.pre, shift)
            corrected.append(k)
    info = {"shifts_mm": shifts, "shifts_vox": [[round(float(v), 3) for v in np.array(s) / spacing] for s in shifts],
            "corrected": corrected, "rejected": rejected, "not_better": not_better, "discarded_mm": discarded,
            "min_shift_vox": min_shift_vox, "remembered": remembered}
    if progress is not None:
        done = f"phase(s) {corrected} realigned" if corrected else "no phase moved"
        progress("motion", 1.0, done + (" (estimates remembered from an earlier run)" if remembered else ""))
    if not corrected:
        return study, info
    metadata = {**study.metadata, "motion_correction": info}
    return DCEStudy(phases=images, times=list(study.times), metadata=metadata, case_id=study.case_id), info


def apply(study: DCEStudy, options: Optional[dict[str, Any]] = None, family: Optional[str] = None,
          progress: Optional[Callable[[str, float, str], None]] = None) -> tuple[DCEStudy, Optional[dict[str, Any]]]:
    """:func:`correct` unless ``options["motion_correction"]`` is false (then ``(study, None)``);
    not asked, it is on except for the ``zhang2023`` family (the authors' pipeline exactly, as
    its other options default); ``options["motion_min_shift_vox"]`` overrides the threshold.
    ``progress(stage, fraction, message)`` hears stage ``"motion"`` once per phase and once when done."""
    options = options or {}
    wanted = options.get("motion_correction")
    if wanted is None:
        wanted = family != "zhang2023"
    if not wanted or study.n_phases < 2:
        return study, None
    return correct(study, float(options.get("motion_min_shift_vox") or MIN_SHIFT_VOX), progress=progress)


def annotate(result: SegmentationResult, info: Optional[dict[str, Any]]) -> SegmentationResult:
    """``result`` with the motion estimate in ``extra["motion_correction"]`` and a warning
    naming the phases that were realigned."""
    if info is None:
        return result
    result.extra = {**result.extra, "motion_correction": info}
    if info["corrected"]:
        largest = max(max(abs(v) for v in info["shifts_mm"][k]) for k in info["corrected"])
        result.warnings = [*result.warnings, f"motion between phases: phase(s) {info['corrected']} realigned "
                                              f"to the pre-contrast phase (largest shift {largest:.1f} mm)"]
    return result
