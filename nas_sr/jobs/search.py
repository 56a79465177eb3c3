"""The search job: ``nas-sr search`` runs (or resumes) a cell search in its run folder.

The search itself (shared weights, controller, the choice within budget) is
``nas_sr.search.loop``; it writes ``genotype.json``, ``summary.json``, ``pareto.json``,
``metrics.jsonl`` and ``plots/`` beside its ``checkpoint.pt``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from nas_sr import checkpoint
from nas_sr.search.loop import Search
from nas_sr.search.sizes import pick_sizes
from nas_sr.search.supernet import CHECKPOINT, space_macros, space_ops
from nas_sr.search.trial_search import run_trial_search
from search_spaces.genotypes import deepest_first, space_size
from search_spaces.network import count_params


def space_line(sizes: dict[str, Any], macros: int = 0) -> str:
    unit = f"per network ({macros} sizes x the cell)" if macros else "per cell"
    return (f"search space: {sizes['decision_sequences']:,} decision sequences {unit} "
            f"({sizes['distinct_cells']:,} distinct {'networks' if macros else 'cells'}; the "
            f"paper's formula gives "
            f"{sizes['paper_formula']:.3g})")


def settle(cfg: DictConfig) -> None:
    """Give each width of ``space.macro_widths`` its depth for the budget, in
    ``space.macro`` (deepest first), so the run's config.yaml holds the sizes it searches."""
    widths = cfg.space.get("macro_widths")
    if not widths:
        return
    picks = pick_sizes(cfg, list(widths))
    print("space.macro_widths, a depth for each width:\n  " + "\n  ".join(map(str, picks)))
    cfg.space.macro = [list(m) for m in deepest_first([*space_macros(cfg),
                                                       *(p.macro for p in picks)])]
    cfg.space.macro_widths = []


def run(cfg: DictConfig, run_dir: Path) -> dict[str, Any] | None:
    """Run (or resume) a search in ``run_dir``; returns the summary it writes (None for a
    worker that only joined a study: ``search.trials.join``)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    macros = space_macros(cfg)
    sizes = space_size(cfg.archs.cell.nodes, space_ops(cfg), macros)
    if cfg.search.get("trials") and cfg.search.trials.count:  # proxy trials on Optuna
        print(space_line(sizes, len(macros)))
        return run_trial_search(cfg, run_dir, sizes)
    ckpt = run_dir / CHECKPOINT
    state = checkpoint.load(ckpt) if ckpt.is_file() else None  # a damaged one fails here, fast
    search = Search(cfg, run_dir)
    resumed = state is not None
    if resumed:
        search.load_state_dict(state)
        print(f"resuming {run_dir} after epoch {search.epoch}, "
              f"controller step {search.controller_step}")
    print(space_line(sizes, len(macros)))
    log = search.open_log(cfg, resumed)
    try:
        if not resumed:
            log.log("start", space=sizes, params_supernet=count_params(search.supernet),
                    device=str(search.device))
        while search.epoch < cfg.search.epochs:
            search.run_epoch(log)
        return search.finish(log, sizes)
    finally:
        log.close()
