"""The one registry of candidate ops (Ahn and Cho, "Image Super Resolution Using Neural
Architecture Search", section 3.1).

Every op maps C channels to C channels at stride 1. Conv ops are pre-activated
(ReLU -> conv) and carry no batch norm: BN hurts SR (EDSR), and pre-activation
lets a node sum two op outputs without clipping the negative half of either.
Identity passes its input through untouched (no ReLU).
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from search_spaces.terms import Terms


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


class OpCost(NamedTuple):
    params: int
    macs_per_pixel: int  # multiply-accumulates per LR pixel


@dataclass(frozen=True)
class Op:
    """Everything the toolkit knows of one candidate op, registered in one place.

    ``build(C)`` makes it on C channels; ``cost(C)`` is its closed-form size
    (``search_spaces/cost.py`` sums it); ``terms(module, state, eye)`` is its fused form,
    the linear map it applies to ``state`` (``search_spaces/fused.py``); ``color`` and
    ``label`` draw it in plots; ``renamed`` maps parameter names of checkpoints written
    before the op was a class to today's.
    """

    name: str
    build: Callable[[int], nn.Module]
    cost: Callable[[int], OpCost]
    terms: Callable[[nn.Module, int, Tensor], Terms]
    color: str
    label: str
    renamed: dict[str, str] = field(default_factory=dict)


REGISTRY: dict[str, Op] = {}


def register(op: Op) -> Op:
    """Add ``op`` to the registry; a name is registered once."""
    if op.name in REGISTRY:
        raise ValueError(f"op {op.name!r} is registered already")
    REGISTRY[op.name] = op
    return op


def _conv_terms(op: nn.Module, state: int, eye: Tensor) -> Terms:
    return Terms(op.conv.bias, {(state, op.conv.dilation[0]): op.conv.weight})


def _sep_terms(op: nn.Module, state: int, eye: Tensor) -> Terms:
    pointwise = op.pointwise.weight[:, :, 0, 0]
    return Terms(op.pointwise.bias, seps={state: [(op.depthwise.weight[:, 0], pointwise)]})


def _identity_terms(op: nn.Module, state: int, eye: Tensor) -> Terms:
    return Terms(torch.zeros_like(eye[0]), raw={state: eye})


def _conv_cost(c: int) -> OpCost:
    return OpCost(9 * c * c + c, 9 * c * c)


for _op in (
    Op("conv_3x3", ReLUConv, _conv_cost, _conv_terms, "tab:blue", "conv 3x3", {"1": "conv"}),
    Op("sep_conv_3x3", SepConv, lambda c: OpCost(9 * c + c * c + c, 9 * c + c * c),
       _sep_terms, "tab:orange", "sep 3x3", {"1": "depthwise", "2": "pointwise"}),
    Op("dil_conv_3x3", lambda c: ReLUConv(c, dilation=3), _conv_cost, _conv_terms,
       "tab:green", "dil 3x3", {"1": "conv"}),
    Op("identity", lambda c: nn.Identity(), lambda c: OpCost(0, 0), _identity_terms,
       "tab:gray", "identity"),
):
    register(_op)

# The ops the cell chooses among, in decision order (the controller's op indices).
OP_NAMES: tuple[str, ...] = ("conv_3x3", "sep_conv_3x3", "dil_conv_3x3", "identity")
