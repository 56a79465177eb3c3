"""Cells ranked against retraining: uniform draws spread over a cost range, their
retrains as parallel ``nas-sr retrain`` processes (each in a folder keyed by what it
trains, so a rerun skips finished ones), and the rank agreements of the scores."""

from __future__ import annotations

import functools
import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from controllers import RandomController
from nas_sr.checkpoint import write_json
from nas_sr.errors import ConfigError
from nas_sr.progress import progress_bar
from nas_sr.search.latency import default_table_path, load_table, predict_latency
from nas_sr.search.proxy import ProxyReward, ProxySetting
from nas_sr.search.stats import rank_correlation, variance_components
from nas_sr.search.supernet import SearchRun, space_ops, train_store
from search_spaces.cost import genotype_cost
from search_spaces.genotypes import Genotype
from search_spaces.operations import OP_NAMES


def spread_draws(nodes: int, count: int, pool: int, seed: int, cost: Any,
                 bands: dict[str, Sequence[float]] | None = None,
                 ops: tuple[str, ...] = OP_NAMES) -> list[Genotype]:
    """``count`` distinct uniform cells of the space of ``ops`` at evenly spaced params
    quantiles of ``pool`` draws, of those whose ``cost(g)[key]`` lies in each band
    (``{key: [low, high]}``, e.g. params or latency_ms) when bands are given."""
    rng = torch.Generator().manual_seed(seed)
    uniform = RandomController(nodes, ops=ops)
    drawn = list(dict.fromkeys(uniform.sample(rng).genotype for _ in range(pool)))
    for key, (low, high) in (bands or {}).items():
        drawn = [g for g in drawn if low <= cost(g)[key] <= high]
        if len(drawn) < count:
            option = "latency_range" if key == "latency_ms" else f"{key}_range"
            raise ConfigError(f"only {len(drawn)} of {pool} uniform draws have {key} "
                              f"{low:,.6g}-{high:,.6g}; widen rank.{option} or raise rank.pool")
    drawn.sort(key=lambda g: (cost(g)["params"], g.to_decisions(ops)))
    picks = np.unique(np.linspace(0, len(drawn) - 1, count).round().astype(int))
    return [drawn[i] for i in picks]


def data_overrides(data: DictConfig) -> list[str]:
    """The command-line overrides that give a retrain the search run's data."""
    keys = {"builtin": (), "folder": ("train_dir", "val_dir", "val_fraction"),
            "div2k": ("root",)}[data.name]
    return [f"data={data.name}"] + [f"data.{k}={data[k] if data[k] is not None else 'null'}"
                                    for k in keys]


def retrain_command(genotype_file: Path, run_dir: Path, run_cfg: DictConfig,
                    recipe: list[str]) -> list[str]:
    a = run_cfg.archs.cell
    return [sys.executable, "-m", "nas_sr.cli", "retrain", f"genotype={genotype_file}",
            f"scale={run_cfg.scale}", f"archs.cell.channels={a.channels}",
            f"archs.cell.cells={a.cells}", *data_overrides(run_cfg.data), *recipe,
            "threads=1", "logger.progress=false", f"hydra.run.dir={run_dir}"]


def cell_dir(root: Path, genotype: Genotype, command_key: list[str]) -> Path:
    # a cell of the default space is keyed by its decisions, as rank jobs always have, so
    # their retrains are found again; any other by its nodes
    cell = (genotype.to_decisions() if set(genotype.ops()) <= set(OP_NAMES)
            else genotype.to_dict()["nodes"])
    key = json.dumps([cell, command_key])
    return root / hashlib.sha1(key.encode()).hexdigest()[:12]


def seeded_recipe(recipe: list[str], seed: int) -> list[str]:
    """The recipe retrained with ``seed``; seed 0 is the recipe as written, so its cell
    folders are the ones rank jobs made before ``rank.retrain_seeds`` existed."""
    return list(recipe) if seed == 0 else [*recipe, f"seed={seed}"]


def retrain_all(jobs: list[tuple[Path, list[str]]], parallel: int, progress: bool
                ) -> dict[Path, str]:
    """Run the retrains not yet finished; returns the error of each that failed."""
    todo = [(d, cmd) for d, cmd in jobs if not (d / "summary.json").is_file()]
    failed: dict[Path, str] = {}

    def one(folder: Path, cmd: list[str]) -> None:
        with open(folder / "retrain.log", "a") as log:
            done = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT)
        if done.returncode:
            failed[folder] = f"exit {done.returncode}; see {folder / 'retrain.log'}"

    with ThreadPoolExecutor(max(1, parallel)) as pool:
        futures = [pool.submit(one, d, cmd) for d, cmd in todo]
        for _ in progress_bar(as_completed(futures), total=len(futures), desc="retraining cells",
                              disable=not progress):
            pass
    return failed


