"""Whole-breast U-Net on the pre-contrast image (Zhang et al., Patterns 2023, first stage).

The breast mask is segmented first and the tumor probability is multiplied by it; the
network sees only the pre-contrast phase (``PHASES_READ = MIN_PHASES                # the network reads only these leading phases
INPUT = "pre"``), so it runs on any study::

    from BreastDCESegLib.models import breast_unet
    net = breast_unet.build("small")
    logits = net(x)                     # x (B, P>=1, D, H, W); uses x[:, :1]
    loss = breast_unet.make_loss()(net.forward_train(x), breast_mask)

The paper does not give this U-Net's widths; we use a MONAI residual UNet with five
levels (paper: 32..512 channels, two residual units; small: 16..128, one unit).
Loss: Dice + cross-entropy (sigmoid), the usual choice for a large, easy structure.
"""

from __future__ import annotations

from typing import Callable

import torch
from monai.losses import DiceCELoss

from .blocks import LeadingPhasesUNet, resolve_config

MIN_PHASES = 1
INPUT = "pre"
CONFIGS = {
    "small": {"channels": (16, 32, 64, 128), "strides": (2, 2, 2), "num_res_units": 1},
    "paper": {"channels": (32, 64, 128, 256, 512), "strides": (2, 2, 2, 2), "num_res_units": 2},
}


class BreastUNet(LeadingPhasesUNet):
    """MONAI UNet, 1 input channel (pre-contrast), 1 output logit (breast)."""

    def __init__(self, channels=(16, 32, 64, 128), strides=(2, 2, 2), num_res_units: int = 1):
        super().__init__(MIN_PHASES, channels, strides, num_res_units)


def build(config: str = "small", **overrides) -> BreastUNet:
    return BreastUNet(**resolve_config(CONFIGS, config, overrides))


def make_loss() -> Callable[[dict, torch.Tensor], torch.Tensor]:
    dice_ce = DiceCELoss(sigmoid=True)

    def loss(outputs: dict, target: torch.Tensor) -> torch.Tensor:
        return dice_ce(outputs["logits"], target.float())

    return loss
