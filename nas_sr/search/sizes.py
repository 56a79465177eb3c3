"""Network sizes for a budget: the depth each width of ``space.macro_widths`` gets.

Width against depth pays only where each size's cells can meet the budget: a size whose
uniform cells mostly cost more (or less) than the band spends the strategy's draws on
rejections. So a fixed sample of uniform cells is priced at every depth of a width, as the
search's band prices them, and the width gets the depth whose median cell lies nearest
the band: the deepest one whose median is inside it, where several are.
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
    """Each width's depth for ``cfg``'s budget band; a width with no probe cell in the band
    at any depth is left out (said), and a band no width reaches is refused."""
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
            median = {k: statistics.median(band.cost(g)[k] for g in networks) for k in limits}
            rank = (max(_gap(median[k], floor * v, v) for k, v in limits.items()), -cells)
            if best is None or rank < best[0]:
                best = rank, Pick((width, cells), median,
                                  sum(g in band for g in networks) / len(networks))
            if any(median[k] > v for k, v in limits.items()):
                break  # a deeper network only costs more
        if best[1].in_band:
            picks.append(best[1])
        else:
            log.warning("space.macro_widths: %s left out: none of %d uniform cells is within "
                        "search.budget at that width", best[1], PROBE_CELLS)
    if not picks:
        raise ConfigError(f"space.macro_widths={list(widths)}: at no depth of any of these "
                          f"widths is one of {PROBE_CELLS} uniform cells within search.budget "
                          f"{limits} (floor {floor}); widen the band or try other widths")
    return picks
