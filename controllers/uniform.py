"""Random search: uniform over the valid choices of every decision, no learning."""

from __future__ import annotations

import math

import torch

from controllers.base import Controller, Sample
from search_spaces.genotypes import Genotype, Macro
from search_spaces.operations import OP_NAMES


class RandomController(Controller):
    def __init__(self, num_nodes: int, baseline_decay: float = 0.95,
                 normalize_advantage: bool = True, ops: tuple[str, ...] = OP_NAMES,
                 macros: tuple[Macro, ...] = ()):
        super().__init__(num_nodes, baseline_decay, normalize_advantage, ops, macros)

    def sample(self, generator: torch.Generator | None = None, greedy: bool = False) -> Sample:
        # ``greedy`` has no meaning for a uniform policy: every draw is a fresh sample
        decisions = [int(torch.randint(c, (1,), generator=generator)) for c in self.choices]
        log_prob = -sum(math.log(c) for c in self.choices)
        return Sample(
            Genotype.from_decisions(decisions, self.ops, self.macros),
            torch.tensor(log_prob),
            torch.tensor(-log_prob),  # the entropy of a uniform choice is log(#choices)
        )
