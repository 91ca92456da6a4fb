"""Motion correction between phases: each post-contrast phase is registered to the
pre-contrast phase by a translation and a turn about the head-feet axis through the grid's centre
(SimpleITK, Mattes mutual information, smoothed then unsmoothed) and resampled onto it when it
moved a corner of the grid by more than ``min_shift_vox`` voxels along an image axis. A prone
patient who settles after the injection rolls as well as shifts: a roll of 2 degrees moves the
breasts 3-5 mm, unevenly, and a translation alone cannot follow it (second phantom, seeds 0-19, every
post-contrast phase moved 3-4 mm and rolled 2 degrees: kinetic mean Dice over 12 cancers 0.607 with the
translation, 0.942 with the roll, 0.953 unmoved; ``benchmarks/artifact_eval.py``). A roll under
:data:`MIN_ROLL_DEG` is taken as none (the translation alone is used, as estimated before the roll was
sought: no interpolation for a registration's noise). The displacement is counted along the image's own axes
(:func:`in_voxels`), in voxels, a voxel side taken at most :data:`MAX_STEP_PIXELS` times the finest
(:func:`voxel_steps_mm`): across 4.8 mm sagittal slices of 0.96 mm pixels a third of a slice is realigned
(counted in slices it was not, and the misregistered edge of a vessel read washout in a study without a
cancer); 5.9 mm slices of 2.16 mm pixels count their own thickness: realigning a third of one there (counted
in pixels, or in the geometric mean of slice and pixel) lowered the noise of the moved phase, and with it the
kinetic method's background-relative thresholds, and lost cancers of 20-47 mm.

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
With a motion store (:mod:`.motion_store`, ``BREASTDCESEG_MOTION_STORE``) they are kept on disk as well,
for a run in another process.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np
import SimpleITK as sitk

from . import motion_store
from .remembered import Remembered, digest, geometry
from .results import SegmentationResult
from .study import DCEStudy

MIN_SHIFT_VOX = 0.5        # resample a phase when it moved by more than this along any axis (voxel_steps_mm)
WORKING_SPACING_MM = 3.2  # the estimate runs on voxels about this size (block averages of the study's)
MAX_SHIFT_MM = 20.0        # larger estimates are registration failures: the phase is left as it is
MAX_STEP_PIXELS = 3.0      # a displacement across slices thicker than this many pixels is counted in this many
MIN_ROLL_DEG = 0.3         # a smaller turn about the head-feet axis is taken as none: still phantoms read 0.0-0.2


def _working_images(fixed: sitk.Image, moving: sitk.Image) -> tuple[sitk.Image, sitk.Image]:
    """Both images as float block averages of about ``WORKING_SPACING_MM`` voxels."""
    factors = [max(1, int(round(WORKING_SPACING_MM / sp))) for sp in fixed.GetSpacing()]
    return tuple(sitk.BinShrink(sitk.Cast(image, sitk.sitkFloat32), factors) for image in (fixed, moving))


def _centre(image: sitk.Image) -> tuple[float, ...]:
    """The physical centre of ``image``'s grid: the rotations turn about it."""
    return image.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2.0 for n in image.GetSize()])


def rigid_transform(motion_params, fixed: sitk.Image) -> sitk.Transform:
    """The rigid transform of ``motion_params`` (x, y, z rotations in radians, then the x, y, z
    translation in mm; or the translation alone) about the centre of ``fixed``'s grid: a
    translation transform when nothing turns."""
    params = [float(v) for v in motion_params]
    params = params if len(params) == 6 else [0.0, 0.0, 0.0, *params]
    return _euler(params, fixed) if any(params[:3]) else sitk.TranslationTransform(3, params[3:])


def _euler(params, fixed: sitk.Image) -> sitk.Euler3DTransform:
    transform = sitk.Euler3DTransform()
    transform.SetCenter(_centre(fixed))
    transform.SetParameters([float(v) for v in params])
    return transform


def in_voxels(vector_mm, image: sitk.Image) -> np.ndarray:
    """A physical (LPS, mm) vector as voxels along ``image``'s own axes i, j, k (a sagittal study's
    left-right shift is along its slice axis, in slice thicknesses)."""
    axes = np.asarray(image.GetDirection(), float).reshape(3, 3)  # columns: the image axes in LPS
    return np.linalg.solve(axes, np.asarray(vector_mm, float)) / np.asarray(image.GetSpacing(), float)


def voxel_steps_mm(image: sitk.Image) -> np.ndarray:
    """Per image axis i, j, k, the length (mm) that :func:`displacement_vox` counts as one voxel: the axis'
    own voxel side, at most :data:`MAX_STEP_PIXELS` times the finest one (4.84 mm slices of 0.96 mm pixels:
    2.88 mm, so a third of a slice counts as 0.56 voxels; 5.9 mm slices of 2.16 mm pixels: their own)."""
    spacing = np.asarray(image.GetSpacing(), float)
    return np.minimum(spacing, MAX_STEP_PIXELS * spacing.min())


