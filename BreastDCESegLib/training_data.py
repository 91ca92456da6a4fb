"""Training data: cases on the canonical grid as inference sees them, patches and augmentation.

A case is a study put on the model's canonical grid (:func:`preprocess.canonical_study`),
normalised over the phases its network reads, padded up to the patch size; patches are
drawn with a foreground ratio (as MONAI's RandCropByPosNegLabel) and augmented::

    from BreastDCESegLib.training_data import phantom_cases, sample_patches
    cases = phantom_cases(range(1000, 1004), "tumor", (2, 2, 3), "joint_zscore", (32, 64, 64), phases=2)
    x, y = sample_patches(cases[0], (32, 64, 64), k=4, pos_fraction=0.5, rng=np.random.default_rng(0))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import SimpleITK as sitk

from . import preprocess
from .errors import BadInputError


@dataclass
class Case:
    """One preprocessed training case: normalised phases, target mask, foreground indices."""

    case_id: str
    arrays: np.ndarray          # (P, z, y, x) float32
    label: np.ndarray           # (z, y, x) uint8
    foreground: np.ndarray      # (n, 3) indices of label voxels


def prepare_case(study, target: sitk.Image, spacing, normalization: str, patch: Sequence[int],
                 phases: Optional[int] = None) -> Case:
    """Put a study and its target on the canonical grid at ``spacing`` (as inference does),
    normalise the leading ``phases`` (``None``: all), pad up to the patch size."""
    grid = preprocess.canonical_study(study, spacing)
    label = sitk.Resample(target, grid.reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, target.GetPixelID())
    label = sitk.GetArrayFromImage(label).astype(np.uint8)
    arrays = preprocess.normalize(grid.arrays()[:phases], normalization,
                                  preprocess.acquired_region(study.reference, grid.reference))
    pads = [(0, max(0, p - n)) for p, n in zip(patch, label.shape)]
    arrays = np.pad(arrays, [(0, 0)] + pads)
    label = np.pad(label, pads)
    return Case(study.case_id, arrays, label, np.argwhere(label > 0))


def phantom_cases(seeds: Sequence[int], task: str, spacing, normalization: str, patch, size=(128, 128, 48),
                  overrides: Optional[dict] = None, phases: Optional[int] = None) -> list[Case]:
    from . import synth
    cases = []
    for seed in seeds:
        ph = synth.make_phantom(seed=int(seed), size=tuple(size), **(overrides or {}))
        ph.study.case_id = f"phantom_{seed}"
        cases.append(prepare_case(ph.study, ph.breast if task == "breast" else ph.tumor, spacing, normalization, patch,
                                  phases))
    return cases


def mamamia_cases(root: str, case_ids: Sequence[str], spacing, normalization: str, patch,
                  phases: Optional[int] = None) -> list[Case]:
    from .io import mamamia
    cases = []
    for cid in case_ids:
        study, truth = mamamia.read_case(root, cid)
        if truth is None:
            raise BadInputError(f"MAMA-MIA case {cid} in {root} has no expert segmentation; it cannot be used "
                                "for training. Remove it or add segmentations/expert/<case>.nii.gz.")
        cases.append(prepare_case(study, truth, spacing, normalization, patch, phases))
    return cases


def sample_patches(case: Case, patch: Sequence[int], k: int, pos_fraction: float, rng: np.random.Generator):
    """``k`` patches (k, P, D, H, W) and labels (k, 1, D, H, W); a patch is centred on a
    foreground voxel with probability ``pos_fraction``, elsewhere uniformly."""
    shape = np.array(case.label.shape)
    patch = np.array(patch)
    xs, ys = [], []
    for _ in range(k):
        if len(case.foreground) and rng.random() < pos_fraction:
            centre = case.foreground[rng.integers(len(case.foreground))]
        else:
            centre = np.array([rng.integers(n) for n in shape])
        start = np.clip(centre - patch // 2, 0, shape - patch)
        sl = tuple(slice(int(s), int(s + p)) for s, p in zip(start, patch))
        xs.append(case.arrays[(slice(None),) + sl])
        ys.append(case.label[sl][None])
    return np.stack(xs), np.stack(ys)


def augment(x, y, rng: np.random.Generator, scale: float = 0.1, shift: float = 0.1):
    """Random flips of the three spatial axes, one intensity scale and shift per patch."""
    import torch
    for axis in (2, 3, 4):
        if rng.random() < 0.5:
            x, y = torch.flip(x, (axis,)), torch.flip(y, (axis,))
    b = x.shape[0]
    s = torch.from_numpy(rng.uniform(1 - scale, 1 + scale, (b, 1, 1, 1, 1)).astype(np.float32)).to(x.device)
    t = torch.from_numpy(rng.uniform(-shift, shift, (b, 1, 1, 1, 1)).astype(np.float32)).to(x.device)
    return x * s + t, y
