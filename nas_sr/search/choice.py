"""A search's choice written out: genotype.json, summary.json, pareto.json and the plots,
the same for the epoch loop and the trial engine."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from nas_sr import checkpoint
from nas_sr.plots.search import log_to_wandb, plot_run
from nas_sr.plots.tradeoff import pareto_figure
from nas_sr.runs.log import RunLog
from nas_sr.search.band import Band
from search_spaces.cost import pareto_front
from search_spaces.genotypes import Genotype
from search_spaces.network import CellSRNet, count_params, form_overrides


def write_choice(cfg: DictConfig, run_dir: Path, log: RunLog, best: Genotype, best_psnr: float,
                 scored: list[dict[str, Any]], band: Band, facts: dict[str, Any], how: str,
                 proxy: bool) -> dict[str, Any]:
    """A search's outputs once it chose ``best`` among ``scored`` (``how``: what scored
    them): genotype.json, summary.json (with ``facts`` of the run), pareto.json, the final
    log record and the plots."""
    write_pareto(scored, band.limits, run_dir, cfg.logger.plots, proxy)
    a = cfg.archs.cell
    searched, retrained = best.width((a.channels, a.cells)), best.width(band.width)
    summary = {
        "genotype": best.to_dict(), "genotype_str": str(best), "val_psnr": best_psnr,
        "params": count_params(CellSRNet(cfg.scale, *searched, a.nodes, best, **band.form)),
        "cost_at_retrain_width": {"channels": retrained[0], "cells": retrained[1],
                                  **band.cost(best)},
        "budget": band.limits, **facts, "controller": cfg.controller.name,
        "scale": cfg.scale, "cells_scored": len(scored),
        "candidates": [c for c in scored if "final_psnr" in c],
    }
    checkpoint.write_json(run_dir / "genotype.json", {
        **best.to_dict(), "scale": cfg.scale,
        "arch": {**OmegaConf.to_container(a), "channels": searched[0], "cells": searched[1]}})
    checkpoint.write_json(run_dir / "summary.json", summary)
    log.log("final", val_psnr=best_psnr, genotype=best.to_dict()["nodes"],
            params=summary["params"], search_time_s=facts["search_time_s"])
    log.flush()
    if cfg.logger.plots:
        plots = plot_run(run_dir)
        if log.wandb is not None:
            log_to_wandb(log.wandb, plots)
    # the form the search priced (a network on Y, a 1x1 tail), which a retrain must build
    form = "".join(f" train.cell.{k}={v}" for k, v in form_overrides(band.form).items())
    # measured on the crops that chose it: a selection score, not a held-out one
    print(f"best cell: {best}\n  selection PSNR {best_psnr:.2f} dB ({how}, final crops), "
          f"{summary['params']:,} params standalone; written to {run_dir}\n"
          f"retrain it with: nas-sr retrain genotype={run_dir / 'genotype.json'} "
          f"scale={cfg.scale}{form}")
    return summary


def nan_last(value: float) -> float:
    return value if math.isfinite(value) else -math.inf


def write_pareto(scored: list[dict[str, Any]], budget: dict[str, int | None],
                 run_dir: Path, plot: bool = True, proxy: bool = False) -> dict[str, list[int]]:
    """``pareto.json`` (every scored cell, and the indices of each cost's front) and its plot."""
    fronts = {key: pareto_front([(c[key], c["psnr"]) for c in scored])
              for key in ("params", "mult_adds", "latency_ms") if key in scored[0]}
    how = "after proxy training" if proxy else "with the final shared weights"
    out = {"psnr": f"Y-PSNR on the reward crops {how}", "budget": budget,
           "front": fronts, "cells": scored}
    checkpoint.write_json(run_dir / "pareto.json", out, indent=1)
    if not plot:
        return fronts
    (run_dir / "plots").mkdir(exist_ok=True)
    pareto_figure(scored, fronts, budget, run_dir.name).savefig(run_dir / "plots" / "pareto.png")
    return fronts
