"""Building blocks shared by the network families (MONAI dynunet blocks underneath).

Every family's network takes ``x`` of shape (B, P, D, H, W): the normalised phases of
a patch, phase 0 the pre-contrast image. The helpers here check that input, build the
residual 3-D encoder that several families share over phases, the U-Net decoder, and
count parameters and floating-point operations (on the meta device, so even the paper
configurations allocate nothing)::

    import torch
    from BreastDCESegLib.models.blocks import ResEncoder, UNetDecoder, count_parameters
    enc = ResEncoder(2, (16, 32, 64, 128, 256))
    dec = UNetDecoder((16, 32, 64, 128, 256), out_channels=1)
    feats = enc(torch.zeros(1, 2, 32, 64, 64))   # 5 maps, strides 1, 2, 4, 8, 16
    logits = dec(feats)                           # (1, 1, 32, 64, 64)
    count_parameters(enc) + count_parameters(dec)
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from monai.losses import DiceLoss
from monai.networks.blocks.dynunet_block import UnetOutBlock, UnetResBlock, UnetUpBlock
from monai.networks.nets import UNet
from torch import nn

from ..errors import BadInputError

NORM = ("instance", {"affine": True})
ACT = ("leakyrelu", {"inplace": True, "negative_slope": 0.01})


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (works on meta-device models, which hold no data)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def check_input(x: torch.Tensor, min_phases: int, multiple: int = 16) -> None:
    """Raise BadInputError unless ``x`` is (B, P, D, H, W) with P >= min_phases and
    every spatial size a multiple of ``multiple`` (the total down-sampling factor)."""
    if x.ndim != 5:
        raise BadInputError(
            f"network input must be (batch, phases, D, H, W); got shape {tuple(x.shape)}. "
            "Stack the normalised phases of a patch along dimension 1.")
    if x.shape[1] < min_phases:
        raise BadInputError(
            f"this network needs at least {min_phases} phase(s) (pre-contrast first); "
            f"got {x.shape[1]}. Load the post-contrast phases too, or pick a model that "
            "needs fewer phases.")
    bad = [s for s in x.shape[2:] if s % multiple]
    if bad:
        raise BadInputError(
            f"patch size {tuple(x.shape[2:])} is not a multiple of {multiple} in every "
            "dimension; use a patch size such as (48, 96, 96) or (32, 64, 64).")


def phase_inputs(x: torch.Tensor) -> torch.Tensor:
    """(B, P, D, H, W) -> (B, P, 2, D, H, W): per phase [phase, phase - pre]."""
    return torch.stack([x, x - x[:, :1]], dim=2)


def default_phase_mask(x: torch.Tensor, phase_mask: torch.Tensor | None) -> torch.Tensor:
    """A (B, P) bool mask of present phases (all True when None); the pre phase must be present."""
    b, p = x.shape[:2]
    if phase_mask is None:
        return torch.ones(b, p, dtype=torch.bool, device=x.device)
    if tuple(phase_mask.shape) != (b, p):
        raise BadInputError(f"phase_mask must have shape {(b, p)}; got {tuple(phase_mask.shape)}.")
    phase_mask = phase_mask.to(device=x.device, dtype=torch.bool)
    if x.device.type != "meta" and not bool(phase_mask[:, 0].all()):
        raise BadInputError("phase_mask marks the pre-contrast phase (index 0) absent; it is required.")
    return phase_mask


def masked_mean(f: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over dim 1 of f (B, P, ...) counting only phases where mask (B, P) is True."""
    w = mask.to(f.dtype).view(*mask.shape, *([1] * (f.ndim - 2)))
    return (f * w).sum(1) / w.sum(1).clamp_min(1.0)


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Softmax over ``dim`` of scores (B, P, ...) with absent phases (mask False) given weight 0
    (all weights 0 where every phase is absent)."""
    m = mask.view(*mask.shape, *([1] * (scores.ndim - 2)))
    return torch.softmax(scores.masked_fill(~m, torch.finfo(scores.dtype).min), dim=dim) * m


class ResEncoder(nn.Module):
    """Residual 3-D encoder: one UnetResBlock per level, level 0 at full resolution,
    each further level halving every spatial size. Returns the feature maps of all levels."""

    def __init__(self, in_channels: int, channels: Sequence[int], blocks_per_level: int | Sequence[int] = 1):
        super().__init__()
        n = len(channels)
        per = [blocks_per_level] * n if isinstance(blocks_per_level, int) else list(blocks_per_level)
        self.levels = nn.ModuleList()
        prev = in_channels
        for i, (c, k) in enumerate(zip(channels, per)):
            stride = 1 if i == 0 else 2
            blocks = [UnetResBlock(3, prev, c, 3, stride, NORM, ACT)]
            blocks += [UnetResBlock(3, c, c, 3, 1, NORM, ACT) for _ in range(k - 1)]
            self.levels.append(nn.Sequential(*blocks))
            prev = c
        self.channels = tuple(channels)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for level in self.levels:
            x = level(x)
            feats.append(x)
        return feats


class UNetDecoder(nn.Module):
    """U-Net decoder over encoder features (shallow first): transposed-conv up-sampling,
    concatenation with the skip, a conv block; a 1x1x1 head at full resolution.
    ``forward(feats, return_all=True)`` also returns the decoder maps (deep first)."""

    def __init__(self, channels: Sequence[int], out_channels: int = 1, bottleneck_channels: int | None = None):
        super().__init__()
        ch = list(channels)
        prev = bottleneck_channels or ch[-1]
        self.ups = nn.ModuleList()
        for c in reversed(ch[:-1]):
            self.ups.append(UnetUpBlock(3, prev, c, 3, 2, 2, NORM, ACT))
            prev = c
        self.head = UnetOutBlock(3, ch[0], out_channels)
        self.channels = tuple(reversed(ch[:-1]))

    def forward(self, feats: Sequence[torch.Tensor], return_all: bool = False):
        x = feats[-1]
        maps = []
        for up, skip in zip(self.ups, reversed(feats[:-1])):
            x = up(x, skip)
            maps.append(x)
        out = self.head(x)
        return (out, maps) if return_all else out


class LeadingPhasesUNet(nn.Module):
    """MONAI residual UNet (instance norm) on the first ``n_phases`` input phases, one output logit."""

    def __init__(self, n_phases: int, channels: Sequence[int], strides: Sequence[int], num_res_units: int):
        super().__init__()
        self.n_phases = n_phases
        self.multiple = 2 ** len(strides)
        self.unet = UNet(3, n_phases, 1, channels=channels, strides=strides, num_res_units=num_res_units,
                         norm=("instance", {"affine": True}))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.n_phases, self.multiple)
        return self.unet(x[:, :self.n_phases])

    def forward_train(self, x: torch.Tensor) -> dict:
        return {"logits": self.forward(x)}


def dice_loss() -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Sigmoid soft Dice for one foreground channel (MONAI DiceLoss), pooled over the batch
    so that patches without tumor do not dominate."""
    return DiceLoss(sigmoid=True, batch=True, smooth_nr=1e-5, smooth_dr=1e-5)