def early_stop_agreement(done: list[dict[str, Any]], resamples: int, seed: int
                         ) -> list[dict[str, Any]]:
    """How well seed 0's validation PSNR after each epoch ranks the cells as seed 1's
    finished retrain does: how short a retrain could be and still judge cells (a
    low-fidelity reward). The judge is another seed, so no epoch shares its noise."""
    curves = []
    for c in done:
        log = Path(c["folders"][0]) / "metrics.jsonl"
        records = [json.loads(line) for line in log.read_text().splitlines()]
        curves.append([e for e in records if e["kind"] == "epoch"])
    epochs = min(len(curve) for curve in curves)
    judge = [c["retrained_psnrs"][1] for c in done]
    return [{"epoch": k + 1, "steps": curves[0][k]["steps"],
             **rank_correlation([curve[k]["val_psnr"] for curve in curves], judge,
                                resamples, seed)}
            for k in range(epochs)]


def earlier_retrains(path: str | None, recipe: list[str], seeds: list[int], judge: str
                     ) -> dict[Genotype, dict[str, Any]]:
    """The retrained cells of an earlier rank.json, by genotype; it must have used the same
    recipe, seeds and judge, or its PSNRs would not be comparable."""
    if not path:
        return {}
    earlier = json.loads(Path(path).expanduser().read_text())
    theirs = (earlier.get("recipe"), earlier.get("retrain_seeds"), earlier.get("judge", "best"))
    if theirs != (recipe, seeds, judge):
        raise ConfigError(f"rank.retrained_from={path}: its recipe, seeds and judge {theirs} "
                          f"are not this job's {(recipe, seeds, judge)}")
    return {Genotype.from_dict({"nodes": c["genotype"]}): c
            for c in earlier["cells"] if "retrained_psnrs" in c}


def proxy_ranking(search: SearchRun, rows: list[dict[str, Any]], seeds: list[int],
                  resamples: int, seed: int, progress: bool, root: Path) -> dict[str, Any]:
    """Score every row's cell with the run's proxy under each of ``seeds`` (on the final
    crops, as the shared-weight score); how it ranks them against retraining and itself.
    Each (cell, seed) score is kept under ``root/proxy/`` as it is made, so a rank job run
    again (after a kill, or with more cells) trains only what is missing."""
    c = search.cfg
    setting = ProxySetting.from_config(c)
    key = ["proxy", setting.record(), c.search.final_crops, data_overrides(c.data), c.scale]
    proxy = None
    started, trained = time.perf_counter(), 0
    for row in progress_bar(rows, desc="proxy training", disable=not progress):
        g = Genotype.from_dict({"nodes": row["genotype"]})
        row["proxy_psnrs"] = []
        for s in seeds:
            kept = cell_dir(root / "proxy", g, [*key, s]).with_suffix(".json")
            if not kept.is_file():
                if proxy is None:  # its training crops drawn once, when first needed
                    proxy = ProxyReward.for_search(c, train_store(c), {"final": search.final},
                                                   search.final[0].device, search.fmt)
                kept.parent.mkdir(parents=True, exist_ok=True)
                write_json(kept, {"genotype": row["genotype"], "seed": s,
                                  "psnr": proxy.psnr(g, [s], "final")})
                trained += 1
            row["proxy_psnrs"].append(json.loads(kept.read_text())["psnr"])
        row["proxy_psnr"] = float(np.mean(row["proxy_psnrs"]))
    done = [row for row in rows if "retrained_psnr" in row]
    scores = [row["proxy_psnrs"] for row in done]
    return {
        "setting": vars(ProxySetting.from_config(c)), "seeds": seeds,
        "seconds_per_run": (time.perf_counter() - started) / trained if trained else None,
        "runs_trained": trained,
        **rank_correlation([row["proxy_psnr"] for row in done],
                           [row["retrained_psnr"] for row in done], resamples, seed),
        "seed_agreement": rank_correlation([p[0] for p in scores], [p[1] for p in scores],
                                           resamples, seed) if len(seeds) > 1 else None,
        "variance": variance_components(scores, 1, resamples, seed)
        if len(seeds) > 1 else None,
    }


def cell_cost(run_cfg: DictConfig, r: DictConfig) -> Callable[[Genotype], dict[str, Any]]:
    """A cell's params and Mult-Adds at the run's width, and with ``rank.latency_range`` its
    latency predicted by the machine's latency table (``nas-sr profile``)."""
    a = run_cfg.archs.cell
    table = None
    if r.latency_range is not None:
        table = load_table(r.latency_table or default_table_path())

    def cost(g: Genotype) -> dict[str, Any]:
        out: dict[str, Any] = genotype_cost(g, a.channels, a.cells, run_cfg.scale)
        if table is not None:
            out["latency_ms"] = predict_latency(g, a.channels, a.cells, run_cfg.scale, table,
                                                r.latency_threads, r.latency_lr)
        return out

    return functools.cache(cost)


