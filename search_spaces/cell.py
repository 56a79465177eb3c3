"""The searched cell, in its weight-shared (all ops) and standalone (chosen ops) forms."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from search_spaces.genotypes import NUM_CELL_INPUTS, Genotype
from search_spaces.operations import OP_NAMES, REGISTRY

T = TypeVar("T")
# what one set of shared weights serves: a (node, input slot), as before, or a (node, input
# state), as ENAS and HNAS-SR index them (the same op on the same input shares weights)
SHARING = ("slot", "input")


class Cell(nn.Module):
    """One cell: ``num_nodes`` nodes over inputs h(k-2), h(k-1).

    ``node_ops[j][slot][op]`` is the module of ``op`` on input ``slot`` (0 or 1) of node
    ``j``. With ``genotype=None`` every (node, input slot, op of ``ops``) owns a module and
    any genotype of those ops can be run through it: the shared weights of the supernet.
    ``share="input"`` keys them by (node, input state, op) instead, so ``node_ops[j][i]``
    serves input state ``i``; ``norm=True`` follows each op of the supernet with a batch
    norm in batch statistics and no affine, so a node's scale does not depend on the path
    drawn. With a genotype only the chosen ops are built, from the same op ``REGISTRY``.
    Only the ops a genotype names are ever computed, so a supernet step costs the
    same as a standalone step.

    Output: a 1x1 conv over the concatenated loose ends, added to h(k-1). The
    supernet keeps a (C, num_nodes*C) 1x1 weight and slices the columns of the
    loose ends (as ENAS does); the standalone cell keeps only those columns. The
    skip from h(k-1) keeps a deep stack of BN-free cells trainable (EDSR habit).
    """

    def __init__(self, channels: int, num_nodes: int, genotype: Genotype | None = None,
                 ops: tuple[str, ...] = OP_NAMES, share: str = "slot", norm: bool = False):
        super().__init__()
        if genotype is not None and genotype.num_nodes != num_nodes:
            raise ValueError(f"genotype has {genotype.num_nodes} nodes, cell has {num_nodes}")
        if share not in SHARING:
            raise ValueError(f"share={share!r}: use one of {SHARING}")
        if genotype is not None and (share != "slot" or norm):
            raise ValueError("share and norm shape the supernet; a standalone cell has neither")
        self.channels, self.num_nodes, self.genotype = channels, num_nodes, genotype
        self.by_input = share == "input"
        self.node_ops = nn.ModuleList()
        # the supernet's norms: each op's output in batch statistics, no affine (HNAS-SR)
        self.norms = nn.ModuleList() if norm else None
        for j in range(num_nodes):
            keys = range(j + NUM_CELL_INPUTS) if self.by_input else range(2)
            slots = nn.ModuleList()
            for key in keys:
                names = ops if genotype is None else (genotype.nodes[j][2 * key + 1],)
                slots.append(nn.ModuleDict({n: REGISTRY[n].build(channels) for n in names}))
            self.node_ops.append(slots)
            if self.norms is not None:
                self.norms.append(nn.ModuleList(nn.ModuleDict({n: nn.BatchNorm2d(
                    channels, affine=False, track_running_stats=False) for n in ops})
                    for _ in keys))
        combined = num_nodes if genotype is None else len(genotype.loose_ends())
        self.combine = nn.Conv2d(combined * channels, channels, 1)
        self.register_load_state_dict_pre_hook(_upgrade_names)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, genotype: Genotype) -> torch.Tensor:
        return s1 + self.update(s0, s1, genotype)

    def update(self, s0: torch.Tensor, s1: torch.Tensor, genotype: Genotype) -> torch.Tensor:
        """What the cell adds to h(k-1): the combine of its loose ends."""
        states = [s0, s1]
        for j, (in1, op1, in2, op2) in enumerate(genotype.nodes):
            key1, key2 = (in1, in2) if self.by_input else (0, 1)
            states.append(self._op(j, key1, op1, states[in1])
                          + self._op(j, key2, op2, states[in2]))
        loose = genotype.loose_ends()
        out = torch.cat([states[NUM_CELL_INPUTS + j] for j in loose], dim=1)
        if self.genotype is not None:  # called as a module, so weight masks apply (compress)
            return self.combine(out)
        c = self.channels  # shared weights: take the loose ends' columns
        weight = torch.cat([self.combine.weight[:, j * c:(j + 1) * c] for j in loose], dim=1)
        return F.conv2d(out, weight, self.combine.bias)


    def _op(self, node: int, key: int, op: str, x: torch.Tensor) -> torch.Tensor:
        y = self.node_ops[node][key][op](x)
        return y if self.norms is None else self.norms[node][key][op](y)


def current_name(name: str) -> str:
    """A parameter (or module) name as the cell names it now.

    Checkpoints and exports written before the ops were named classes say
    ``cells.0.edges.1.0.conv_3x3.1.weight`` for ``cells.0.node_ops.1.0.conv_3x3.conv.weight``;
    any other name is returned as it is.
    """
    parts = name.split(".")
    for i in range(len(parts) - 4):  # edges . node . slot . op . sequential index
        op = REGISTRY.get(parts[i + 3])
        if parts[i] == "edges" and op is not None and op.renamed:
            parts[i] = "node_ops"
            parts[i + 4] = op.renamed.get(parts[i + 4], parts[i + 4])
    return ".".join(parts)


def upgrade_state_dict(state: Mapping[str, T]) -> dict[str, T]:
    """``state`` with every name as :func:`current_name` gives it."""
    return {current_name(k): v for k, v in state.items()}


def _upgrade_names(module: nn.Module, state: dict[str, Any], prefix: str, *_: Any) -> None:
    """``load_state_dict`` hook: a cell reads its old-style names as current ones."""
    for key in [k for k in state if k.startswith(prefix)]:
        new = prefix + current_name(key[len(prefix):])
        if new != key:
            state[new] = state.pop(key)
