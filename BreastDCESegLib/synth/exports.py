"""How a site may hand over a DCE series: the phantom's phases re-encoded as scanners, archives
and preprocessing pipelines store them, for checking that the methods read the same study from
every encoding (``Testing/test_signal_zero.py``, ``benchmarks/signal_exports.py``).

Exports (``EXPORTS``):

* ``as-written`` — the phantom's own integers;
* ``scaled`` — every phase times 1e-3 (a 0-1 float export);
* ``z-scored`` — the mean and SD of all phases together (MAMA-MIA's recommended preprocessing);
* ``z-scored-by-phase`` — each phase with its own mean and SD (per-channel normalisation);
* ``min-max-by-phase`` — each phase mapped from its own minimum and maximum to 0-1 (per-volume
  normalisation: the post-contrast phases' maxima, the enhancing heart and vessels, set their scale);
* ``offset`` — every phase plus 10 % of the pre-contrast's 99th percentile (a positive offset);
* ``phase-gain`` — each post-contrast phase times its own gain drawn in 0.9-1.1 (per-series
  scaling that a reader did not undo).

Usage::

    from BreastDCESegLib.synth import exports
    study = exports.exported(ph.study, "z-scored-by-phase")
    study = exports.exported(ph.study, "phase-gain", seed=4)   # the gains drawn from ``seed``
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import SimpleITK as sitk

from ..study import DCEStudy


def _scaled(arrays: list[np.ndarray], _rng: np.random.Generator) -> list[np.ndarray]:
    return [a * 1e-3 for a in arrays]


def _z_scored(arrays: list[np.ndarray], _rng: np.random.Generator) -> list[np.ndarray]:
    values = np.concatenate([a.ravel() for a in arrays])
    mean, sd = float(values.mean()), float(values.std())
    return [(a - mean) / sd for a in arrays]


def _z_scored_by_phase(arrays: list[np.ndarray], _rng: np.random.Generator) -> list[np.ndarray]:
    return [(a - a.mean()) / a.std() for a in arrays]


def _min_max_by_phase(arrays: list[np.ndarray], _rng: np.random.Generator) -> list[np.ndarray]:
    return [(a - a.min()) / (a.max() - a.min()) for a in arrays]


def _offset(arrays: list[np.ndarray], _rng: np.random.Generator) -> list[np.ndarray]:
    shift = 0.1 * float(np.percentile(arrays[0], 99))
    return [a + shift for a in arrays]


def _phase_gain(arrays: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    return [arrays[0]] + [a * float(rng.uniform(0.9, 1.1)) for a in arrays[1:]]


EXPORTS: dict[str, Callable[[list[np.ndarray], np.random.Generator], list[np.ndarray]]] = {
    "as-written": lambda arrays, _rng: arrays, "scaled": _scaled, "z-scored": _z_scored,
    "z-scored-by-phase": _z_scored_by_phase, "min-max-by-phase": _min_max_by_phase, "offset": _offset,
    "phase-gain": _phase_gain}


def exported(study: DCEStudy, export: str, seed: int = 0) -> DCEStudy:
    """``study`` with its phases re-encoded as ``export`` (float32 on the same grid; ``as-written``:
    the study itself). ``seed`` draws the ``phase-gain`` gains."""
    if export not in EXPORTS:
        raise ValueError(f"unknown export {export!r}; one of {', '.join(EXPORTS)}")
    if export == "as-written":
        return study
    arrays = [sitk.GetArrayFromImage(image).astype(np.float64) for image in study.phases]
    return with_arrays(study, EXPORTS[export](arrays, np.random.default_rng(seed)))


def with_arrays(study: DCEStudy, arrays: list[np.ndarray]) -> DCEStudy:
    """``study`` with its phases' voxels replaced by ``arrays`` (z, y, x each; float32 on the same grid)."""
    images = []
    for array, image in zip(arrays, study.phases):
        out = sitk.GetImageFromArray(np.asarray(array, np.float32))
        out.CopyInformation(image)
        images.append(out)
    return DCEStudy.from_images(images, times=study.times, metadata=dict(study.metadata), case_id=study.case_id)
