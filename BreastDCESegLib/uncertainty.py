"""Voxel uncertainty by test-time augmentation: the network runs on the study and on its
mirror images (flips of each spatial axis, as in training), the probabilities are flipped
back, and their mean is the probability map and their standard deviation the uncertainty.

The uncertainty is high where the flipped predictions disagree, at the lesion boundary and
on ambiguous enhancement, and ~0 far from any enhancement; the panel shows it so a reader
knows where to look when refining. It applies to network models (option ``tta``); the kinetic
method, a deterministic filter chain, gives under the same option the spread of each lesion's mask over
the levels it could be cut at (:mod:`.models.kinetic_voxels`), its probability map its own.

Files next to the label (:func:`case_files`): ``<case>_prob.nii.gz`` (float32 probability)
and ``<case>_uncertainty.nii.gz`` (float32 standard deviation), both on the study grid.

Usage::

    from BreastDCESegLib import inference, uncertainty
    result = inference.segment(study, "resunet-demo", options={"tta": True})
    result.uncertainty                      # sitk.Image, float32, on the study grid
    extra = uncertainty.case_files(study.case_id, result)   # for outputs.write_case_outputs(extra_files=)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import SimpleITK as sitk

FLIPS: tuple[tuple[int, ...], ...] = ((), (2,), (1,), (0,))  # none, x, y, z of a (z, y, x) volume


def flip_tta(run: Callable[[np.ndarray], tuple[np.ndarray, Any]], arrays: np.ndarray,
             flips: tuple[tuple[int, ...], ...] = FLIPS) -> tuple[np.ndarray, np.ndarray, Any]:
    """(mean probability, std, what ``run`` returned second) over ``flips`` of ``arrays`` (P, z, y, x).

    ``run(arrays) -> (probability (z, y, x), info)``; the info of the first (unflipped) run
    is returned (e.g. the device used).
    """
    total = np.zeros(arrays.shape[1:], np.float64)
    square = np.zeros(arrays.shape[1:], np.float64)
    info = None
    for i, axes in enumerate(flips):
        flipped = np.flip(arrays, [a + 1 for a in axes]) if axes else arrays
        prob, used = run(np.ascontiguousarray(flipped))
        prob = np.flip(prob, list(axes)) if axes else prob
        info = used if i == 0 else info
        total += prob
        square += prob.astype(np.float64) ** 2
    mean = total / len(flips)
    std = np.sqrt(np.maximum(square / len(flips) - mean ** 2, 0.0))
    return mean.astype(np.float32), std.astype(np.float32), info


def probability(run: Callable[[np.ndarray], tuple[np.ndarray, Any]], arrays: np.ndarray, tta: Any
                ) -> tuple[np.ndarray, Optional[np.ndarray], Any]:
    """``run(arrays)`` as it is (``tta`` false: no uncertainty), or averaged over flips."""
    if not tta:
        prob, info = run(arrays)
        return prob, None, info
    return flip_tta(run, arrays)


def case_files(case_id: str, result) -> dict[str, Callable[[Path], Any]]:
    """``{file name: writer}`` of ``<case>_prob.nii.gz`` and ``<case>_uncertainty.nii.gz`` when the
    result has an uncertainty (option ``tta``), else ``{}``; for :func:`outputs.write_case_outputs`."""
    files: dict[str, Callable[[Path], Any]] = {}
    if result.uncertainty is None:
        return files
    for suffix, image in (("prob", result.probability), ("uncertainty", result.uncertainty)):
        if image is not None:
            files[f"{case_id}_{suffix}.nii.gz"] = (
                lambda path, image=image: sitk.WriteImage(sitk.Cast(image, sitk.sitkFloat32), str(path), True))
    return files
