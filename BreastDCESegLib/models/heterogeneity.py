"""Kinetic-heterogeneity guided, non-contrast tumor segmentation (Xie et al.).

Training uses the whole DCE series; inference needs only the pre-contrast image:

1. ``TICVQVAE`` clusters per-voxel time-intensity curves (TICs) — min-max normalised,
   resampled to a fixed length — with a K = 10 codebook (commitment loss,
   straight-through estimator) into kinetic subregion labels.
2. A U-Net predicts that 10-class subregion map from the pre-contrast image alone.
3. A residual U-Net segments the tumor from [pre-contrast, softmax(subregion map)].

::

    from BreastDCESegLib.models import heterogeneity
    net = heterogeneity.build("small")
    logits = net(x)                          # x (B, P>=1, D, H, W); uses x[:, :1]
    out = net.forward_train(x)               # all phases: VQ-VAE targets and losses
    loss = heterogeneity.make_loss()(out, tumor_mask)

    vq = heterogeneity.TICVQVAE()            # standalone on curves (N, T), any T
    codes = vq.encode(heterogeneity.normalize_curves(curves))

Choices where the paper leaves details open:
- Curves are enhancement curves (signal - pre-contrast signal), min-max normalised over
  the whole case (``mode="case"``) rather than per curve, so non-enhancing tissue stays
  flat instead of becoming amplified noise; ``mode="curve"`` is available.
- Curves of any length are linearly resampled to ``curve_length`` (16) points.
- Codebook initialised from the first training batch's encodings (avoids dead codes);
  VQ loss = ||sg(z_e) - e||^2 + 0.25 ||z_e - sg(e)||^2, plus the MSE reconstruction.
- All voxels of the patch are clustered (not only the tumor); the VQ-VAE trains on a
  random subset of at most ``vq_curves`` curves per step, codes for all voxels are
  computed without gradient. Loss = DiceCE(seg) + 0.5 CE(subregions) + VQ-VAE losses.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss
from monai.networks.nets import UNet
from torch import nn

from .blocks import check_input, resolve_config

MIN_PHASES = 1
INPUT = "pre"
CLUSTER_WEIGHT, VQ_WEIGHT = 0.5, 1.0
CONFIGS = {
    "small": {"cluster_channels": (8, 16, 32, 64), "seg_channels": (16, 32, 64, 128), "strides": (2, 2, 2),
              "num_res_units": 1, "num_codes": 10, "curve_length": 16, "latent_dim": 8, "vq_curves": 16384},
    "paper": {"cluster_channels": (16, 32, 64, 128, 256), "seg_channels": (32, 64, 128, 256, 320),
              "strides": (2, 2, 2, 2), "num_res_units": 2, "num_codes": 10, "curve_length": 16,
              "latent_dim": 16, "vq_curves": 65536},
}


def resample_curves(curves: torch.Tensor, length: int) -> torch.Tensor:
    """Linear resampling of curves (N, T) to (N, length); a single time point is repeated."""
    curves = curves.float()
    if curves.shape[1] == length:
        return curves
    if curves.shape[1] == 1:
        return curves.expand(-1, length).contiguous()
    return F.interpolate(curves[:, None], size=length, mode="linear", align_corners=True)[:, 0]


def normalize_curves(curves: torch.Tensor, mode: str = "case", eps: float = 1e-6) -> torch.Tensor:
    """Enhancement curves (N, T) -> min-max normalised to [0, 1] over all curves ("case") or per curve."""
    e = curves.float() - curves[:, :1].float()
    if mode == "curve":
        lo, hi = e.min(1, keepdim=True).values, e.max(1, keepdim=True).values
    elif mode == "case":
        lo, hi = e.min(), e.max()
    else:
        raise ValueError(f"mode must be 'case' or 'curve'; got {mode!r}")
    return (e - lo) / (hi - lo + eps)


def _mlp(sizes) -> nn.Sequential:
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.GELU())
    return nn.Sequential(*layers)


class TICVQVAE(nn.Module):
    """Vector-quantised auto-encoder of time-intensity curves with a K-code codebook."""

    def __init__(self, curve_length: int = 16, num_codes: int = 10, latent_dim: int = 8,
                 hidden: int = 64, beta: float = 0.25):
        super().__init__()
        self.curve_length, self.beta = curve_length, beta
        self.encoder = _mlp([curve_length, hidden, hidden, latent_dim])
        self.decoder = _mlp([latent_dim, hidden, hidden, curve_length])
        self.codebook = nn.Embedding(num_codes, latent_dim)
        self.register_buffer("initialized", torch.tensor(False))

    @property
    def num_codes(self) -> int:
        return self.codebook.num_embeddings

    def quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Nearest code index (N,) and code vectors (N, latent) of encodings z (N, latent)."""
        idx = torch.cdist(z, self.codebook.weight).argmin(1)
        return idx, self.codebook(idx)

    @torch.no_grad()
    def encode(self, curves: torch.Tensor, chunk: int = 262144) -> torch.Tensor:
        """Code index (N,) of normalised curves (N, T) of any length T."""
        curves = resample_curves(curves, self.curve_length)
        return torch.cat([self.quantize(self.encoder(c))[0] for c in curves.split(chunk)])

    @torch.no_grad()
    def _init_codebook(self, z: torch.Tensor) -> None:
        pick = torch.randperm(z.shape[0], device=z.device)[: self.num_codes]
        if pick.numel() == self.num_codes:
            self.codebook.weight.copy_(z[pick])
            self.initialized.fill_(True)

    def forward(self, curves: torch.Tensor) -> dict:
        curves = resample_curves(curves, self.curve_length)
        z = self.encoder(curves)
        if self.training and not bool(self.initialized):
            self._init_codebook(z.detach())
        idx, e = self.quantize(z)
        codebook_loss = F.mse_loss(e, z.detach())
        commit_loss = F.mse_loss(z, e.detach())
        zq = z + (e - z).detach()                        # straight-through estimator
        recon = self.decoder(zq)
        recon_loss = F.mse_loss(recon, curves)
        vq_loss = codebook_loss + self.beta * commit_loss
        return {"codes": idx, "recon": recon, "recon_loss": recon_loss, "commit_loss": commit_loss,
                "vq_loss": vq_loss, "loss": recon_loss + vq_loss}