def load_cells(path: Path) -> list[Genotype]:
    """A JSON list of cells, each a genotype's nodes (what ``save_cells`` writes)."""
    try:
        return [Genotype.from_dict({"nodes": nodes}) for nodes in json.loads(path.read_text())]
    except (OSError, ValueError, TypeError) as e:
        raise ConfigError(f"rank.cells_file={path}: not a JSON list of cells ({e})") from None


def draw_cells(search: SearchRun, r: DictConfig, cost: Callable[[Genotype], dict[str, Any]]
               ) -> list[tuple[Genotype, str]]:
    """The cells to rank: ``r.cells`` uniform draws spread over the params range (within the
    bands of ``rank.params_range`` and ``rank.latency_range``, priced by ``cost``), then the
    distinct draws of the run's final policy that are not among them."""
    if r.get("cells_file"):  # the cells of an earlier draw, carried on elsewhere
        return [(g, "given") for g in load_cells(Path(r.cells_file).expanduser())]
    run_cfg = search.cfg
    a = run_cfg.archs.cell
    bands = {key: band for key, band in (("params", r.params_range),
                                         ("latency_ms", r.latency_range)) if band is not None}
    cells = [(g, "uniform") for g in spread_draws(a.nodes, r.cells, r.pool, r.seed, cost,
                                                  bands, space_ops(run_cfg))]
    rng = torch.Generator().manual_seed(r.seed + 1)
    with torch.no_grad():
        policy = [search.controller.sample(rng).genotype for _ in range(r.policy_cells)]
    seen = {g for g, _ in cells}
    return cells + [(g, "policy") for g in dict.fromkeys(policy) if g not in seen]


def plan_retrains(row: dict[str, Any], genotype: Genotype, run_cfg: DictConfig, root: Path,
                  recipe: list[str], seeds: list[int]) -> list[tuple[Path, list[str]]]:
    """One retrain a seed for ``row``'s cell, each in the folder keyed by what it trains
    (``row["folders"]``); a finished one is skipped when it runs."""
    a = run_cfg.archs.cell
    jobs = []
    for seed in seeds:
        seeded = seeded_recipe(recipe, seed)
        key = [seeded, data_overrides(run_cfg.data), run_cfg.scale, a.channels, a.cells]
        folder = cell_dir(root, genotype, key)
        folder.mkdir(parents=True, exist_ok=True)
        write_json(folder / "cell.json", genotype.to_dict())
        jobs.append((folder, retrain_command(folder / "cell.json", folder, run_cfg, seeded)))
    row["folders"] = [str(folder) for folder, _ in jobs]
    return jobs


JUDGES = {"last": "last_val_psnr", "best": "best_val_psnr"}


def collect_retrains(rows: list[dict[str, Any]], judge: str = "last") -> None:
    """Each row's retrained PSNRs (mean over seeds), once every seed's retrain is in:
    its last epoch's validation (``judge=last``: one measurement, no pick among epochs'
    noise) or its best (``best``, biased upward by the pick)."""
    for row in rows:
        if "retrained_psnr" in row:
            continue
        summaries = [Path(f) / "summary.json" for f in row["folders"]]
        if all(f.is_file() for f in summaries):
            row["retrained_psnrs"] = [_judged(json.loads(f.read_text()), judge, f)
                                      for f in summaries]
            row["retrained_psnr"] = float(np.mean(row["retrained_psnrs"]))


def _judged(summary: dict[str, Any], judge: str, path: Path) -> float:
    key = JUDGES[judge]
    if key not in summary:  # a retrain from before summaries held the last epoch's
        raise ConfigError(f"{path}: no {key}; retrain the cell again (delete its folder) or "
                          f"pass rank.judge=best")
    return summary[key]


def agreements(done: list[dict[str, Any]], r: DictConfig, seeds: list[int]) -> dict[str, Any]:
    """How the shared-weight score, params and a second retrain seed rank the retrained
    cells; with two seeds, the split of the spread into cell and seed (the most any search
    of this space can gain over a random pick, judged by this recipe)."""
    retrained = [c["retrained_psnr"] for c in done]
    two = len(seeds) > 1
    logs = all((Path(c["folders"][0]) / "metrics.jsonl").is_file() for c in done)
    return {
        **rank_correlation([c["shared_psnr"] for c in done], retrained, r.bootstrap, r.seed),
        "params_vs_retrained": rank_correlation([c["params"] for c in done], retrained,
                                                r.bootstrap, r.seed),
        "retrain_seed_agreement": rank_correlation(
            [c["retrained_psnrs"][0] for c in done], [c["retrained_psnrs"][1] for c in done],
            r.bootstrap, r.seed) if two else None,
        "variance": variance_components([c["retrained_psnrs"] for c in done],
                                        r.oracle_pool, r.bootstrap, r.seed) if two else None,
        # (needs every cell's training log: not when an earlier job's folders are gone)
        "early_stop_agreement": early_stop_agreement(done, r.bootstrap, r.seed)
        if two and logs else None,
    }