def displacement_vox(motion_params, fixed: sitk.Image) -> float:
    """The largest displacement that ``motion_params`` gives a corner of ``fixed``'s grid (for a translation:
    the translation) along an image axis, in that axis' steps (:func:`voxel_steps_mm`)."""
    transform = rigid_transform(motion_params, fixed)
    to_steps = np.asarray(fixed.GetSpacing(), float) / voxel_steps_mm(fixed)  # image voxels -> steps
    largest = 0.0
    for corner in np.ndindex(2, 2, 2):
        point = fixed.TransformContinuousIndexToPhysicalPoint(
            [c * (n - 1) for c, n in zip(corner, fixed.GetSize())])
        moved = np.asarray(transform.TransformPoint(point)) - np.asarray(point)
        largest = max(largest, float(np.abs(in_voxels(moved, fixed) * to_steps).max()))
    return largest


def _mutual_information(fixed: sitk.Image, moving: sitk.Image, transform: sitk.Transform) -> float:
    """Mattes mutual information over every voxel of two working images, ``moving`` moved by ``transform``."""
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(32)
    reg.SetMetricSamplingStrategy(reg.NONE)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetInitialTransform(transform)
    return float(reg.MetricEvaluate(fixed, moving))


def alignment_cost(fixed: sitk.Image, moving: sitk.Image, motion_params) -> float:
    """Mattes mutual information of ``moving`` moved by ``motion_params`` (:func:`rigid_transform`)
    against ``fixed``, over every voxel of the working images, as ITK gives it: negative, lower is
    better aligned."""
    return _mutual_information(*_working_images(fixed, moving), rigid_transform(motion_params, fixed))


def _aligns_better(fixed: sitk.Image, moving: sitk.Image, motion_params) -> bool:
    """Whether ``motion_params`` align ``moving`` to ``fixed`` better than none (:func:`alignment_cost`)."""
    working = _working_images(fixed, moving)
    return (_mutual_information(*working, rigid_transform(motion_params, fixed))
            < _mutual_information(*working, rigid_transform(np.zeros(3), fixed)))


def _registration(seed: int, smoothed_level: bool = True) -> sitk.ImageRegistrationMethod:
    """Mattes mutual information on 5 % of the working voxels drawn at random (``seed``), regular-step
    gradient descent, two levels (smoothed, then not; ``smoothed_level=False``: the unsmoothed one alone,
    for a search that starts close to its answer)."""
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(32)
    reg.SetMetricSamplingStrategy(reg.RANDOM)    # not REGULAR: see the module docstring (still sagittal studies)
    reg.SetMetricSamplingPercentage(0.05, seed)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(learningRate=2.0, minStep=0.01, numberOfIterations=100,
                                                 relaxationFactor=0.6)
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel([1, 1] if smoothed_level else [1])  # on the working images: smoothed, then not
    reg.SetSmoothingSigmasPerLevel([1, 0] if smoothed_level else [0])
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    return reg


def _register(working: tuple[sitk.Image, sitk.Image], initial: sitk.Transform, seed: int,
              weights: Optional[list[float]] = None, smoothed_level: bool = True) -> np.ndarray:
    """The parameters :func:`_registration` reaches from ``initial`` on the working images (``weights``:
    the optimizer's per-parameter weights, 0 holds a parameter)."""
    reg = _registration(seed, smoothed_level)
    reg.SetInitialTransform(initial, inPlace=False)
    if weights is not None:
        reg.SetOptimizerWeights(weights)
    return np.array(reg.Execute(*working).GetParameters(), dtype=float)


def estimate_shift(fixed: sitk.Image, moving: sitk.Image, seed: int = 7) -> np.ndarray:
    """Translation (x, y, z, mm) that maps points of ``fixed`` onto ``moving``."""
    return _register(_working_images(fixed, moving), sitk.TranslationTransform(3), seed)


def estimate_motion(fixed: sitk.Image, moving: sitk.Image, seed: int = 7) -> np.ndarray:
    """Rigid motion that maps points of ``fixed`` onto ``moving``: (x, y, z rotations in radians about
    the centre of ``fixed``'s grid, x, y, z translation in mm; :func:`rigid_transform`). The translation
    (:func:`estimate_shift`) first; from there a turn about the head-feet axis with the translation (a
    prone patient's roll; no turn about the other two axes: across thick slices they are poorly
    determined), on the unsmoothed level alone (it starts from the translation), kept when it turns
    :data:`MIN_ROLL_DEG` or more."""
    working = _working_images(fixed, moving)  # block averages made once for both registrations
    shift = _register(working, sitk.TranslationTransform(3), seed)
    params = _register(working, _euler(np.r_[0.0, 0.0, 0.0, shift], fixed), seed,
                       weights=[0.0, 0.0, 1.0, 1.0, 1.0, 1.0],  # no turn about the left-right or front-back axis
                       smoothed_level=False)
    return params if abs(np.degrees(params[2])) >= MIN_ROLL_DEG else np.r_[0.0, 0.0, 0.0, shift]


