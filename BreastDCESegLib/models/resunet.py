"""MONAI 3-D residual U-Net on pre + first post-contrast phase (Abdikenov & Suvorov, MAMA-MIA).

Two input channels (pre-contrast and first post-contrast, joint z-score over both
phases — done by preprocessing), soft Dice loss::

    from BreastDCESegLib.models import resunet
    net = resunet.build("paper")
    logits = net(x)                     # x (B, P>=2, D, H, W); uses x[:, :2]
    loss = resunet.make_loss()(net.forward_train(x), tumor_mask)

The paper uses MONAI's UNet with residual units on 128^3 patches; its exact widths
are not restated here, so the paper configuration uses the nnU-Net-like widths
(32, 64, 128, 256, 320), four stride-2 levels and two residual units per block
(12.9 M parameters). The small one has (16, 32, 64, 128) widths and one unit.
"""

from __future__ import annotations

from typing import Callable

import torch

from .blocks import LeadingPhasesUNet, dice_loss, resolve_config

MIN_PHASES = 2
PHASES_READ = MIN_PHASES                # the network reads only these leading phases
INPUT = "phases"
CONFIGS = {
    "small": {"channels": (16, 32, 64, 128), "strides": (2, 2, 2), "num_res_units": 1},
    "paper": {"channels": (32, 64, 128, 256, 320), "strides": (2, 2, 2, 2), "num_res_units": 2},
}


class ResUNet(LeadingPhasesUNet):
    """MONAI UNet with residual units; input channels = [pre, first post]."""

    def __init__(self, channels=(16, 32, 64, 128), strides=(2, 2, 2), num_res_units: int = 1):
        super().__init__(MIN_PHASES, channels, strides, num_res_units)


def build(config: str = "small", **overrides) -> ResUNet:
    return ResUNet(**resolve_config(CONFIGS, config, overrides))


def make_loss() -> Callable[[dict, torch.Tensor], torch.Tensor]:
    dice = dice_loss()

    def loss(outputs: dict, target: torch.Tensor) -> torch.Tensor:
        return dice(outputs["logits"], target.float())

    return loss
