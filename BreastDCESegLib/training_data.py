"""Training data: cases on the canonical grid as inference sees them, patches and augmentation.

A case is a study put on the model's canonical grid (:func:`preprocess.canonical_study`),
normalised over the phases its network reads, padded up to the patch size; patches are
drawn with a foreground ratio (as MONAI's RandCropByPosNegLabel) and augmented::

    from BreastDCESegLib.training_data import phantom_cases, sample_patches
    cases = phantom_cases(range(1000, 1004), "tumor", (2, 2, 3), "joint_zscore", (32, 64, 64), phases=2)
    x, y = sample_patches(cases[0], (32, 64, 64), k=4, pos_fraction=0.5, rng=np.random.default_rng(0))

Phantoms can come from the site profiles of :mod:`.synth.sites`, drawn round-robin
(seed ``i`` of the list gets profile ``i % len(sites)``); lesion-free and benign-only
studies are kept with their empty truth::

    plan = site_plan(parse_sites("two-phase,lesion-free"), range(1000, 1004))
    # [("two-phase", 1000), ("lesion-free", 1001), ("two-phase", 1002), ("lesion-free", 1003)]
    cases = site_cases(plan, "tumor", (2, 2, 3), "joint_zscore", (32, 64, 64), longest=112, phases=2)

Seeds 8000-8999 are the site evaluation's (``benchmarks/site_eval.py``); training refuses them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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
    site: str = ""              # the site profile of a phantom case
    negatives: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.int64))  # hard-negative voxels


def prepare_case(study, target: sitk.Image, spacing, normalization: str, patch: Sequence[int],
                 phases: Optional[int] = None, negatives: Optional[sitk.Image] = None) -> Case:
    """Put a study and its target on the canonical grid at ``spacing`` (as inference does),
    normalise the leading ``phases`` (``None``: all), pad up to the patch size. ``negatives``:
    a mask of enhancing non-targets (benign lesions, heart, vessels) for hard-negative patches."""
    grid = preprocess.canonical_study(study, spacing)

    def on_grid(mask: sitk.Image) -> np.ndarray:
        image = sitk.Resample(mask, grid.reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, mask.GetPixelID())
        return sitk.GetArrayFromImage(image).astype(np.uint8)

    label = on_grid(target)
    arrays = preprocess.normalize(grid.arrays()[:phases], normalization,
                                  preprocess.acquired_region(study.reference, grid.reference))
    pads = [(0, max(0, p - n)) for p, n in zip(patch, label.shape)]
    arrays = np.pad(arrays, [(0, 0)] + pads)
    label = np.pad(label, pads)
    case = Case(study.case_id, arrays, label, np.argwhere(label > 0))
    if negatives is not None:
        case.negatives = np.argwhere(np.pad(on_grid(negatives), pads) > 0)
    return case


LESION_NEGATIVES = ("benign", "lymph_node")  # lesions a reader could take for the tumor: every voxel a negative
STRUCTURE_NEGATIVES = ("heart", "vessel")  # large enhancing structures: a sample of their voxels
NEGATIVE_TISSUES = LESION_NEGATIVES + STRUCTURE_NEGATIVES  # enhancing structures that are not the tumor


def negative_mask(ph) -> sitk.Image:
    """The phantom's enhancing non-tumor voxels (:data:`NEGATIVE_TISSUES`) as a uint8 mask: every
    benign-lesion and lymph-node voxel, and as many heart/vessel voxels (at least 500) drawn at random,
    so the large heart does not crowd out the small benign lesions."""
    from .synth.tissues import TISSUE_LABELS
    labels = sitk.GetArrayFromImage(ph.labels)
    free = ph.tumor_array() == 0
    lesion_like = np.isin(labels, [TISSUE_LABELS[t] for t in LESION_NEGATIVES]) & free
    other = np.flatnonzero(np.isin(labels, [TISSUE_LABELS[t] for t in STRUCTURE_NEGATIVES]) & free)
    keep = np.random.default_rng(0).permutation(other)[:max(int(lesion_like.sum()), 500)]
    mask = lesion_like.ravel().copy()
    mask[keep] = True
    return ph.study.image_like(mask.reshape(labels.shape).astype(np.uint8), np.uint8)


def phantom_cases(seeds: Sequence[int], task: str, spacing, normalization: str, patch, size=(128, 128, 48),
                  overrides: Optional[dict] = None, phases: Optional[int] = None) -> list[Case]:
    from . import synth
    cases = []
    for seed in seeds:
        ph = synth.make_phantom(seed=int(seed), size=tuple(size), **(overrides or {}))
        ph.study.case_id = f"phantom_{seed}"
        cases.append(prepare_case(ph.study, ph.breast if task == "breast" else ph.tumor, spacing, normalization, patch,
                                  phases, negative_mask(ph) if task == "tumor" else None))
    return cases


EVALUATION_SEEDS = range(8000, 9000)  # benchmarks/site_eval.py: first_seed 8000 + 100 * site + i


def parse_sites(text: str | Sequence[str]) -> list[str]:
    """``"all"`` -> every profile of :data:`synth.sites.SITES`; ``"a,b"`` -> those names (checked)."""
    from .synth import sites

    names = list(sites.SITES) if text == "all" or list(text) == ["all"] else (
        [n.strip() for n in text.split(",") if n.strip()] if isinstance(text, str) else list(text))
    unknown = [n for n in names if n not in sites.SITES]
    if unknown or not names:
        raise BadInputError(f"Unknown site profile(s) {', '.join(unknown) or '(none given)'}; use 'all' or a comma-"
                            f"separated list of: {', '.join(sites.SITES)}.")
    return names


def site_plan(names: Sequence[str], seeds: Sequence[int]) -> list[tuple[str, int]]:
    """(profile, seed) pairs, profiles drawn round-robin; seeds of the site evaluation are refused."""
    clash = sorted(set(int(s) for s in seeds) & set(EVALUATION_SEEDS))
    if clash:
        raise BadInputError(f"Seeds {clash[0]}..{clash[-1]} are the site evaluation's (8000-8999, "
                            "benchmarks/site_eval.py); train and validate on other seeds.")
    return [(names[i % len(names)], int(seed)) for i, seed in enumerate(seeds)]


def site_phantoms(plan: Sequence[tuple[str, int]], longest: int):
    """Yield the phantom of each (profile, seed), case id ``<profile>_<seed>``."""
    from .synth import sites

    for name, seed in plan:
        ph = sites.make_site_phantom(name, seed=seed, longest=longest)
        ph.study.case_id = f"{name}_{seed}"
        yield ph


def site_cases(plan: Sequence[tuple[str, int]], task: str, spacing, normalization: str, patch, longest: int = 112,
               phases: Optional[int] = None) -> list[Case]:
    """Training cases of the site profiles in ``plan`` (see :func:`site_plan`)."""
    cases = []
    for ph in site_phantoms(plan, longest):
        case = prepare_case(ph.study, ph.breast if task == "breast" else ph.tumor, spacing, normalization, patch,
                            phases, negative_mask(ph) if task == "tumor" else None)
        case.site = ph.study.metadata["site"]
        cases.append(case)
    return cases


def sample_patches(case: Case, patch: Sequence[int], k: int, pos_fraction: float, rng: np.random.Generator,
                   neg_fraction: float = 0.0):
    """``k`` patches (k, P, D, H, W) and labels (k, 1, D, H, W); a patch is centred on a
    foreground voxel with probability ``pos_fraction``, on a hard-negative voxel (``case.negatives``)
    with probability ``neg_fraction``, elsewhere uniformly."""
    shape = np.array(case.label.shape)
    patch = np.array(patch)
    hard = neg_fraction > 0 and len(case.negatives) > 0
    xs, ys = [], []
    for _ in range(k):
        u = rng.random() if (len(case.foreground) or hard) else 1.0
        if len(case.foreground) and u < pos_fraction:
            centre = case.foreground[rng.integers(len(case.foreground))]
        elif hard and u >= 1.0 - neg_fraction:
            centre = case.negatives[rng.integers(len(case.negatives))]
        else:
            centre = np.array([rng.integers(n) for n in shape])
        start = np.clip(centre - patch // 2, 0, shape - patch)
        sl = tuple(slice(int(s), int(s + p)) for s, p in zip(start, patch))
        xs.append(case.arrays[(slice(None),) + sl])
        ys.append(case.label[sl][None])
    return np.stack(xs), np.stack(ys)

