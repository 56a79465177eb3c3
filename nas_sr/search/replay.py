"""Search strategies replayed on an SR-NAS table (``nas_sr.search.table``): a trial is a
table lookup, so a thousand paired searches take seconds to minutes instead of CPU-years.

Each strategy proposes only cells of the table: its uniform draws are draws of table rows,
and regularized evolution's mutated child is moved to the nearest row (fewest differing
decisions; not its parent). A trial of a cell observes one of its proxy seeds, drawn at
random: the seed noise a live search pays. After K trials the final rule of the live
search picks the cell: the ``final_top`` best observed cells, then the best mean over every
seed on the final crops. A search's score is that cell's mean PSNR on the final crops.
As a second, multi-objective score, the hypervolume of the (cost, PSNR) front of every cell
it trained (PSNR: the mean on the final crops), cost as a share of the table's dearest
cell, PSNR above the table's worst: what the search learnt of the whole trade-off, not just
its one choice.

Searches are paired by seed: search ``s`` of every strategy starts from the same RNG, so
the uniform draws that fill evolution's population and the predictor's warm-up are the
very cells random search draws first. The report is each strategy's mean paired gain over
random with a 95% t-interval, and the pairs a live comparison would need to see that gain
(two-sided alpha 0.05, power 0.8; a floor, since a live search adds retraining noise).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from scipy import stats

from controllers import RandomController, Sample, build_controller
from controllers.evolution import EvolutionController
from nas_sr.search.stats import hypervolume
from nas_sr.search.table import Table
from search_spaces.genotypes import Genotype

REPLAYED = ("random", "evolution", "predictor")
# controller.* keys of the live search loop, not of the strategy itself
LOOP_KEYS = ("name", "steps_per_epoch", "samples_per_update", "rebase")
Z_ALPHA, Z_POWER = 1.959964, 0.841621  # two-sided 5%, power 80%


class TableDraw(RandomController):
    """Uniform draws of a table's rows."""

    def __init__(self, table: Table):
        super().__init__(table.cells[0].num_nodes, ops=table.ops, macros=table.macros)
        self.table = table

    def sample(self, generator: torch.Generator | None = None, greedy: bool = False) -> Sample:
        i = int(torch.randint(len(self.table.cells), (1,), generator=generator))
        zero = torch.zeros(())
        return Sample(self.table.cells[i], zero, zero)


def nearest(table: Table, child: Genotype, parent: Genotype, generator: torch.Generator
            ) -> Genotype:
    """The table's cell with the fewest decisions unlike ``child``'s, other than ``parent``
    (ties drawn at random); a cell of the child's size before any of another size, so a
    mutation of the size lands on that size wherever the table has it."""
    ops, macros = table.ops, table.macros
    unlike = (table.decisions != np.array(child.to_decisions(ops, macros))).astype(int)
    if macros:  # the size outweighs every decision of the cell
        unlike[:, -1] *= unlike.shape[1]
    distance = unlike.sum(1)
    distance[(table.decisions == np.array(parent.to_decisions(ops, macros))).all(1)] = 10**9
    ties = np.flatnonzero(distance == distance.min())
    return table.cells[ties[int(torch.randint(len(ties), (1,), generator=generator))]]


def strategy(name: str, settings: dict[str, Any], table: Table, generator: torch.Generator
             ) -> RandomController | Any:
    """Strategy ``name`` with ``settings`` (its controller.* options), drawing table rows."""
    draw = TableDraw(table)
    if name == "random":
        return draw
    kwargs = {k: v for k, v in settings.items() if k not in LOOP_KEYS}
    if draw.macros:
        kwargs["macros"] = draw.macros
    ctrl = build_controller(name, draw.num_nodes, ops=draw.ops, **kwargs)
    ctrl.uniform = draw
    if isinstance(ctrl, EvolutionController):
        ctrl.project = lambda child, parent: nearest(table, child, parent, generator)
    return ctrl


def search(table: Table, name: str, settings: dict[str, Any], budget: int, seed: int,
           final_top: int, batch: int) -> tuple[int, list[int]]:
    """One replayed search of ``budget`` trials; the row it chooses and the rows it
    trained."""
    rng = torch.Generator().manual_seed(seed)
    noise = np.random.default_rng(seed)  # which proxy seed each trial observes
    index = {tuple(d): i for i, d in enumerate(table.decisions.tolist())}
    ctrl = strategy(name, settings, table, rng)
    best: dict[int, float] = {}  # row -> its best observation
    for start in range(0, budget, batch):
        samples = [ctrl.propose(rng) for _ in range(min(batch, budget - start))]
        rows = [index[tuple(s.genotype.to_decisions(table.ops, table.macros))]
                for s in samples]
        seen = [float(table.reward[i, noise.integers(table.reward.shape[1])]) for i in rows]
        ctrl.update(samples, seen)
        for i, value in zip(rows, seen, strict=True):
            best[i] = max(best.get(i, -math.inf), value)
    top = sorted(best, key=lambda i: -best[i])[:final_top]
    return max(top, key=lambda i: table.final[i]), list(best)


