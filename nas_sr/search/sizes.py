"""Network sizes for a budget: the depth each width of ``space.macro_widths`` gets.

Width against depth pays only where each size's cells can meet the budget: a size whose
uniform cells mostly cost more (or less) than the band spends the strategy's draws on
rejections. So a fixed sample of uniform cells is priced at every depth of a width, as the
search's band prices them, and the width gets, of the depths where some of them are in
the band, the one whose median cell lies nearest it: the deepest whose median is inside
it, where several are.
"""

from __future__ import annotations

import logging
import math
import statistics
from dataclasses import dataclass

import torch
from omegaconf import DictConfig

from controllers import RandomController
from nas_sr.errors import ConfigError
from nas_sr.search.band import Band
from nas_sr.search.supernet import space_ops
from search_spaces.genotypes import Genotype, Macro, Node

log = logging.getLogger(__name__)

PROBE_CELLS = 128  # uniform cells priced at each size: one fixed sample, whatever the seed
MAX_CELLS = 32  # the deepest network a width is offered
UNITS = {"params": "{:,.0f} params", "mult_adds": "{:.3g} Mult-Adds",
         "latency_ms": "{:.0f} ms"}


@dataclass(frozen=True)
class Pick:
    """A width's depth, with the probe's median cost there and its share in the band."""

    macro: Macro
    median: dict[str, float]
    in_band: float

    def __str__(self) -> str:
        costs = ", ".join(UNITS[k].format(v) for k, v in self.median.items())
        return (f"{self.macro[0]} x {self.macro[1]} (uniform cells' median {costs}; "
                f"{self.in_band:.0%} in the band)")


def _gap(cost: float, low: float, high: float) -> float:
    """How far ``cost`` lies outside [low, high], as a log ratio (0 inside)."""
    if cost > high:
        return math.log(cost / high)
    return math.log(low / cost) if cost < low else 0.0


def probe_cells(cfg: DictConfig) -> list[tuple[Node, ...]]:
    """The uniform cells of ``cfg``'s space every size is priced on: the same for every
    seed, so runs of one space and budget search the same sizes."""
    ctrl = RandomController(cfg.archs.cell.nodes, ops=space_ops(cfg))
    rng = torch.Generator().manual_seed(0)
    return [ctrl.sample(rng).genotype.nodes for _ in range(PROBE_CELLS)]


def pick_sizes(cfg: DictConfig, widths: list[int]) -> list[Pick]:
    """Each width's depth for ``cfg``'s budget band, among the depths where some probe cell
    is in the band; a width with none at any depth is left out (said), and a band no
    width reaches is refused."""
    band = Band(cfg)
    limits = {k: v for k, v in band.limits.items() if v}
    if not limits:
        raise ConfigError("space.macro_widths: the depth of each width is picked for the "
                          "search's budget; set search.budget.latency_ms, params or mult_adds")
    floor, probe = cfg.search.budget.get("floor", 0.0), probe_cells(cfg)
    picks = []
    for width in widths:
        best: tuple[tuple[float, int], Pick] | None = None
        for cells in range(1, MAX_CELLS + 1):
            networks = [Genotype(nodes, (width, cells)) for nodes in probe]
            costs = [band.cost(g) for g in networks]
            median = {k: statistics.median(c[k] for c in costs) for k in limits}
            share = sum(g in band for g in networks) / len(networks)
            rank = (max(_gap(median[k], floor * v, v) for k, v in limits.items()), -cells)
            if share and (best is None or rank < best[0]):
                best = rank, Pick((width, cells), median, share)
            # every cost grows with depth: stop where no deeper network can be in the band,
            # or where its median is already farther over a limit than the best is from it
            over = max(_gap(median[k], 0, v) for k, v in limits.items())
            if any(min(c[k] for c in costs) > v for k, v in limits.items()) or (
                    best is not None and over > best[0][0]):
                break
        if best is None:
            log.warning("space.macro_widths: width %d left out: at no depth up to %d cells is "
                        "one of %d uniform cells within search.budget", width, MAX_CELLS,
                        PROBE_CELLS)
            continue
        pick = best[1]
        if pick.macro[1] == MAX_CELLS and best[0][0]:
            log.warning("space.macro_widths: %s: the deepest offered, its median cell still "
                        "under the band", pick)
        picks.append(pick)
    if not picks:
        raise ConfigError(f"space.macro_widths={list(widths)}: at no depth (up to {MAX_CELLS} "
                          f"cells) of any of these widths is one of {PROBE_CELLS} uniform cells "
                          f"within search.budget {limits} (floor {floor}); widen the band or "
                          "try other widths")
    return picks
