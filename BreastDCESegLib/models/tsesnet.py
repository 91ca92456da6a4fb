"""TSESNet: temporal-series enhanced segmentation of DCE-MRI (He et al., IJCAI 2024).

Every phase (one channel) passes through one weight-shared residual 3-D encoder; a
Tumor-Aware module (parallel 3-D atrous convolutions with dilations 1, 3 and 5, each
fed the input plus the previous branch's output, merged by scale attention) closes
the encoder. At every skip level, and at the bottleneck, Temporal Series Feature
Fusion attends each post-contrast feature map against the pre-contrast one and fuses
``f0 + sum_i W_i * f_i``. A U-Net decoder follows; its intermediate maps carry the
Temporal-Spatial Contrastive (TSC) loss as deep supervision. Loss = 0.7 Dice + 0.5 TSC::

    from BreastDCESegLib.models import tsesnet
    net = tsesnet.build("small")
    logits = net(x)                                  # x (B, P>=2, D, H, W)
    out = net.forward_train(x)                       # logits + TSC embeddings
    loss = tsesnet.make_loss()(out, tumor_mask)

Choices where the paper leaves details open:
- W_i: additive attention, ``score(relu(q(f0) + k(f_i) + d(f_i - f0)))`` per voxel, a
  softmax over the post phases (absent ones masked), so the fusion works for any P.
- Scale attention: channel descriptors of the three branches (global average pool)
  -> shared MLP -> softmax over the three scales per channel.
- TSC: at each decoder level but the last, a 1x1x1 projection of [decoder map,
  masked mean of the encoder's post - pre feature differences] to unit-norm embeddings;
  supervised prototype contrast (temperature 0.1): every voxel is classified by its
  cosine similarity to the batch's tumor and background prototypes, class-balanced
  cross-entropy; levels with only one class contribute 0.
- The TA module works on the fused bottleneck (once per sample, after TSFF), four
  TA modules stacked at 512 channels.
- Paper configuration: encoder (16, 32, 64, 160, 512) with (1, 1, 2, 2, 1) residual
  blocks per level: 103.28 M parameters (paper 103.58 M) and 96.3 G multiply-accumulates
  on one 96x96x48 patch with 6 phases (paper "98.66 GFLOPs", which we read as
  multiply-accumulates, the usual convention of FLOP counters; torch's FlopCounterMode
  counts 2 per multiply-accumulate and reports 192.7 GFLOPs).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from monai.networks.blocks.dynunet_block import UnetResBlock
from torch import nn

from .blocks import (ACT, NORM, ResEncoder, UNetDecoder, check_input, default_phase_mask, dice_loss,
                     masked_mean, masked_softmax, resize_target, resolve_config)

MIN_PHASES = 2
INPUT = "phases"
CONFIGS = {
    "small": {"channels": (8, 16, 32, 64, 128), "blocks_per_level": 1, "ta_blocks": 1, "embed_dim": 16},
    "paper": {"channels": (16, 32, 64, 160, 512), "blocks_per_level": (1, 1, 2, 2, 1), "ta_blocks": 4,
              "embed_dim": 64},
}
DICE_WEIGHT, TSC_WEIGHT, TEMPERATURE = 0.7, 0.5, 0.1


class TumorAware(nn.Module):
    """Parallel atrous 3-D convolutions (dilations 1, 3, 5), residual chaining, scale attention."""

    def __init__(self, channels: int, dilations: Sequence[int] = (1, 3, 5), reduction: int = 4):
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(nn.Conv3d(channels, channels, 3, padding=d, dilation=d, bias=False),
                          nn.InstanceNorm3d(channels, affine=True), nn.LeakyReLU(0.01))
            for d in dilations)
        hidden = max(channels // reduction, 8)
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, channels))
        self.out = UnetResBlock(3, channels, channels, 1, 1, NORM, ACT)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs, prev = [], 0
        for branch in self.branches:
            prev = branch(x + prev)
            outs.append(prev)
        s = torch.stack(outs, 1)                                  # (N, S, C, ...)
        w = torch.softmax(self.mlp(s.mean(dim=(3, 4, 5))), dim=1)  # (N, S, C)
        return self.out(x + (s * w[..., None, None, None]).sum(1))


class TSFF(nn.Module):
    """Temporal Series Feature Fusion: fused = f0 + sum_i W_i f_i, W from attention against f0."""

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.q = nn.Conv3d(channels, hidden, 1)
        self.k = nn.Conv3d(channels, hidden, 1, bias=False)
        self.d = nn.Conv3d(channels, hidden, 1, bias=False)
        self.score = nn.Conv3d(hidden, 1, 1)

    def forward(self, f: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, p = f.shape[:2]
        f0, fi = f[:, 0], f[:, 1:]
        q = self.q(f0)[:, None]
        flat = fi.flatten(0, 1)
        kd = (self.k(flat) + self.d(flat - f0.repeat_interleave(p - 1, 0))).view(b, p - 1, *q.shape[2:])
        s = self.score(F.relu(q + kd).flatten(0, 1)).view(b, p - 1, 1, *f.shape[3:])
        w = masked_softmax(s, mask[:, 1:])
        fused = f0 + (w * fi).sum(1)
        temporal = masked_mean(fi - f0[:, None], mask[:, 1:])
        return fused, temporal


class TSESNet(nn.Module):
    """Shared encoder + Tumor-Aware module + TSFF at every level + decoder with TSC heads."""

    def __init__(self, channels=(8, 16, 32, 64, 128), blocks_per_level=1, ta_blocks: int = 1,
                 embed_dim: int = 16):
        super().__init__()
        self.multiple = 2 ** (len(channels) - 1)
        self.encoder = ResEncoder(1, channels, blocks_per_level)
        self.tumor_aware = nn.Sequential(*(TumorAware(channels[-1]) for _ in range(ta_blocks)))
        self.fusions = nn.ModuleList(TSFF(c) for c in channels)
        self.decoder = UNetDecoder(channels, 1)
        dec = self.decoder.channels  # deep first
        self.tsc_heads = nn.ModuleList(
            nn.Conv3d(c + e, embed_dim, 1) for c, e in zip(dec[:-1], reversed(channels[1:-1])))

    def forward(self, x: torch.Tensor, phase_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self._run(x, phase_mask, train=False)["logits"]

    def forward_train(self, x: torch.Tensor, phase_mask: torch.Tensor | None = None) -> dict:
        return self._run(x, phase_mask, train=True)

    def _run(self, x: torch.Tensor, phase_mask, train: bool) -> dict:
        check_input(x, MIN_PHASES, self.multiple)
        mask = default_phase_mask(x, phase_mask)
        b, p = x.shape[:2]
        feats = self.encoder(x.flatten(0, 1)[:, None])
        fused, temporal = zip(*(fuse(f.view(b, p, *f.shape[1:]), mask) for fuse, f in zip(self.fusions, feats)))
        fused = list(fused)
        fused[-1] = self.tumor_aware(fused[-1])
        logits, maps = self.decoder(fused, return_all=True)
        out = {"logits": logits}
        if train:
            levels = list(reversed(temporal[1:-1]))     # matches decoder maps, deep first
            out["tsc_embeddings"] = [F.normalize(head(torch.cat([m, t], 1)), dim=1)
                                     for head, m, t in zip(self.tsc_heads, maps[:-1], levels)]
        return out


def build(config: str = "small", **overrides) -> TSESNet:
    return TSESNet(**resolve_config(CONFIGS, config, overrides))


def tsc_loss(embeddings: Sequence[torch.Tensor], target: torch.Tensor,
             temperature: float = TEMPERATURE) -> torch.Tensor:
    """Supervised prototype contrast over deep-supervision levels (see module docstring)."""
    total = embeddings[0].new_zeros(())
    for z in embeddings:
        y = resize_target(target, z.shape[2:]) > 0.5                 # (B, 1, ...)
        zf = z.flatten(2).transpose(1, 2).reshape(-1, z.shape[1])    # (V, E)
        yf = y.flatten()
        if yf.all() or not yf.any():
            continue
        protos = F.normalize(torch.stack([zf[~yf].mean(0), zf[yf].mean(0)]), dim=1)
        ce = F.cross_entropy(zf @ protos.T / temperature, yf.long(), reduction="none")
        total = total + 0.5 * (ce[yf].mean() + ce[~yf].mean())
    return total / len(embeddings)


def make_loss() -> Callable[[dict, torch.Tensor], torch.Tensor]:
    dice = dice_loss()

    def loss(outputs: dict, target: torch.Tensor) -> torch.Tensor:
        value = DICE_WEIGHT * dice(outputs["logits"], target.float())
        if "tsc_embeddings" in outputs:
            value = value + TSC_WEIGHT * tsc_loss(outputs["tsc_embeddings"], target)
        return value

    return loss
