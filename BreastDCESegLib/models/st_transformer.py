"""Our spatial-temporal transformer for any number of DCE phases, after Zhang et al. (Patterns 2023).

This is our own design in the spirit of the paper, not the authors' network: the published
network, checkpoint-compatible with their weights, is :mod:`BreastDCESegLib.models.zhang2023`.

Each phase enters a weight-shared residual 3-D encoder as two channels
[phase, phase - pre]. At the bottleneck (stride 16) the tokens of all phases pass
through alternating spatial transformer layers (attention among the tokens of one
phase) and temporal transformer layers (attention among the phases at one token,
absent phases removed with ``key_padding_mask``); the phases are then fused by a
masked mean and a U-Net decoder restores full resolution, its skips being the
encoder maps fused over phases by masked attention pooling::

    from BreastDCESegLib.models import st_transformer
    net = st_transformer.build("small")
    logits = net(x)                                # x (B, P>=2, D, H, W)
    logits = net(x, phase_mask=mask)               # mask (B, P) bool, False = padded phase
    loss = st_transformer.make_loss()(net.forward_train(x), tumor_mask)

Our choices: positions are encoded by a depthwise
3x3x3 convolution over the bottleneck map (works for any patch size) plus a fixed
sinusoidal code of the phase index (works for any number of phases); pre-norm
``nn.TransformerEncoderLayer`` (GELU, MLP ratio 4); loss Dice + cross-entropy.
The ``"paper"`` configuration is ours, sized like the paper's network: "st_transformer ours,
174.5 M params" (encoder 32..512 channels with (1, 2, 3, 3, 2) residual blocks, 768-wide
tokens, 9 spatial + 9 temporal layers alternating, 12 heads), against the authors' 175.6 M.
It differs from theirs (two parallel 12-layer stacks summed, six concatenated phase tokens,
skips from phase 2, 16..256 channels, 242 GFLOP per 32x96x96 window against 706 here).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from monai.losses import DiceCELoss
from torch import nn

from .blocks import (ResEncoder, UNetDecoder, check_input, default_phase_mask, masked_mean,
                     masked_softmax, phase_inputs, resolve_config)

MIN_PHASES = 2
INPUT = "phases"
CONFIGS = {
    "small": {"channels": (8, 16, 32, 64, 128), "blocks_per_level": 1, "embed_dim": 128,
              "depth": 2, "heads": 4, "dropout": 0.0},
    "paper": {"channels": (32, 64, 128, 256, 512), "blocks_per_level": (1, 2, 3, 3, 2),
              "embed_dim": 768, "depth": 9, "heads": 12, "dropout": 0.1},
}


def phase_encoding(n_phases: int, dim: int, device, dtype) -> torch.Tensor:
    """Fixed sinusoidal code (n_phases, dim) of the phase index (0 = pre-contrast)."""
    pos = torch.arange(n_phases, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(1e4) / dim))
    enc = torch.zeros(n_phases, dim, device=device, dtype=torch.float32)
    enc[:, 0::2] = torch.sin(pos * freq)
    enc[:, 1::2] = torch.cos(pos * freq)
    return enc.to(dtype)


class PhasePool(nn.Module):
    """Fuse (B, P, C, ...) over phases: per-voxel scores (1x1x1 conv), masked softmax, weighted sum."""

    def __init__(self, channels: int):
        super().__init__()
        self.score = nn.Conv3d(channels, 1, 1)

    def forward(self, f: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, p = f.shape[:2]
        s = self.score(f.flatten(0, 1)).view(b, p, 1, *f.shape[3:])
        return (masked_softmax(s, mask) * f).sum(1)


class SpatioTemporalTransformer(nn.Module):
    """``depth`` pairs of (spatial layer, temporal layer) over tokens (B, P, N, E)."""

    def __init__(self, dim: int, depth: int, heads: int, dropout: float):
        super().__init__()

        def layer():
            return nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout, activation="gelu",
                                              batch_first=True, norm_first=True)

        self.spatial = nn.ModuleList(layer() for _ in range(depth))
        self.temporal = nn.ModuleList(layer() for _ in range(depth))
        self.norm = nn.LayerNorm(dim)

    def forward(self, t: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, p, n, e = t.shape
        pad = (~mask)[:, None, :].expand(b, n, p).reshape(b * n, p)
        for s_layer, t_layer in zip(self.spatial, self.temporal):
            t = s_layer(t.reshape(b * p, n, e)).view(b, p, n, e)
            tt = t.transpose(1, 2).reshape(b * n, p, e)
            tt = t_layer(tt, src_key_padding_mask=pad)
            t = tt.view(b, n, p, e).transpose(1, 2)
        return self.norm(t)


class STTransformer(nn.Module):
    """Shared residual encoder over phases + spatial/temporal transformer + U-Net decoder."""

    def __init__(self, channels=(16, 32, 48, 64, 128), blocks_per_level=1, embed_dim: int = 128,
                 depth: int = 2, heads: int = 4, dropout: float = 0.0):
        super().__init__()
        self.multiple = 2 ** (len(channels) - 1)
        self.encoder = ResEncoder(2, channels, blocks_per_level)
        self.pools = nn.ModuleList(PhasePool(c) for c in channels[:-1])
        self.to_tokens = nn.Conv3d(channels[-1], embed_dim, 1)
        self.pos = nn.Conv3d(embed_dim, embed_dim, 3, padding=1, groups=embed_dim)
        self.transformer = SpatioTemporalTransformer(embed_dim, depth, heads, dropout)
        self.decoder = UNetDecoder(channels, 1, bottleneck_channels=embed_dim)
        self.embed_dim = embed_dim

    def forward(self, x: torch.Tensor, phase_mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_train(x, phase_mask)["logits"]

    def forward_train(self, x: torch.Tensor, phase_mask: torch.Tensor | None = None) -> dict:
        check_input(x, MIN_PHASES, self.multiple)
        mask = default_phase_mask(x, phase_mask)
        b, p = x.shape[:2]
        feats = self.encoder(phase_inputs(x).flatten(0, 1))
        skips = [pool(f.view(b, p, *f.shape[1:]), mask) for pool, f in zip(self.pools, feats[:-1])]
        z = self.to_tokens(feats[-1])
        z = z + self.pos(z)
        grid = z.shape[2:]
        t = z.flatten(2).transpose(1, 2).reshape(b, p, -1, self.embed_dim)
        t = t + phase_encoding(p, self.embed_dim, t.device, t.dtype)[None, :, None, :]
        t = self.transformer(t, mask)
        fused = masked_mean(t, mask).transpose(1, 2).reshape(b, self.embed_dim, *grid)
        return {"logits": self.decoder(skips + [fused])}


def build(config: str = "small", **overrides) -> STTransformer:
    return STTransformer(**resolve_config(CONFIGS, config, overrides))


def make_loss() -> Callable[[dict, torch.Tensor], torch.Tensor]:
    dice_ce = DiceCELoss(sigmoid=True)

    def loss(outputs: dict, target: torch.Tensor) -> torch.Tensor:
        return dice_ce(outputs["logits"], target.float())

    return loss
