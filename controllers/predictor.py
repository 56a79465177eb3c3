"""Predictor-guided search: a model of the reward over cell features, with an uncertainty,
chooses among band-constrained candidates (as BANANAS and NAS-Bench-201's predictor
baselines do, here with scikit-learn's random forest).

Features (:func:`features`): how often each op of the space is used, each op per slot
position (node, input slot), the cell's depth (longest chain of nodes), its loose ends,
how many ops read the cell's inputs directly and, where the space searches the network's
size, its channels and cells. The forest's trees are an ensemble: Thompson
sampling takes one tree at random and proposes its best of ``candidates`` uniform
in-band cells (``acquisition=thompson``), or the best mean plus ``kappa`` standard
deviations over the trees (``ucb``). Until ``warmup`` cells are scored it proposes uniform
cells. The model is refitted from the kept observations, so a checkpoint holds only them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from controllers.base import MemoryController, Sample
from controllers.uniform import RandomController
from search_spaces.genotypes import NUM_CELL_INPUTS, Genotype, Macro
from search_spaces.operations import OP_NAMES

if TYPE_CHECKING:  # scikit-learn (and the SciPy it loads) costs every command a second
    from sklearn.ensemble import RandomForestRegressor

ACQUISITIONS = ("thompson", "ucb")


def features(genotype: Genotype, ops: tuple[str, ...]) -> np.ndarray:
    """The cell as numbers a regressor can use (see the module docstring)."""
    index = {op: i for i, op in enumerate(ops)}
    counts = np.zeros(len(ops))
    slots = np.zeros((genotype.num_nodes, 2, len(ops)))
    depth = [0] * (genotype.num_nodes + NUM_CELL_INPUTS)
    for j, node in enumerate(genotype.nodes):
        for slot, op in enumerate((node.op1, node.op2)):
            counts[index[op]] += 1
            slots[j, slot, index[op]] = 1
        depth[j + NUM_CELL_INPUTS] = 1 + max(depth[node.in1], depth[node.in2])
    direct = sum(inp < NUM_CELL_INPUTS for n in genotype.nodes for inp in (n.in1, n.in2))
    return np.concatenate([counts, slots.ravel(),
                           [max(depth), len(genotype.loose_ends()), direct],
                           genotype.macro or ()])


class PredictorController(MemoryController):
    def __init__(self, num_nodes: int, candidates: int = 256, warmup: int = 10,
                 acquisition: str = "thompson", kappa: float = 1.0, trees: int = 32,
                 seed: int = 0, baseline_decay: float = 0.95, normalize_advantage: bool = True,
                 ops: tuple[str, ...] = OP_NAMES, macros: tuple[Macro, ...] = ()):
        super().__init__(num_nodes, None, baseline_decay, normalize_advantage, ops, macros)
        if acquisition not in ACQUISITIONS:
            raise ValueError(f"acquisition={acquisition!r}: use one of {ACQUISITIONS}")
        self.candidates, self.warmup, self.acquisition = candidates, warmup, acquisition
        self.kappa, self.trees, self.seed = kappa, trees, seed
        self.model: RandomForestRegressor | None = None  # refitted when observations change
        self.uniform = RandomController(num_nodes, ops=ops, macros=macros)

    def _fit(self) -> RandomForestRegressor:
        if self.model is None:
            from sklearn.ensemble import RandomForestRegressor  # noqa: PLC0415
            x = np.stack([features(g, self.ops) for g, _ in self.memory])
            y = np.array([r for _, r in self.memory])
            self.model = RandomForestRegressor(self.trees, min_samples_leaf=2,
                                               random_state=self.seed).fit(x, y)
        return self.model

    def _candidates(self, generator: torch.Generator | None) -> list[Genotype]:
        drawn = []
        for _ in range(self.candidates):
            draw = self.uniform.sample(generator).genotype
            if self.accept is None or self.accept(draw):
                drawn.append(draw)
        return list(dict.fromkeys(drawn))

    def sample(self, generator: torch.Generator | None = None, greedy: bool = False) -> Sample:
        """Uniform until ``warmup`` cells are scored; then the acquisition's best candidate
        (``greedy``: the best predicted mean)."""
        if len(self.memory) < max(2, self.warmup):
            return self.uniform.sample(generator)
        pool = self._candidates(generator)
        if not pool:  # no candidate in the band: propose() draws again
            return self.uniform.sample(generator)
        x = np.stack([features(g, self.ops) for g in pool])
        per_tree = np.stack([tree.predict(x) for tree in self._fit().estimators_])
        if greedy:
            score = per_tree.mean(0)
        elif self.acquisition == "thompson":
            score = per_tree[int(torch.randint(len(per_tree), (1,), generator=generator))]
        else:
            score = per_tree.mean(0) + self.kappa * per_tree.std(0)
        zero = torch.zeros(())
        return Sample(pool[int(np.argmax(score))], zero, zero)

    def remembered(self) -> None:
        self.model = None  # refitted on the next proposal
