"""Acquisition artifacts that neither phantom renders: a phantom study as a scanner with these
effects would have acquired it, for checking how the methods hold up (``benchmarks/artifact_eval.py``,
``Testing/test_artifacts.py``). Each acts on the phases' magnitude images the way the effect arises;
none changes the truth.

Artifacts (``ARTIFACTS``):

* ``gibbs`` — k-space truncated to the central 55 % along the in-plane phase-encoding axis and 80 %
  along the readout, zero-filled back (ringing and blur at every sharp edge: skin, fat, a lesion's margin);
* ``ghosting`` — periodic motion (heart, breathing) repeats what enhances behind the breasts along the
  anterior-posterior axis: each post-contrast phase gets 6 % of its enhancement posterior to the
  breasts, shifted by a third and by half of the field of view, added as magnitude;
* ``view-sharing`` — a TWIST / keyhole dynamic: each post-contrast phase keeps its own central 25 % of
  k-space and takes the outer part from the mean of its neighbours (temporal blur of the edges);
* ``motion`` — the patient settles after the injection: every post-contrast phase shifted 3-4 mm and
  turned 2 degrees about the head-feet axis through the grid's centre (a prone patient's roll; the
  pre-contrast phase stays);
* ``coil-shading`` — a breast coil's receive profile: every phase alike times a field 2.5 times higher
  at the breasts' front surface than at the chest wall;
* ``fat-sat-failure`` — where the fat suppression fails (off-resonance in the lateral thirds of the
  field of view), the fat returns at 3 times its suppressed signal, in every phase alike (studies whose
  ``metadata["fat_suppressed"]`` is true; others are left as they are);
* ``noise`` — twice the image noise (Rician noise added on the magnitude; the air's noise read from
  the pre-contrast phase);
* ``nipples`` — anatomy rather than an artifact: a nipple-areolar complex on each breast, enhancing
  early with a plateau or washout curve (:mod:`.nipples`).

Usage::

    from BreastDCESegLib.synth import artifacts
    study = artifacts.with_artifact(ph.study, "ghosting", seed=3)
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..signal_zero import AIR_SIGNAL_FRACTION
from ..study import DCEStudy
from . import nipples
from .exports import with_arrays

Arrays = list[np.ndarray]


def _axis_along(study: DCEStudy, lps_axis: int) -> int:
    """The array axis (0 z, 1 y, 2 x) whose direction is nearest the patient axis ``lps_axis`` (0 L, 1 P, 2 S)."""
    direction = np.asarray(study.direction, float).reshape(3, 3)  # columns: the image axes i, j, k in LPS
    image_axis = int(np.argmax(np.abs(direction[lps_axis])))
    return 2 - image_axis


def _in_plane(study: DCEStudy) -> tuple[int, int]:
    """(phase-encoding, readout) array axes in the slice plane: phase encoding along the shorter side."""
    a, b = 1, 2
    extent = [n * s for n, s in zip(reversed(study.size), reversed(study.spacing))]
    return (a, b) if extent[a] <= extent[b] else (b, a)


def _kspace_window(shape: tuple[int, ...], keep: dict[int, float]) -> np.ndarray:
    """A 0/1 mask over the centred k-space of ``shape`` keeping the central fraction ``keep[axis]``."""
    window = np.ones(shape, bool)
    for axis, fraction in keep.items():
        n = shape[axis]
        k = np.abs(np.fft.fftfreq(n) * n)  # unshifted frequency index
        along = k <= fraction * n / 2
        window &= along.reshape([-1 if i == axis else 1 for i in range(len(shape))])
    return window


def _gibbs(arrays: Arrays, _rng: np.random.Generator, study: DCEStudy) -> Arrays:
    pe, ro = _in_plane(study)
    window = _kspace_window(arrays[0].shape, {pe: 0.55, ro: 0.8})
    return [np.abs(np.fft.ifftn(np.fft.fftn(a, axes=(1, 2)) * window, axes=(1, 2))) for a in arrays]


def _depth(study: DCEStudy, shape) -> tuple[np.ndarray, int]:
    """(each voxel's depth along the anterior-posterior axis, 0 at the front of the field of view and 1 at
    its back, broadcastable to ``shape``; that array axis)."""
    ap = _axis_along(study, 1)
    posterior = np.asarray(study.direction, float).reshape(3, 3)[1, 2 - ap] > 0  # the index runs to posterior
    n = shape[ap]
    depth = np.arange(n) / max(n - 1, 1)
    return (depth if posterior else depth[::-1]).reshape([-1 if i == ap else 1 for i in range(3)]), ap


def _ghosting(arrays: Arrays, _rng: np.random.Generator, study: DCEStudy) -> Arrays:
    depth, ap = _depth(study, arrays[0].shape)
    behind = depth >= 0.55  # behind the breasts: the heart, the aorta, the breathing chest wall
    out = [arrays[0]]
    for a in arrays[1:]:
        source = np.where(behind, np.clip(a - arrays[0], 0, None), 0.0)
        n = a.shape[ap]
        ghost = 0.06 * (np.roll(source, n // 3, axis=ap) + np.roll(source, n // 2, axis=ap))
        out.append(np.hypot(a, ghost))
    return out


def _view_sharing(arrays: Arrays, _rng: np.random.Generator, study: DCEStudy) -> Arrays:
    pe, ro = _in_plane(study)
    centre = _kspace_window(arrays[0].shape, {pe: 0.25, ro: 0.25})
    spectra = [np.fft.fftn(a, axes=(1, 2)) for a in arrays]
    out = [arrays[0]]
    for k in range(1, len(arrays)):
        neighbours = [spectra[j] for j in (k - 1, k + 1) if 1 <= j < len(arrays)] or [spectra[k]]
        shared = np.where(centre, spectra[k], sum(neighbours) / len(neighbours))
        out.append(np.abs(np.fft.ifftn(shared, axes=(1, 2))))
    return out


def _motion(arrays: Arrays, rng: np.random.Generator, study: DCEStudy) -> Arrays:
    direction = rng.normal(size=3)
    shift_mm = rng.uniform(3.0, 4.0) * direction / np.linalg.norm(direction)
    turn = sitk.Euler3DTransform()
    turn.SetCenter(study.pre.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2.0 for n in study.size]))
    turn.SetParameters([0.0, 0.0, float(np.deg2rad(2.0) * rng.choice([-1.0, 1.0])), *shift_mm])
    out = [arrays[0]]
    for a in arrays[1:]:
        image = sitk.GetImageFromArray(a)
        image.CopyInformation(study.pre)
        out.append(sitk.GetArrayFromImage(sitk.Resample(image, study.pre, turn, sitk.sitkBSpline, 0.0,
                                                        sitk.sitkFloat64)))  # cubic: motion itself does not blur
    return out


def _coil_shading(arrays: Arrays, _rng: np.random.Generator, study: DCEStudy) -> Arrays:
    depth, _ap = _depth(study, arrays[0].shape)
    field = 2.5 ** (1.0 - depth)
    return [a * field for a in arrays]


def _fat_sat_failure(arrays: Arrays, _rng: np.random.Generator, study: DCEStudy) -> Arrays:
    if not study.metadata.get("fat_suppressed"):  # the phantoms record it; fat that is not suppressed cannot fail
        return arrays
    lr = _axis_along(study, 0)
    index = np.arange(arrays[0].shape[lr])
    lateral = (np.minimum(index, index[::-1]) < len(index) / 3.0).reshape([-1 if i == lr else 1 for i in range(3)])
    pre = arrays[0]
    body = pre > 0.2 * np.percentile(pre, 99)
    enhancing = np.max(arrays[1:], axis=0) > 1.15 * pre
    fat = body & ~enhancing & (pre < np.percentile(pre[body], 40)) & lateral  # the darkest tissue: suppressed fat
    fat = ndimage.binary_opening(fat)
    return [np.where(fat, a * 3.0, a) for a in arrays]


def air_noise_sigma(pre: np.ndarray) -> float:
    """The noise sigma of a magnitude image from its air (the voxels :mod:`..signal_zero` takes for air,
    under ``AIR_SIGNAL_FRACTION`` of the 99th percentile): their median over ``sqrt(2 ln 2)``, a Rayleigh
    distribution's (unbiased while the noise is well under that level, as in both phantoms)."""
    air = pre[pre < AIR_SIGNAL_FRACTION * np.percentile(pre, 99)]
    return float(np.median(air) / np.sqrt(2.0 * np.log(2.0)))


