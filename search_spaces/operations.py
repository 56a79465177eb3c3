"""The one registry of candidate ops (Ahn and Cho, "Image Super Resolution Using Neural
Architecture Search", section 3.1).

Every op maps C channels to C channels at stride 1. Conv ops are pre-activated
(ReLU -> conv) and carry no batch norm: BN hurts SR (EDSR), and pre-activation
lets a node sum two op outputs without clipping the negative half of either.
Identity passes its input through untouched (no ReLU).
"""

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


class ReLUConv(nn.Module):
    """ReLU, then a 3x3 conv ('same' padding), dilated by ``dilation``."""

    def __init__(self, channels: int, dilation: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.relu(x))


class SepConv(nn.Module):
    """ReLU, then a depthwise 3x3 conv (no bias) and a pointwise 1x1 conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.depthwise = nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False)
        self.pointwise = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(F.relu(x)))


OPS: dict[str, Callable[[int], nn.Module]] = {
    "conv_3x3": ReLUConv,
    "sep_conv_3x3": SepConv,
    "dil_conv_3x3": lambda c: ReLUConv(c, dilation=3),
    "identity": lambda c: nn.Identity(),
}

OP_NAMES: tuple[str, ...] = tuple(OPS)

# Checkpoints written before the ops were classes hold nn.Sequential(ReLU, conv[, conv])
# indices where the names above now stand: op -> {old index: new name}
SEQUENTIAL_NAMES: dict[str, dict[str, str]] = {
    "conv_3x3": {"1": "conv"},
    "sep_conv_3x3": {"1": "depthwise", "2": "pointwise"},
    "dil_conv_3x3": {"1": "conv"},
}
