"""A search's budget band: each cell's cost at the retrain width, whether it is in the band,
and what a reward loses over budget.

The shared-weight loop and the trial engine price cells the same way: params and
Mult-Adds in closed form (``search_spaces.cost``) and, with ``search.budget.latency_ms``,
the latency this machine's table predicts (``nas_sr.search.latency``).
"""

from __future__ import annotations

from typing import Any

import torch
from omegaconf import DictConfig

from controllers import Controller, RandomController, Sample
from nas_sr.errors import ConfigError
from nas_sr.schema.train import retrain_form, retrain_width
from nas_sr.search.latency import default_table_path, load_table, predict_latency
from nas_sr.search.supernet import space_macros
from search_spaces.cost import budget_penalty, genotype_cost
from search_spaces.genotypes import Genotype, Node


class Band:
    """``search.budget`` of config ``cfg``: its limits, costs (cached per cell) and band."""

    def __init__(self, cfg: DictConfig):
        self.cfg, b = cfg, cfg.search.budget
        self.limits: dict[str, Any] = {"params": b.params, "mult_adds": b.mult_adds}
        self.latency = None
        if b.get("latency_ms"):
            self.limits["latency_ms"] = b.latency_ms
            self.latency = load_table(b.latency_table or default_table_path())
        self.width, self.form = retrain_width(cfg), retrain_form(cfg)
        self.costs: dict[Genotype, dict[str, Any]] = {}
        # the cheapest network of each size: a width the table lacks is refused now, and so
        # is a latency no network meets (nas_sr.options checks params and Mult-Adds; with
        # space.macro_widths the sizes are still to be picked, search.sizes)
        cell = (Node(1, "identity", 1, "identity"),)
        cheapest = [self.cost(Genotype(cell, m)) for m in space_macros(cfg) or (None,)]
        if self.latency and not cfg.space.get("macro_widths") and \
                (least := min(c["latency_ms"] for c in cheapest)) > b.latency_ms:
            raise ConfigError(
                f"search.budget.latency_ms={b.latency_ms}: below the fastest network the space "
                f"builds, {least:.1f} ms (cells of identities; {b.latency_threads} thread(s), "
                f"{b.latency_lr[1]}x{b.latency_lr[0]} LR); raise it, or search smaller sizes "
                f"(space.macro) or a smaller search.budget.latency_lr")
        # proposals outside the band are drawn again before any score is paid
        self.rejects = bool(b.get("reject", False)) and any(self.limits.values())

    def cost(self, genotype: Genotype) -> dict[str, Any]:
        """Params and Mult-Adds of the standalone network at the retrain width (the
        genotype's macro, where it has one), and with a latency budget its predicted latency
        (ms)."""
        if genotype not in self.costs:
            width = genotype.width(self.width)
            cost: dict[str, Any] = genotype_cost(genotype, *width, self.cfg.scale,
                                                 **self.form)
            if self.latency is not None:
                b = self.cfg.search.budget
                cost["latency_ms"] = predict_latency(genotype, *width, self.cfg.scale,
                                                     self.latency, b.latency_threads,
                                                     b.latency_lr, **self.form)
            self.costs[genotype] = cost
        return self.costs[genotype]

    def __contains__(self, genotype: Genotype) -> bool:
        """Within every budget, and not under ``budget.floor`` of any (closed-form cost)."""
        cost, floor = self.cost(genotype), self.cfg.search.budget.get("floor", 0.0)
        return all(not limit or floor * limit <= cost[key] <= limit
                   for key, limit in self.limits.items())

    def constrain(self, *controllers: Controller) -> None:
        """Make each controller redraw a proposal outside the band (when the band rejects)."""
        if self.rejects:
            for ctrl in controllers:
                ctrl.accept = self.__contains__

    def propose(self, ctrl: Controller, rng: torch.Generator) -> Sample:
        """``ctrl``'s next in-band proposal; a band no draw reaches is the user's to widen."""
        try:
            return ctrl.propose(rng)
        except ConfigError:  # the user's setting (a latency table's gap), said as it is
            raise
        except ValueError as e:
            draw = RandomController(ctrl.num_nodes, ops=ctrl.ops,
                                    macros=ctrl.macros).sample(rng).genotype
            uniform = self.cost(draw)
            raise ConfigError(f"{e}: search.budget {self.limits} (a uniform cell costs e.g. "
                              f"{ {k: round(uniform[k], 1) for k in self.limits} })") from None

    def penalty(self, cost: dict[str, Any]) -> float:
        b = self.cfg.search.budget
        return budget_penalty(cost, self.limits, b.beta, b.mode)

    def reward(self, psnr: float, cost: dict[str, Any]) -> float:
        return psnr - self.penalty(cost)