def sobel_magnitude(p: torch.Tensor) -> torch.Tensor:
    """3-D Sobel gradient magnitude of p (B, 1, D, H, W) (separable smoothing [1,2,1], derivative [-1,0,1])."""
    s = torch.tensor([1.0, 2.0, 1.0], dtype=p.dtype, device=p.device)
    d = torch.tensor([-1.0, 0.0, 1.0], dtype=p.dtype, device=p.device)
    grads = []
    for axis in range(3):
        vecs = [d if a == axis else s for a in range(3)]
        k = vecs[0][:, None, None] * vecs[1][None, :, None] * vecs[2][None, None, :]
        grads.append(F.conv3d(p, (k / 16.0)[None, None], padding=1))
    return torch.sqrt(sum(g * g for g in grads) + 1e-8)


def resize_target(target: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Fraction of foreground in each cell of a coarser grid (area down-sampling of a 0/1 mask)."""
    if tuple(target.shape[2:]) == tuple(size):
        return target.float()
    return F.adaptive_avg_pool3d(target.float(), tuple(size))


def count_flops(model: nn.Module, x: torch.Tensor, **kwargs) -> int:
    """Floating-point operations of one forward pass (torch FlopCounterMode: convolutions,
    matrix products, attention; 2 FLOPs per multiply-accumulate). Run on the meta device
    for large configurations: ``with torch.device("meta"): model = build("paper")``."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(x, **kwargs)
    return int(counter.get_total_flops())


def resolve_config(configs: dict, config: str, overrides: dict) -> dict:
    """Copy of ``configs[config]`` with ``overrides`` applied; unknown keys are refused."""
    from ..errors import ModelError

    if config not in configs:
        raise ModelError(f"unknown configuration {config!r}; choose one of {', '.join(configs)}.")
    cfg = dict(configs[config])
    unknown = set(overrides) - set(cfg)
    if unknown:
        raise ModelError(f"unknown configuration key(s) {sorted(unknown)}; known: {sorted(cfg)}.")
    cfg.update(overrides)
    return cfg
