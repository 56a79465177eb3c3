"""Fair sampling of the supernet's training children (FairNAS's strict fairness).

A policy that samples the children it trains feeds its early favourites the most
training, and they then score best: the reward then measures training share as much
as quality. Uniform sampling is fair only on average; FairNAS's strict fairness trains
every op of every decision equally often at every point of the run. Here the children
come in blocks of ``len(ops)``: each op decision of the block's cells is a fresh
random permutation of the ops, so within a block every op of every decision is trained
exactly once. Input decisions stay uniform (their choices differ in number per node).
FairNAS also accumulates the block's gradients into one step; this sampler steps per
child, so one block costs what as many ordinary steps cost.
"""

from __future__ import annotations

from typing import Any

import torch

from search_spaces.genotypes import Genotype, choices_per_decision
from search_spaces.operations import OP_NAMES


class FairSampler:
    """Uniform inputs, ops by per-decision permutations over blocks of ``len(ops)``."""

    def __init__(self, num_nodes: int, ops: tuple[str, ...] = OP_NAMES):
        self.ops = tuple(ops)
        self.choices = choices_per_decision(num_nodes, self.ops)
        self.pending: list[list[int]] = []

    def _block(self, generator: torch.Generator | None) -> list[list[int]]:
        n = len(self.ops)
        cells: list[list[int]] = [[] for _ in range(n)]
        for t, count in enumerate(self.choices):
            if t % 2:  # an op decision: each op once over the block
                column = torch.randperm(n, generator=generator).tolist()
            else:
                column = torch.randint(count, (n,), generator=generator).tolist()
            for cell, value in zip(cells, column, strict=True):
                cell.append(int(value))
        return cells

    def sample(self, generator: torch.Generator | None = None) -> Genotype:
        if not self.pending:
            self.pending = self._block(generator)
        return Genotype.from_decisions(self.pending.pop(0), self.ops)

    def state_dict(self) -> dict[str, Any]:
        return {"pending": [list(d) for d in self.pending]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.pending = [list(d) for d in state["pending"]]