def _noise(arrays: Arrays, rng: np.random.Generator, study: DCEStudy) -> Arrays:
    sigma = np.sqrt(3.0) * air_noise_sigma(arrays[0])  # sqrt(1 + 3) = twice the noise
    return [np.hypot(a + sigma * rng.standard_normal(a.shape), sigma * rng.standard_normal(a.shape)) for a in arrays]


ARTIFACTS: dict[str, Callable[[Arrays, np.random.Generator, DCEStudy], Arrays]] = {
    "none": lambda arrays, _rng, _study: arrays, "gibbs": _gibbs, "ghosting": _ghosting,
    "view-sharing": _view_sharing, "motion": _motion, "coil-shading": _coil_shading,
    "fat-sat-failure": _fat_sat_failure, "noise": _noise,
    "nipples": lambda arrays, rng, study: nipples.add_nipples(arrays, rng, study)[0]}


def with_artifact(study: DCEStudy, artifact: str, seed: int = 0) -> DCEStudy:
    """``study`` as acquired with ``artifact`` (float32 on the same grid; ``none``: the study itself).
    ``seed`` draws the motion and the added noise."""
    if artifact not in ARTIFACTS:
        raise ValueError(f"unknown artifact {artifact!r}; one of {', '.join(ARTIFACTS)}")
    if artifact == "none":
        return study
    arrays = [np.asarray(a, np.float64) for a in study.arrays()]
    return with_arrays(study, ARTIFACTS[artifact](arrays, np.random.default_rng(seed), study))