def front_score(table: Table, rows: list[int], cost: str) -> float:
    """The hypervolume of the ``rows``' (``cost``, final PSNR) front, ``cost`` as a share of
    the table's dearest cell, PSNR in dB above the table's worst (:func:`hypervolume`)."""
    costs = table.costs[cost]
    return hypervolume(costs[rows] / costs.max(), table.final[rows], 1.0,
                       float(table.final.min()))


def paired(gains: np.ndarray) -> dict[str, float]:
    """Mean of paired differences, its 95% t-interval, the share of pairs won and lost, and
    the pairs a live test needs to detect that mean."""
    n, mean = len(gains), float(gains.mean())
    sd = float(gains.std(ddof=1)) if n > 1 else 0.0
    half = float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n) if n > 1 else math.inf
    need = math.ceil(((Z_ALPHA + Z_POWER) * sd / mean) ** 2) if mean and sd else None
    return {"mean": mean, "ci_low": mean - half, "ci_high": mean + half, "sd": sd,
            "won": float((gains > 0).mean()), "lost": float((gains < 0).mean()),
            "pairs_needed": need, "pairs": n}


def replay(table: Table, settings: dict[str, dict[str, Any]], budgets: list[int], seeds: int,
           final_top: int, batch: int, progress: Any = None, cost: str = "params"
           ) -> dict[str, Any]:
    """Every strategy of ``settings`` (random always) at each budget over ``seeds`` paired
    searches: the chosen cells' scores, the hypervolumes of their fronts in ``cost``, and
    each strategy's paired gain over random in both."""
    names = ["random", *(n for n in settings if n != "random")]
    out: dict[str, Any] = {"cells": len(table.cells), "seeds": seeds, "front_cost": cost,
                           "budgets": {}}
    for k in budgets:
        runs = {n: [search(table, n, settings.get(n, {}), k, s, final_top, batch)
                    for s in range(seeds)] for n in names}
        scores = {n: np.array([table.final[chosen] for chosen, _ in r])
                  for n, r in runs.items()}
        fronts = {n: np.array([front_score(table, rows, cost) for _, rows in r])
                  for n, r in runs.items()}
        if progress is not None:
            progress.update(1)
        out["budgets"][k] = {n: {"score": float(scores[n].mean()),
                                 "front": float(fronts[n].mean()),
                                 "gain": paired(scores[n] - scores["random"])
                                 if n != "random" else None,
                                 "front_gain": paired(fronts[n] - fronts["random"])
                                 if n != "random" else None} for n in names}
    out["best_possible"] = float(table.final.max())
    return out


def markdown(result: dict[str, Any]) -> str:
    """The replay as a table: each strategy's mean gain over random at each budget."""
    lines = [f"Replay on {result['cells']} cells, {result['seeds']} paired seeds; the best "
             f"cell of the table scores {result['best_possible']:.3f} dB", "",
             "| K | strategy | mean score (dB) | gain over random (dB) | 95% CI | won / lost "
             "| pairs for a live test | front hypervolume | its gain, 95% CI |",
             "|---|---|---|---|---|---|---|---|---|"]
    for k, by_name in result["budgets"].items():
        for name, r in by_name.items():
            g, f = r["gain"], r["front_gain"]
            if g is None:
                lines.append(f"| {k} | {name} | {r['score']:.3f} | | | | | {r['front']:.4f} "
                             "| |")
                continue
            lines.append(f"| {k} | {name} | {r['score']:.3f} | {g['mean']:+.4f} | "
                         f"[{g['ci_low']:+.4f}, {g['ci_high']:+.4f}] | {g['won']:.0%} / "
                         f"{g['lost']:.0%} | {g['pairs_needed'] or '-'} | {r['front']:.4f} | "
                         f"{f['mean']:+.4f} [{f['ci_low']:+.4f}, {f['ci_high']:+.4f}] |")
    lines += ["", f"Front hypervolume: dB above the table's worst cell x the share of its "
              f"dearest cell's {result['front_cost']} saved, over every cell a search trained."]
    return "\n".join(lines)
