"""Speed helpers for the fast path of the zhang2023 pipeline (:mod:`.zhang2023_pipeline`).

Each helper computes what the authors' pipeline computes, only with less work:

* :func:`fold_batchnorm` — an inference copy of a network with every BatchNorm folded
  into the convolution before it (eval-mode BatchNorm is a per-channel affine map, so
  ``bn(conv(x)) == conv'(x)`` up to float rounding: about 1e-7 on the outputs). It saves
  a full pass over every feature map, the largest being the 32 x 96 x 96 ones.
* :func:`window_batch` — windows cut from a channels-last copy of the volume straight into
  a channels-last batch (one copy instead of two).

Usage::

    from BreastDCESegLib.models import zhang2023_fast as zf
    net = zf.fold_batchnorm(network)                    # the caller's network is not changed
"""

from __future__ import annotations

import copy
from typing import Sequence

import numpy as np


def fold_batchnorm(network):
    """A copy of ``network`` (eval mode) where each ``Conv3d``/``ConvTranspose3d`` directly
    followed by a ``BatchNorm3d`` in an ``nn.Sequential`` absorbs it (the BatchNorm becomes
    ``nn.Identity``). ``network`` itself is left as it is."""
    import torch
    from torch import nn

    folded = copy.deepcopy(network).eval()
    with torch.no_grad():
        for module in folded.modules():
            if not isinstance(module, nn.Sequential):
                continue
            names = list(module._modules)
            for first, second in zip(names, names[1:]):
                conv, bn = module._modules[first], module._modules[second]
                if not (isinstance(conv, (nn.Conv3d, nn.ConvTranspose3d)) and isinstance(bn, nn.BatchNorm3d)
                        and bn.track_running_stats and bn.running_var is not None):
                    continue
                scale = torch.rsqrt(bn.running_var.double() + bn.eps)
                shift = -bn.running_mean.double() * scale
                if bn.affine:
                    scale, shift = scale * bn.weight.double(), shift * bn.weight.double() + bn.bias.double()
                shape = [1] * conv.weight.dim()
                shape[1 if isinstance(conv, nn.ConvTranspose3d) else 0] = -1   # the output-channel axis
                weight = conv.weight.double() * scale.view(shape)
                bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(scale)
                conv.weight.copy_(weight.to(conv.weight.dtype))
                conv.bias = nn.Parameter((bias * scale + shift).to(conv.weight.dtype), requires_grad=False)
                module._modules[second] = nn.Identity()
    return folded


def channels_last_volume(x: np.ndarray, padded: Sequence[int]) -> np.ndarray:
    """``x`` (c, z, y, x) zero-padded at the far end to ``padded`` (z, y, x), stored (z, y, x, c)."""
    volume = np.zeros((*padded, x.shape[0]), dtype=np.float32)
    volume[:x.shape[1], :x.shape[2], :x.shape[3]] = np.moveaxis(x, 0, -1)
    return volume


def window_batch(volume: np.ndarray, starts: Sequence[Sequence[int]], window: Sequence[int]):
    """The windows at ``starts`` of a (z, y, x, c) ``volume`` as a float32 tensor (n, c, d, h, w)
    in ``torch.channels_last_3d`` memory format (cut with one copy)."""
    import torch

    d, h, w = window
    batch = np.stack([volume[a:a + d, b:b + h, c:c + w] for a, b, c in starts])
    return torch.from_numpy(batch).permute(0, 4, 1, 2, 3)

