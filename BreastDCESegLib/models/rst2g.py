"""RST2G: residual-guided spatial-temporal graph network (Xie et al.).

Three inputs — pre-contrast, post-contrast and the residual (post - pre) — pass through
one weight-shared encoder: residual 3-D convolutions, then a ViT (6 layers, 4 heads) on
the stride-16 tokens. Inter-temporal attention mixes the three branches at every token;
residual-guided multi-scale refinement gates the pre/post skip features with the
residual branch's features, coarse to fine; inter-slice graph attention lets axial
slices exchange information (nodes = slices, edges to the neighbouring slices) at the
bottleneck and every skip level. A U-Net decoder produces the logits.
Loss = Dice + 0.5 BCE + 0.2 Sobel boundary loss::

    from BreastDCESegLib.models import rst2g
    net = rst2g.build("small")
    logits = net(x)                                  # x (B, P>=2, D, H, W)
    loss = rst2g.make_loss()(net.forward_train(x), tumor_mask)

Choices where the paper leaves details open:
- With more than two phases the post-contrast input is the first post phase
  (``post="first"``, the early enhancement that the residual is meant to capture, and
  the same choice for every patch of a volume); ``post="peak"`` picks, per sample, the
  post phase with the largest mean enhancement over the patch instead.
- Positions: a depthwise 3x3x3 convolution over the token grid (any patch size); a
  learned branch embedding before the inter-temporal attention; fused bottleneck =
  mean of the three branch tokens after that attention.
- Residual guidance at level l: g_l = sigmoid(conv(f_res) + up(g_{l+1} logits));
  refined = conv1x1([f_pre, f_post * (1 + g_l), f_res]).
- Slice graph: node = in-plane mean of a slice's features, GAT-style additive
  attention (4 heads) over slices at most ``slice_radius`` apart, the result
  modulating the slice's channels: f * (1 + tanh(out)).
- Sobel boundary loss: L1 between the 3-D Sobel gradient magnitudes of the
  probability map and of the reference mask.
- Paper configuration: encoder 32..512 channels with (1, 1, 2, 1, 2) residual
  blocks, 768-wide tokens: 85.26 M parameters (paper 85.24 M).
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import BadInputError
from .blocks import ResEncoder, UNetDecoder, check_input, dice_loss, resolve_config, sobel_magnitude

MIN_PHASES = 2
INPUT = "phases"
CONFIGS = {
    "small": {"channels": (8, 16, 32, 64, 128), "blocks_per_level": 1, "embed_dim": 128, "vit_layers": 2,
              "heads": 4, "slice_radius": 2, "post": "first"},
    "paper": {"channels": (32, 64, 128, 256, 512), "blocks_per_level": (1, 1, 2, 1, 2), "embed_dim": 768,
              "vit_layers": 6, "heads": 4, "slice_radius": 2, "post": "first"},
}
BCE_WEIGHT, SOBEL_WEIGHT = 0.5, 0.2


def select_post(x: torch.Tensor, how: str) -> torch.Tensor:
    """Post-contrast phase (B, 1, D, H, W): "first" or "peak" (largest mean enhancement per sample)."""
    if how == "first" or x.shape[1] == 2:
        return x[:, 1:2]
    if how != "peak":
        raise BadInputError(f"post must be 'first' or 'peak'; got {how!r}.")
    gain = (x[:, 1:] - x[:, :1]).flatten(2).mean(2)            # (B, P-1)
    idx = gain.argmax(1) + 1
    return x[torch.arange(x.shape[0], device=x.device), idx][:, None]


class SliceGraphAttention(nn.Module):
    """Graph attention among the axial slices (dim 2) of f (B, C, D, H, W)."""

    def __init__(self, channels: int, heads: int = 4, radius: int = 2):
        super().__init__()
        self.heads, self.radius = heads, radius
        self.hidden = max(channels // heads, 8)
        self.proj = nn.Linear(channels, heads * self.hidden, bias=False)
        self.att_src = nn.Parameter(torch.randn(heads, self.hidden) * 0.1)
        self.att_dst = nn.Parameter(torch.randn(heads, self.hidden) * 0.1)
        self.out = nn.Linear(heads * self.hidden, channels)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        b, c, d = f.shape[:3]
        h = self.proj(f.mean(dim=(3, 4)).transpose(1, 2)).view(b, d, self.heads, self.hidden)
        e = (h * self.att_dst).sum(-1)[:, :, None] + (h * self.att_src).sum(-1)[:, None]   # (B, Di, Dj, heads)
        idx = torch.arange(d, device=f.device)
        near = (idx[:, None] - idx[None, :]).abs() <= self.radius
        e = F.leaky_relu(e, 0.2).masked_fill(~near[None, :, :, None], float("-inf"))
        alpha = torch.softmax(e, dim=2)
        agg = torch.einsum("bijh,bjhk->bihk", alpha, h).reshape(b, d, -1)
        mod = torch.tanh(self.out(F.elu(agg))).transpose(1, 2)                 # (B, C, D)
        return f * (1 + mod[..., None, None])


class ResidualGuidedRefine(nn.Module):
    """Gate the pre/post features of one level with the residual branch's features."""

    def __init__(self, channels: int):
        super().__init__()
        self.gate = nn.Conv3d(channels, 1, 3, padding=1)
        self.fuse = nn.Conv3d(3 * channels, channels, 1)

    def forward(self, pre, post, res, coarse_gate=None):
        logit = self.gate(res)
        if coarse_gate is not None:
            logit = logit + F.interpolate(coarse_gate, size=logit.shape[2:], mode="trilinear")
        g = torch.sigmoid(logit)
        return self.fuse(torch.cat([pre, post * (1 + g), res], 1)), logit