class HeterogeneityNet(nn.Module):
    """Subregion-map U-Net (pre -> K classes) + residual U-Net ([pre, softmax map] -> tumor)."""

    def __init__(self, cluster_channels=(8, 16, 32, 64), seg_channels=(16, 32, 64, 128), strides=(2, 2, 2),
                 num_res_units: int = 1, num_codes: int = 10, curve_length: int = 16, latent_dim: int = 8,
                 vq_curves: int = 16384):
        super().__init__()
        self.multiple, self.vq_curves = 2 ** len(strides), vq_curves
        norm = ("instance", {"affine": True})
        self.vqvae = TICVQVAE(curve_length, num_codes, latent_dim)
        self.cluster_net = UNet(3, 1, num_codes, channels=cluster_channels, strides=strides,
                                num_res_units=num_res_units, norm=norm)
        self.seg_net = UNet(3, 1 + num_codes, 1, channels=seg_channels, strides=strides,
                            num_res_units=max(num_res_units, 1), norm=norm)

    def _segment(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        check_input(x, MIN_PHASES, self.multiple)
        pre = x[:, :1]
        cluster_logits = self.cluster_net(pre)
        logits = self.seg_net(torch.cat([pre, torch.softmax(cluster_logits, 1)], 1))
        return logits, cluster_logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._segment(x)[0]

    def cluster_map(self, x: torch.Tensor) -> torch.Tensor:
        """Predicted kinetic subregion labels (B, D, H, W) from the pre-contrast image."""
        return self._segment(x)[1].argmax(1)

    def kinetic_targets(self, x: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """VQ-VAE subregion labels (B, D, H, W) of the curves in x (all phases) and the VQ losses."""
        b, p = x.shape[:2]
        curves = torch.cat([normalize_curves(xb.flatten(1).T, "case") for xb in x])     # (B*V, P)
        codes = self.vqvae.encode(curves) if bool(self.vqvae.initialized) else None
        n = curves.shape[0]
        pick = torch.randperm(n, device=x.device)[: self.vq_curves] if n > self.vq_curves else slice(None)
        vq = self.vqvae(curves[pick])
        if codes is None:
            codes = self.vqvae.encode(curves)
        return codes.view(b, *x.shape[2:]), vq

    def forward_train(self, x: torch.Tensor) -> dict:
        logits, cluster_logits = self._segment(x)
        out = {"logits": logits, "cluster_logits": cluster_logits}
        if x.shape[1] >= 2:
            out["cluster_target"], vq = self.kinetic_targets(x)
            out["vq_loss"], out["recon_loss"] = vq["vq_loss"], vq["recon_loss"]
        return out


def build(config: str = "small", **overrides) -> HeterogeneityNet:
    return HeterogeneityNet(**resolve_config(CONFIGS, config, overrides))


def make_loss() -> Callable[[dict, torch.Tensor], torch.Tensor]:
    dice_ce = DiceCELoss(sigmoid=True)

    def loss(outputs: dict, target: torch.Tensor) -> torch.Tensor:
        value = dice_ce(outputs["logits"], target.float())
        if "cluster_target" in outputs:
            value = value + CLUSTER_WEIGHT * F.cross_entropy(outputs["cluster_logits"], outputs["cluster_target"])
            value = value + VQ_WEIGHT * (outputs["vq_loss"] + outputs["recon_loss"])
        return value

    return loss
