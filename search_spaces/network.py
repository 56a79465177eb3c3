"""The SR network around the cells: head conv, N cells, global residual, PixelShuffle."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from search_spaces.cell import Cell
from search_spaces.genotypes import Genotype
from search_spaces.operations import OP_NAMES

# DIV2K's RGB mean: centring the input is the EDSR habit; it is added back at the end.
RGB_MEAN = (0.4488, 0.4371, 0.4040)


def rgb_mean(colors: int = 3) -> torch.Tensor:
    """The mean as a (1, colors, 1, 1) tensor, for a model's non-persistent ``mean`` buffer."""
    return torch.tensor(RGB_MEAN[:colors]).view(1, colors, 1, 1)


# the sub-pixel conv's kernel: ESPCN's 3x3, or a 1x1 that costs a ninth (a tiny network's
# tail is a fifth of its latency)
UPSAMPLERS = {"conv3": 3, "conv1": 1}
# how a cell network meets the image, as CellSRNet's defaults: RGB, the 3x3 upsampler
FORM = {"colors": 3, "upsampler": "conv3"}


def form_of(settings: Any) -> dict[str, Any]:
    """The form a mapping (a config section, a saved setting) records, its defaults where it
    records none (a missing or null entry)."""
    return {k: settings.get(k) or default for k, default in FORM.items()}


def form_overrides(form: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``form`` that differ from :data:`FORM`: what an arch spec or a saved
    setting records (those from before the form was a choice record none)."""
    return {k: v for k, v in form.items() if k in FORM and v != FORM[k]}


class Upsampler(nn.Sequential):
    """Sub-pixel upsampling: conv to out_channels*s^2 channels, then PixelShuffle(s)."""

    def __init__(self, channels: int, scale: int, out_channels: int = 3, kind: str = "conv3"):
        if scale not in (2, 3, 4):
            raise ValueError(f"scale must be 2, 3 or 4, got {scale!r}")
        if kind not in UPSAMPLERS:
            raise ValueError(f"upsampler {kind!r}: one of {', '.join(UPSAMPLERS)}")
        k = UPSAMPLERS[kind]
        super().__init__(
            nn.Conv2d(channels, out_channels * scale**2, k, padding=k // 2),
            nn.PixelShuffle(scale))


class CellSRNet(nn.Module):
    """LR image in [0, 1] -> HR image in [0, 1] (unclamped): RGB, or Y with ``colors=1``.

    ``genotype=None`` builds the weight-shared supernet over the space's ``ops``
    (``forward`` then needs a genotype); a genotype builds the standalone network with
    only its ops.

    ``recursions=R > 1`` runs each cell R times, each later pass on the last one's output
    with the same weights (DRCN's and DRRN's recursion: depth at no cost in weights), and
    adds ``gate * update`` with a per-channel gate that starts at zero (CaiT's LayerScale),
    so a network grown from a trained one starts as exactly that network.
    """

    def __init__(
        self,
        scale: int,
        channels: int = 32,
        num_cells: int = 4,
        num_nodes: int = 5,
        genotype: Genotype | None = None,
        recursions: int = 1,
        ops: tuple[str, ...] = OP_NAMES,
        share: str = "slot",
        norm: bool = False,
        colors: int = 3,
        upsampler: str = "conv3",
    ):
        super().__init__()
        self.scale, self.genotype = scale, genotype
        self.register_buffer("mean", rgb_mean(colors), persistent=False)
        self.head = nn.Conv2d(colors, channels, 3, padding=1)
        self.cells = nn.ModuleList(Cell(channels, num_nodes, genotype, ops, share, norm)
                                   for _ in range(num_cells))
        self.tail = Upsampler(channels, scale, colors, upsampler)
        # C gates per cell and later pass; not 4-D, so channels_last leaves them alone
        self.gates = (nn.Parameter(torch.zeros(num_cells, recursions - 1, channels))
                      if recursions > 1 else None)

    def forward(self, x: torch.Tensor, genotype: Genotype | None = None) -> torch.Tensor:
        genotype = genotype or self.genotype
        if genotype is None:
            raise ValueError("the supernet needs a genotype to run")
        feat = self.head(x - self.mean)
        s0 = s1 = feat
        for k, cell in enumerate(self.cells):
            out = cell(s0, s1, genotype)
            for gate in self.gates[k] if self.gates is not None else ():
                out = out + gate[:, None, None] * cell.update(s0, out, genotype)
            s0, s1 = s1, out
        return self.tail(s1 + feat) + self.mean


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