class RST2G(nn.Module):
    """Shared CNN+ViT encoder over (pre, post, residual) + refinement + slice graph + decoder."""

    def __init__(self, channels=(8, 16, 32, 64, 128), blocks_per_level=1, embed_dim: int = 128,
                 vit_layers: int = 2, heads: int = 4, slice_radius: int = 2, post: str = "first"):
        super().__init__()
        self.multiple = 2 ** (len(channels) - 1)
        self.post = post
        self.encoder = ResEncoder(1, channels, blocks_per_level)
        self.to_tokens = nn.Conv3d(channels[-1], embed_dim, 1)
        self.pos = nn.Conv3d(embed_dim, embed_dim, 3, padding=1, groups=embed_dim)
        layer = lambda: nn.TransformerEncoderLayer(embed_dim, heads, 4 * embed_dim, 0.0, activation="gelu",
                                                   batch_first=True, norm_first=True)
        self.vit = nn.ModuleList(layer() for _ in range(vit_layers))
        self.vit_norm = nn.LayerNorm(embed_dim)
        self.branch_embed = nn.Parameter(torch.zeros(3, embed_dim))
        self.temporal = nn.MultiheadAttention(embed_dim, heads, batch_first=True)
        self.temporal_norm = nn.LayerNorm(embed_dim)
        self.refine = nn.ModuleList(ResidualGuidedRefine(c) for c in channels[:-1])
        self.graphs = nn.ModuleList(SliceGraphAttention(c, heads, slice_radius)
                                    for c in (*channels[:-1], embed_dim))
        self.decoder = UNetDecoder(channels, 1, bottleneck_channels=embed_dim)
        self.embed_dim = embed_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_train(x)["logits"]

    def forward_train(self, x: torch.Tensor) -> dict:
        check_input(x, MIN_PHASES, self.multiple)
        b = x.shape[0]
        pre, post = x[:, :1], select_post(x, self.post)
        feats = self.encoder(torch.cat([pre, post, post - pre], 0))          # (3B, C, ...)
        z = self.to_tokens(feats[-1])
        z = z + self.pos(z)
        grid, e = z.shape[2:], self.embed_dim
        t = z.flatten(2).transpose(1, 2)                                      # (3B, N, E)
        for layer in self.vit:
            t = layer(t)
        t = self.vit_norm(t).view(3, b, -1, e).permute(1, 2, 0, 3)            # (B, N, 3, E)
        n = t.shape[1]
        tt = t.reshape(b * n, 3, e) + self.branch_embed
        tt = tt + self.temporal(self.temporal_norm(tt), self.temporal_norm(tt), self.temporal_norm(tt),
                                need_weights=False)[0]
        bottleneck = tt.mean(1).view(b, n, e).transpose(1, 2).reshape(b, e, *grid)
        skips, gate = [None] * len(self.refine), None
        for level in reversed(range(len(self.refine))):
            f_pre, f_post, f_res = feats[level].chunk(3, 0)
            skips[level], gate = self.refine[level](f_pre, f_post, f_res, gate)
        maps = [g(f) for g, f in zip(self.graphs, skips + [bottleneck])]
        return {"logits": self.decoder(maps)}


def build(config: str = "small", **overrides) -> RST2G:
    return RST2G(**resolve_config(CONFIGS, config, overrides))


def sobel_boundary_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 between Sobel gradient magnitudes of the probability map and the mask."""
    return F.l1_loss(sobel_magnitude(torch.sigmoid(logits)), sobel_magnitude(target.float()))


def make_loss() -> Callable[[dict, torch.Tensor], torch.Tensor]:
    dice = dice_loss()

    def loss(outputs: dict, target: torch.Tensor) -> torch.Tensor:
        logits, target = outputs["logits"], target.float()
        return (dice(logits, target) + BCE_WEIGHT * F.binary_cross_entropy_with_logits(logits, target)
                + SOBEL_WEIGHT * sobel_boundary_loss(logits, target))

    return loss
