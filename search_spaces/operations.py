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

from search_spaces.attention import (
    ESA,
    ChannelAttention,
    PixelAttention,
    channel_attention_cost,
    esa_cost,
    pixel_attention_cost,
)
from search_spaces.terms import Terms


class ReLUConv(nn.Module):
    """ReLU, then a k x k conv ('same' padding), dilated by ``dilation``."""

    def __init__(self, channels: int, dilation: int = 1, kernel: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel, padding=dilation * (kernel // 2),
                              dilation=dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.relu(x))


class SepConv(nn.Module):
    """ReLU, then a depthwise k x k conv (no bias) and a pointwise 1x1 conv."""

    def __init__(self, channels: int, kernel: int = 3):
        super().__init__()
        self.depthwise = nn.Conv2d(channels, channels, kernel, padding=kernel // 2,
                                   groups=channels, bias=False)
        self.pointwise = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(F.relu(x)))


class OpCost(NamedTuple):
    params: int
    mult_adds: int  # multiply-accumulates on an h x w LR input


@dataclass(frozen=True)
class Op:
    """Everything the toolkit knows of one candidate op, registered in one place.

    ``build(C)`` makes it on C channels; ``cost(C, h, w)`` is its closed-form size on an
    h x w input (``search_spaces/cost.py`` sums it); ``terms(module, state, eye)`` is its
    fused form, what it adds to a node as a map of ``state`` (``search_spaces/fused.py``);
    ``color`` and ``label`` draw it in plots; ``renamed`` maps parameter names of
    checkpoints written before the op was a class to today's.
    """

    name: str
    build: Callable[[int], nn.Module]
    cost: Callable[[int, int, int], tuple[int, int]]
    terms: Callable[[nn.Module, int, Tensor], Terms]
    color: str
    label: str
    renamed: dict[str, str] = field(default_factory=dict)

    def size(self, c: int, h: int, w: int) -> OpCost:
        return OpCost(*self.cost(c, h, w))


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


def opaque_terms(op: nn.Module, state: int, eye: Tensor) -> Terms:
    """The fused form of a nonlinear op (attention): run as it is, only the maps after it
    folded."""
    return Terms(torch.zeros_like(eye[0]), opaque={state: [(op, eye)]})


def _conv(kernel: int, dilation: int = 1) -> Callable[[int], nn.Module]:
    return lambda c: ReLUConv(c, dilation, kernel)


def _conv_cost(kernel: int) -> Callable[[int, int, int], tuple[int, int]]:
    return lambda c, h, w: (kernel * kernel * c * c + c, kernel * kernel * c * c * h * w)


def _sep_cost(kernel: int) -> Callable[[int, int, int], tuple[int, int]]:
    k2 = kernel * kernel  # depthwise k x k (no bias), then pointwise 1x1
    return lambda c, h, w: (k2 * c + c * c + c, (k2 * c + c * c) * h * w)


for _op in (
    # the ops of Ahn and Cho's cell, the default space (in this order, and first: a seed
    # draws the same cells and initial weights as before the registry grew)
    Op("conv_3x3", ReLUConv, _conv_cost(3), _conv_terms, "tab:blue", "conv 3x3",
       {"1": "conv"}),
    Op("sep_conv_3x3", SepConv, _sep_cost(3), _sep_terms, "tab:orange", "sep 3x3",
       {"1": "depthwise", "2": "pointwise"}),
    Op("dil_conv_3x3", _conv(3, 3), _conv_cost(3), _conv_terms, "tab:green", "dil 3x3",
       {"1": "conv"}),
    Op("identity", lambda c: nn.Identity(), lambda c, h, w: (0, 0), _identity_terms,
       "tab:gray", "identity"),
    # the wider space's: other kernels and dilations, and the attention of lightweight SR
    Op("conv_1x1", _conv(1), _conv_cost(1), _conv_terms, "tab:cyan", "conv 1x1"),
    Op("conv_5x5", _conv(5), _conv_cost(5), _conv_terms, "tab:purple", "conv 5x5"),
    Op("sep_conv_5x5", lambda c: SepConv(c, 5), _sep_cost(5), _sep_terms, "tab:brown",
       "sep 5x5"),
    Op("dil_conv_3x3_r2", _conv(3, 2), _conv_cost(3), _conv_terms, "tab:olive", "dil 3x3 r2"),
    Op("channel_attention", ChannelAttention, channel_attention_cost, opaque_terms,
       "tab:red", "CA"),
    Op("pixel_attention", PixelAttention, pixel_attention_cost, opaque_terms, "tab:pink",
       "PA"),
    Op("esa", ESA, esa_cost, opaque_terms, "darkred", "ESA"),
):
    register(_op)

# The ops the cell chooses among, in decision order (the controller's op indices).
OP_NAMES: tuple[str, ...] = ("conv_3x3", "sep_conv_3x3", "dil_conv_3x3", "identity")
