"""Patch augmentation for training, built from MONAI dictionary transforms.

Each training patch (phases ``image`` (P, D, H, W), target ``label`` (1, D, H, W)) passes
through one MONAI ``Compose``. Spatial transforms act on the image and the label together
(label resampled with "nearest-exact", centre-aligned with the trilinear image; torch's legacy
"nearest" would shift it by up to a voxel); intensity transforms
act on the image only, and all phases share one draw unless said "per phase". The
``"heavy"`` level (default of ``breastdceseg train``), in order, with its probabilities:

====================================== ====== ===============================================
transform                              p      what it simulates
====================================== ====== ===============================================
RandFlipd, each of the 3 axes          0.5    left/right, head/feet, AP: any file orientation
RandRotate90d in-plane (H, W), k 1..3  0.5    in-plane axis swaps (row/column order)
RandZoomd 0.8-1.25 (keep size)         0.3    voxel size / spacing and lesion size
RandBiasFieldd degree 3, coeff 0-0.25  0.3    coil bias field (one field for all phases)
RandAdjustContrastd gamma 0.7-1.5      0.3    contrast / gamma (mean and std retained)
RandGaussianSmoothd sigma 0.5-1.0      0.2    blur, partial volume
RandSimulateLowResolutiond zoom .5-1   0.2    thick slices / low matrix, upsampled back
RandGaussianNoised std up to 0.15      0.3    low SNR (in z-score units)
RandScaleIntensityd +-15 %, per phase  0.5    per-phase gain, enhancement ratio spread
RandShiftIntensityd +-0.15, per phase  0.5    per-phase offset
====================================== ====== ===============================================

``"light"`` keeps only the flips and one scale/shift shared by the phases (the augmentation
of the earlier demo weights); ``"none"`` passes patches unchanged. Usage::

    from BreastDCESegLib.training_augment import make_augmentation, augment_batch
    transform = make_augmentation("heavy", seed=0)
    x, y = augment_batch(x, y, transform)   # numpy (k, P, D, H, W), (k, 1, D, H, W) -> torch
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

LEVELS = ("heavy", "light", "none")
KEYS = ("image", "label")

# (transform name, probability, settings) for the registry's training record
HEAVY = [
    ("RandFlipd axis 0/1/2", 0.5, "each axis independently"),
    ("RandRotate90d spatial_axes (1, 2)", 0.5, "k in 1..3 (in-plane axis swap)"),
    ("RandZoomd", 0.3, "zoom 0.8-1.25, trilinear / nearest-exact, size kept"),
    ("RandBiasFieldd", 0.3, "degree 3, coefficients 0-0.25"),
    ("RandAdjustContrastd", 0.3, "gamma 0.7-1.5, statistics retained"),
    ("RandGaussianSmoothd", 0.2, "sigma 0.5-1.0 voxel"),
    ("RandSimulateLowResolutiond", 0.2, "zoom 0.5-1.0"),
    ("RandGaussianNoised", 0.3, "std 0-0.15"),
    ("RandScaleIntensityd channel_wise", 0.5, "factor +-0.15 per phase"),
    ("RandShiftIntensityd channel_wise", 0.5, "offset +-0.15 per phase"),
]
LIGHT = [("RandFlipd axis 0/1/2", 0.5, "each axis independently"),
         ("RandScaleIntensityd", 1.0, "factor +-0.1, all phases"), ("RandShiftIntensityd", 1.0, "offset +-0.1")]


def spatial_transforms(patch: Sequence[int]) -> list:
    """Flips on all axes, in-plane rot90 (only for square in-plane patches) and zoom; image and label."""
    from monai import transforms as T

    steps = [T.RandFlipd(KEYS, prob=0.5, spatial_axis=axis) for axis in (0, 1, 2)]
    if int(patch[1]) == int(patch[2]):
        steps.append(T.RandRotate90d(KEYS, prob=0.5, max_k=3, spatial_axes=(1, 2)))
    steps.append(T.RandZoomd(KEYS, prob=0.3, min_zoom=0.8, max_zoom=1.25, mode=("trilinear", "nearest-exact"),
                             padding_mode="edge", keep_size=True))
    return steps


def intensity_transforms() -> list:
    """Bias field, gamma, blur, low resolution, noise, per-phase scale and shift; image only."""
    from monai import transforms as T

    return [
        T.RandBiasFieldd("image", degree=3, coeff_range=(0.0, 0.25), prob=0.3),
        T.RandAdjustContrastd("image", prob=0.3, gamma=(0.7, 1.5), retain_stats=True),
        T.RandGaussianSmoothd("image", sigma_x=(0.5, 1.0), sigma_y=(0.5, 1.0), sigma_z=(0.5, 1.0), prob=0.2),
        T.RandSimulateLowResolutiond("image", prob=0.2, zoom_range=(0.5, 1.0)),
        T.RandGaussianNoised("image", prob=0.3, mean=0.0, std=0.15),
        T.RandScaleIntensityd("image", factors=0.15, prob=0.5, channel_wise=True),
        T.RandShiftIntensityd("image", offsets=0.15, prob=0.5, channel_wise=True),
    ]


def make_augmentation(level: str = "heavy", patch: Sequence[int] = (32, 64, 64), seed: int = 0):
    """The MONAI ``Compose`` of ``level`` (see the module table), seeded with ``seed``."""
    from monai import transforms as T

    if level not in LEVELS:
        raise ValueError(f"unknown augmentation {level!r}; choose one of {', '.join(LEVELS)}")
    if level == "heavy":
        steps = spatial_transforms(patch) + intensity_transforms()
    elif level == "light":
        steps = [T.RandFlipd(KEYS, prob=0.5, spatial_axis=axis) for axis in (0, 1, 2)]
        steps += [T.RandScaleIntensityd("image", factors=0.1, prob=1.0),
                  T.RandShiftIntensityd("image", offsets=0.1, prob=1.0)]
    else:
        steps = []
    compose = T.Compose(steps)
    compose.set_random_state(seed=int(seed) % (2 ** 32))
    return compose


def describe(level: str) -> list[dict]:
    """The augmentation as a list of {transform, p, settings} rows (for the registry record)."""
    rows = HEAVY if level == "heavy" else LIGHT if level == "light" else []
    return [{"transform": name, "p": p, "settings": settings} for name, p, settings in rows]


def augment_batch(x: np.ndarray, y: np.ndarray, transform, device: str = "cpu"):
    """Apply ``transform`` to each patch of a batch; returns float32 ``(x, y)`` torch tensors."""
    import torch

    xs, ys = [], []
    for image, label in zip(x, y):
        out = transform({"image": torch.from_numpy(np.ascontiguousarray(image, np.float32)),
                         "label": torch.from_numpy(np.ascontiguousarray(label, np.float32))})
        xs.append(torch.as_tensor(_plain(out["image"]), dtype=torch.float32))
        ys.append(torch.as_tensor(_plain(out["label"]), dtype=torch.float32))
    return torch.stack(xs).to(device), torch.stack(ys).to(device)


def _plain(value):
    """A MONAI MetaTensor as a plain tensor (stacking MetaTensors would carry their metadata)."""
    return value.as_tensor() if hasattr(value, "as_tensor") else value
