"""The rank job: does a search's shared-weight score order cells as retraining does?

``nas-sr rank run=SEARCH_RUN`` draws cells (uniform draws spread evenly over the params
range, plus draws of the run's final policy), scores each on the run's final shared
weights and final-selection crops, retrains each standalone with one short fixed recipe
(``rank.recipe``, on the run's data, validated on the hold-out images that never steered
the search), and reports Kendall tau and Spearman rho between the two with bootstrap
intervals, as ``rank.json`` and ``rank.png`` in its run folder.

Retrained cells live in ``rank.cells_dir``, one folder per (cell, recipe, seed, data,
width): the uniform draws depend on ``rank.seed`` alone, so ranking several searches
retrains them once. With several ``rank.retrain_seeds`` a cell's retrained PSNR is the
mean over them, and the job reports how well two seeds' retrains rank the cells alike:
the ceiling of any tau measured against a single retrain. The retrains run as
``rank.jobs`` parallel ``nas-sr retrain`` processes of one thread each; a killed rank
job re-run skips finished cells and resumes the others. ``rank.retrained_from`` takes the
retrained PSNRs of cells an earlier rank job measured (its rank.json), so a new score can
be ranked against them without retraining.

With ``rank.proxy_seeds`` every cell is also scored by the run's low-fidelity proxy
(``search.proxy``, changed through ``rank.run_overrides``) once per seed, and rank.json
says how the proxy ranks the cells against retraining, and against itself under
another seed (its reliability: a proxy whose seeds disagree ranks nothing).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from nas_sr.checkpoint import write_json
from nas_sr.errors import ConfigError
from nas_sr.plots.tradeoff import rank_figure
from nas_sr.progress import progress_bar
from nas_sr.search.rank import (
    agreements,
    cell_cost,
    collect_retrains,
    draw_cells,
    earlier_retrains,
    plan_retrains,
    proxy_ranking,
    retrain_all,
)
from nas_sr.search.supernet import load_search_run


def run(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    r = cfg.rank
    if not cfg.run:
        raise ConfigError("rank needs run=SEARCH_RUN_DIR (a finished search's folder)")
    search_dir = Path(cfg.run).expanduser()
    search = load_search_run(search_dir, list(r.run_overrides), cfg.threads, cfg.logger.progress)
    run_cfg = search.cfg
    seeds = list(r.retrain_seeds)
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"rank.retrain_seeds must be distinct seeds, got {seeds}")
    recipe = list(r.recipe)
    earlier = earlier_retrains(r.retrained_from, recipe, seeds, r.judge)
    cost = cell_cost(run_cfg, r)
    jobs, rows = [], []
    for g, source in progress_bar(draw_cells(search, r, cost), desc="scoring on shared weights",
                                  disable=not cfg.logger.progress):
        row = {"genotype": g.to_dict()["nodes"], "genotype_str": str(g), "source": source,
               **cost(g), "shared_psnr": search.score(g)}
        rows.append(row)
        known = earlier.get(g)
        if known is not None:  # retrained by an earlier rank job: its figures stand
            row |= {k: known[k] for k in ("folders", "retrained_psnrs", "retrained_psnr")}
        else:
            jobs += plan_retrains(row, g, run_cfg, Path(r.cells_dir).expanduser(), recipe,
                                  seeds)
    failed = retrain_all(jobs, r.jobs, cfg.logger.progress)
    collect_retrains(rows, r.judge)
    done = [row for row in rows if "retrained_psnr" in row]
    if len(done) < 3:
        raise ConfigError(f"only {len(done)} of {len(rows)} cells retrained; "
                          f"failures: {list(failed.values())[:3]}")
    result = {
        "run": str(search_dir), "controller": run_cfg.controller.name, "recipe": recipe,
        "retrain_seeds": seeds, "judge": r.judge, **agreements(done, r, seeds),
        "proxy": proxy_ranking(search, rows, list(r.proxy_seeds), r.bootstrap, r.seed,
                               cfg.logger.progress, Path(r.cells_dir).expanduser())
        if r.proxy_seeds else None,
        "failed": {str(k): v for k, v in failed.items()},
        "cells": rows,
    }
    write_json(run_dir / "rank.json", result)
    figures(done, result, search_dir.name, len(r.proxy_seeds), run_dir)
    report(result, search_dir.name, len(done), seeds, run_dir)
    return result


def figures(done: list[dict[str, Any]], result: dict[str, Any], name: str, proxy_seeds: int,
            run_dir: Path) -> None:
    rank_figure(done, result, title=name).savefig(run_dir / "rank.png")
    if result["proxy"]:
        rank_figure(done, result["proxy"], f"{name}, proxy", "proxy_psnr",
                    f"proxy PSNR on the final crops, mean of {proxy_seeds} seeds (dB)"
                    ).savefig(run_dir / "rank_proxy.png")


def report(result: dict[str, Any], name: str, cells: int, seeds: list[int],
           run_dir: Path) -> None:
    """The job's figures in a few lines."""
    print(f"{name}: Kendall tau {result['kendall_tau']:.3f} "
          f"[{result['kendall_tau_ci'][0]:.2f}, {result['kendall_tau_ci'][1]:.2f}], "
          f"Spearman rho {result['spearman_rho']:.3f} over {cells} cells; "
          f"{run_dir / 'rank.json'}")
    if result["retrain_seed_agreement"]:
        agree = result["retrain_seed_agreement"]
        print(f"retrains of seeds {seeds[0]} and {seeds[1]} agree with Kendall tau "
              f"{agree['kendall_tau']:.3f} [{agree['kendall_tau_ci'][0]:.2f}, "
              f"{agree['kendall_tau_ci'][1]:.2f}]")
        v = result["variance"]
        print(f"retrained PSNR: cells differ by {v['between_std']:.3f} dB (std), one cell's "
              f"seeds by {v['within_std']:.3f} dB; a perfect ranker of {v['pool']} cells "
              f"would gain ~{v['oracle_gain']:.2f} dB over a random pick")
    if result["proxy"]:
        p = result["proxy"]
        agree = (f", its seeds agree with tau {p['seed_agreement']['kendall_tau']:.3f}"
                 if p["seed_agreement"] else "")
        pace = (f"{p['seconds_per_run']:.1f} s a run" if p["seconds_per_run"]
                else "every run kept from before")
        print(f"proxy ({pace}): Kendall tau {p['kendall_tau']:.3f} "
              f"[{p['kendall_tau_ci'][0]:.2f}, {p['kendall_tau_ci'][1]:.2f}] against "
              f"retraining{agree}")
