"""The search job: train shared weights, train the controller on their rewards, pick a cell.

An epoch trains the shared weights (one child per minibatch), then scores
``controller.steps_per_epoch`` cells on the fixed reward crops. For the first
``search.warmup`` of the epochs the controller only watches: children are drawn by the
fair sampler and the scored cells uniformly, with no policy update (TuNAS waits 25%), so
no op is favoured before the shared weights can tell ops apart. After it, a
``search.policy_mix`` share of the training children come from the policy and the rest
from the fair sampler, and the policy steps on batches of ``samples_per_update``
rewards. A cell's reward is its PSNR less the over-budget penalty of
``search_spaces.cost``. Every scored cell joins a pool; the final choice re-scores the
pool on the final weights and takes the best cell within budget (``select``).

With ``search.reward=proxy`` no supernet trains: a cell's PSNR is that of a short
standalone training of its own (``nas_sr.search.proxy``), and the ``final_top`` are trained
again under ``proxy.final_seeds`` before the choice. ``search.final_proxy`` keeps the
shared-weight reward and scores only the ``final_top`` candidates by proxy training.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from nas_sr import checkpoint
from nas_sr.plots.search import log_to_wandb, plot_run
from nas_sr.search.loop import Search, write_pareto
from nas_sr.search.supernet import (
    CHECKPOINT,
)
from search_spaces.genotypes import space_size
from search_spaces.network import CellSRNet, count_params


def run(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Run (or resume) a search in ``run_dir``; returns the summary it writes."""
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt = run_dir / CHECKPOINT
    state = checkpoint.load(ckpt) if ckpt.is_file() else None  # a damaged one fails here, fast
    search = Search(cfg, run_dir)
    resumed = state is not None
    if resumed:
        search.load_state_dict(state)
        print(f"resuming {run_dir} after epoch {search.epoch}, "
              f"controller step {search.controller_step}")
    sizes = space_size(cfg.archs.cell.nodes)
    print(f"search space: {sizes['decision_sequences']:,} decision sequences per cell "
          f"({sizes['distinct_cells']:,} distinct cells; the paper's formula gives "
          f"{sizes['paper_formula']:.3g})")
    log = search.open_log(cfg, resumed)
    try:
        if not resumed:
            log.log("start", space=sizes, params_supernet=count_params(search.supernet),
                    device=str(search.device))
        while search.epoch < cfg.search.epochs:
            t0 = time.perf_counter()
            train = search.train_shared()
            t1 = time.perf_counter()
            rewards = search.train_controller(log)
            t2 = time.perf_counter()
            search.count_epoch(t2 - t0)
            log.log("epoch", epoch=search.epoch, **train,
                    reward_mean=sum(rewards) / max(1, len(rewards)),
                    shared_time_s=t1 - t0, controller_time_s=t2 - t1)
            search.save(log, CHECKPOINT)
            loss = f"loss {train['loss']:.4f}, " if train else ""
            print(f"epoch {search.epoch}/{cfg.search.epochs}: {loss}"
                  f"mean reward {sum(rewards) / max(1, len(rewards)):.2f} dB, "
                  f"{t2 - t0:.1f}s")

        best, best_psnr, scored = search.select()
        if search.proxy:  # the final candidates' proxy runs: kept for a re-selection
            search.save(log, CHECKPOINT)
        write_pareto(scored, search.budget, run_dir, cfg.logger.plots, search.proxy_reward)
        a = cfg.archs.cell
        net = CellSRNet(cfg.scale, a.channels, a.cells, a.nodes, best)
        summary = {
            "genotype": best.to_dict(),
            "genotype_str": str(best),
            "val_psnr": best_psnr,
            "params": count_params(net),
            "cost_at_retrain_width": {"channels": search.cost_width[0],
                                      "cells": search.cost_width[1], **search.cost(best)},
            "budget": search.budget,
            "search_time_s": search.elapsed,
            "epochs": search.epoch,
            "controller_steps": search.controller_step,
            "controller": cfg.controller.name,
            "scale": cfg.scale,
            "space_size": sizes,
            "cells_scored": len(scored),
            "candidates": [c for c in scored if "final_psnr" in c],
        }
        checkpoint.write_json(run_dir / "genotype.json", {
            **best.to_dict(), "scale": cfg.scale, "arch": OmegaConf.to_container(cfg.archs.cell)})
        checkpoint.write_json(run_dir / "summary.json", summary)
        log.log("final", val_psnr=best_psnr, genotype=best.to_dict()["nodes"],
                params=summary["params"], search_time_s=search.elapsed)
        log.flush()
        if cfg.logger.plots:
            plots = plot_run(run_dir)
            if log.wandb is not None:
                log_to_wandb(log.wandb, plots)
        how = "proxy training" if search.proxy else "shared weights"
        # measured on the crops that chose it: a selection score, not a held-out one
        print(f"best cell: {best}\n  selection PSNR {best_psnr:.2f} dB ({how}, final crops), "
              f"{summary['params']:,} params standalone; written to {run_dir}")
        return summary
    finally:
        log.close()
