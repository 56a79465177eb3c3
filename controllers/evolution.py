"""Regularized evolution (Real et al., "Regularized Evolution for Image Classifier
Architecture Search"): a population of the last ``population`` scored cells; each
proposal mutates the best of ``tournament`` members drawn at random, and the oldest
member, not the worst, leaves. Ageing keeps the population fresh as shared weights train
and every reward drifts; a mutation changes one thing, so a child keeps most of its
parent's cost and stays in the search's band (``accept``) where one exists. Where the space
searches the network's size (``macros``), a fourth mutation moves it to a neighbouring
(channels, cells) of the space's list.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from controllers.base import MemoryController, Sample
from controllers.uniform import RandomController
from search_spaces.genotypes import Genotype, Macro, Node
from search_spaces.operations import OP_NAMES

MUTATIONS = ("op", "input", "swap")


def _pick(n: int, generator: torch.Generator | None) -> int:
    return int(torch.randint(n, (1,), generator=generator))


def mutate(genotype: Genotype, ops: tuple[str, ...], generator: torch.Generator | None,
           macros: tuple[Macro, ...] = ()) -> Genotype:
    """One change: an op replaced by another of ``ops``, an input rewired to another state
    the node may read, the ops of two slots swapped (the same ops, rewired) or, with two or
    more ``macros``, the network's size moved one step along their list."""
    kinds = MUTATIONS + (("macro",) if len(macros) > 1 else ())
    kind = kinds[_pick(len(kinds), generator)]
    if kind == "macro":
        i = macros.index(genotype.macro)
        steps = [j for j in (i - 1, i + 1) if 0 <= j < len(macros)]
        return Genotype(genotype.nodes, macros[steps[_pick(len(steps), generator)]])
    nodes = [list(n) for n in genotype.nodes]
    j, slot = _pick(len(nodes), generator), _pick(2, generator)
    if kind == "op" and len(ops) > 1:
        others = [op for op in ops if op != nodes[j][2 * slot + 1]]
        nodes[j][2 * slot + 1] = others[_pick(len(others), generator)]
    elif kind == "input":  # node j reads one of j + 2 states: there is always another
        others = [i for i in range(j + 2) if i != nodes[j][2 * slot]]
        nodes[j][2 * slot] = others[_pick(len(others), generator)]
    else:  # swap: two random slots of the cell exchange their ops
        k, other = _pick(len(nodes), generator), _pick(2, generator)
        a, b = 2 * slot + 1, 2 * other + 1
        nodes[j][a], nodes[k][b] = nodes[k][b], nodes[j][a]
    return Genotype(tuple(Node(*n) for n in nodes), genotype.macro)


class EvolutionController(MemoryController):
    def __init__(self, num_nodes: int, population: int = 20, tournament: int = 5,
                 baseline_decay: float = 0.95, normalize_advantage: bool = True,
                 ops: tuple[str, ...] = OP_NAMES, macros: tuple[Macro, ...] = ()):
        # the population is the memory of the last ``population`` scored cells
        super().__init__(num_nodes, population, baseline_decay, normalize_advantage, ops,
                         macros)
        if not 1 <= tournament <= population:
            raise ValueError(f"tournament={tournament}: must be in 1..population={population}")
        self.size, self.tournament = population, tournament
        self.uniform = RandomController(num_nodes, ops=ops, macros=macros)
        # a child is mapped onto a cell that can be scored: in replay, the table's nearest
        self.project: Callable[[Genotype, Genotype], Genotype] = lambda child, parent: child

    def sample(self, generator: torch.Generator | None = None, greedy: bool = False) -> Sample:
        """A uniform cell until the population is full, then a tournament winner's child;
        ``greedy``: the best member itself."""
        if greedy and self.memory:
            return self._sample(max(self.memory, key=lambda m: m[1])[0])
        if len(self.memory) < self.size:
            return self.uniform.sample(generator)
        members = [self.memory[_pick(len(self.memory), generator)]
                   for _ in range(self.tournament)]
        parent = max(members, key=lambda m: m[1])[0]
        for _ in range(self.MAX_TRIES):  # a child that differs, within the band
            child = self.project(mutate(parent, self.ops, generator, self.macros), parent)
            if child != parent and (self.accept is None or self.accept(child)):
                return self._sample(child)
        return self._sample(parent)  # no in-band mutation: the parent again

    @staticmethod
    def _sample(genotype: Genotype) -> Sample:
        zero = torch.zeros(())
        return Sample(genotype, zero, zero)