_OWN_ESTIMATOR = estimate_motion
REMEMBERED = 4  # studies whose estimates are kept for re-runs (another model, other options, the panel's re-run)
_ESTIMATES = Remembered(REMEMBERED)


def clear() -> None:
    """Forget the remembered motion estimates."""
    _ESTIMATES.clear()


def _estimates(study: DCEStudy, min_shift_vox: float,
               progress: Optional[Callable[[str, float, str], None]]) -> tuple[tuple[tuple, Optional[tuple]], ...]:
    """Per post-contrast phase, (motion to use: :func:`estimate_motion`'s six parameters, the estimate
    discarded as aligning worse or None); full precision (the info rounds them, the resampling does not)."""
    out = []
    for k in range(1, study.n_phases):
        if progress is not None:
            progress("motion", (k - 1) / (study.n_phases - 1),
                     f"aligning phase {k} of {study.n_phases - 1} to the pre-contrast phase")
        params = estimate_motion(study.pre, study.phases[k])
        discarded = None
        if displacement_vox(params, study.pre) > min_shift_vox and not _aligns_better(study.pre, study.phases[k],
                                                                                      params):
            discarded, params = tuple(float(v) for v in params), np.zeros(6)
        out.append((tuple(float(v) for v in params), discarded))
    return tuple(out)


def _moved(image: sitk.Image, fixed: sitk.Image, motion_params) -> sitk.Image:
    """``image`` resampled (linear) onto ``fixed`` through the rigid motion ``motion_params``
    (:func:`rigid_transform`); voxels that would come from outside its field of view keep their own value."""
    moved = sitk.Resample(image, fixed, rigid_transform(motion_params, fixed), sitk.sitkLinear, np.nan,
                          sitk.sitkFloat32)
    arr = sitk.GetArrayFromImage(moved)
    outside = np.isnan(arr)
    arr[outside] = sitk.GetArrayViewFromImage(image)[outside]
    out = sitk.GetImageFromArray(arr)
    out.CopyInformation(fixed)
    return out


def correct(study: DCEStudy, min_shift_vox: float = MIN_SHIFT_VOX, max_shift_mm: float = MAX_SHIFT_MM,
            progress: Optional[Callable[[str, float, str], None]] = None) -> tuple[DCEStudy, dict[str, Any]]:
    """(study with moved post-contrast phases registered to phase 0, info).

    A phase is resampled (linear) only when its estimated motion moves a corner of the grid by more
    than ``min_shift_vox`` steps along some axis (:func:`displacement_vox`), its translation stays
    within ``max_shift_mm`` and it aligns the phase better than none (:func:`alignment_cost`);
    otherwise the study's own image is kept. ``info``: ``shifts_mm`` and ``shifts_vox`` (the
    translation at the grid's centre; in voxels along the image's own axes) and ``rotations_deg``
    (about x, y, z) per phase (zero for a
    phase in ``not_better``), ``corrected`` (phase indices), ``rejected`` (estimates over
    ``max_shift_mm``), ``not_better`` (estimates that aligned worse than none; ``discarded_mm`` holds
    their translations, in that order), ``remembered`` (True when the estimates of an earlier run on
    the same arrays and grid were reused, in this process or from a motion store on disk,
    :mod:`.motion_store`: the registrations are the slow part, the resampling is redone).
    """
    study_key = (digest(sitk.GetArrayViewFromImage(image) for image in study.phases), geometry(study.pre),
                 float(min_shift_vox))
    key = (*study_key, estimate_motion)  # the estimator too: a replaced one (a test's) estimates afresh
    stored = estimate_motion is _OWN_ESTIMATOR  # only this module's estimates go to and come from disk
    estimates = _ESTIMATES.recall(key)
    if estimates is None and stored:
        estimates = motion_store.load(study_key, study.n_phases - 1)
    remembered = estimates is not None
    if not remembered:
        estimates = _estimates(study, min_shift_vox, progress)
        if stored:
            motion_store.save(study_key, estimates)
    _ESTIMATES.remember(key, estimates)
    images = list(study.phases)
    shifts, rotations, corrected, rejected, not_better, discarded = [[0.0] * 3], [[0.0] * 3], [], [], [], []
    for k, (params, dropped) in enumerate(estimates, start=1):
        if dropped is not None:
            not_better.append(k)
            discarded.append([round(v, 3) for v in dropped[3:]])
        shift = params[3:]
        shifts.append([round(v, 3) for v in shift])
        rotations.append([round(float(np.degrees(v)), 3) for v in params[:3]])
        if np.abs(shift).max() > max_shift_mm:
            rejected.append(k)
        elif displacement_vox(params, study.pre) > min_shift_vox:
            images[k] = _moved(images[k], study.pre, params)
            corrected.append(k)
    info = {"shifts_mm": shifts, "shifts_vox": [[round(float(v), 3) for v in in_voxels(s, study.pre)] for s in shifts],
            "rotations_deg": rotations, "corrected": corrected, "rejected": rejected, "not_better": not_better,
            "discarded_mm": discarded, "min_shift_vox": min_shift_vox, "remembered": remembered}
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
