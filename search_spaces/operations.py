"""The one registry of candidate ops (seed 000, section 3.1).

Every op maps C channels to C channels at stride 1. Conv ops are pre-activated
(ReLU -> conv) and carry no batch norm: BN hurts SR (EDSR), and pre-activation
lets a node sum two op outputs without clipping the negative half of either.
Identity passes its input through untouched (no ReLU).
"""

from collections.abc import Callable

from torch import nn

OPS: dict[str, Callable[[int], nn.Module]] = {
    "conv_3x3": lambda c: nn.Sequential(nn.ReLU(), nn.Conv2d(c, c, 3, padding=1)),
    "sep_conv_3x3": lambda c: nn.Sequential(
        nn.ReLU(),
        nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False),  # depthwise
        nn.Conv2d(c, c, 1),  # pointwise
    ),
    "dil_conv_3x3": lambda c: nn.Sequential(nn.ReLU(), nn.Conv2d(c, c, 3, padding=3, dilation=3)),
    "identity": lambda c: nn.Identity(),
}

OP_NAMES: tuple[str, ...] = tuple(OPS)
