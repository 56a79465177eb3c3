"""The plot job: ``nas-sr plot RUN_DIR ...`` draws each search run's figures into its
``plots/`` and overlays their rewards by controller (``nas_sr.plots.search``); training runs
(retrain) among them, and curves saved before, get their learning curves overlaid
(``nas_sr.plots.training``), each run folder's curve also written as ``curve_<run>.json``
beside the figure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from nas_sr.checkpoint import write_json
from nas_sr.plots.search import PlotError, load_run, log_to_wandb, overlay_figure, run_figures, save
from nas_sr.plots.training import (
    CURVE_PREFIX,
    is_training_run,
    load_training_run,
    training_curves_figure,
)


def run(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Plot every run in ``cfg.runs`` into its own ``plots/`` and overlay them."""
    if not cfg.runs:
        raise PlotError("no run folders given; usage: nas-sr plot RUN_DIR [RUN_DIR ...]")
    # every folder is read before anything is drawn, so a wrong one costs nothing
    trained = [load_training_run(r) for r in cfg.runs if is_training_run(r)]
    runs = [load_run(r) for r in cfg.runs if not is_training_run(r)]
    written: dict[Path, list[Path]] = {}
    for r in runs:
        written[r.run_dir] = save(run_figures(r, cfg.smooth, cfg.op_window), r.run_dir / "plots")
        print(f"{r.run_dir}: {len(written[r.run_dir])} plots in {r.run_dir / 'plots'}")
    with_steps = [r for r in runs if r.steps]
    overlay_dir = Path(cfg.overlay_dir).expanduser() if cfg.overlay_dir else run_dir
    overlay = save({"overlay_reward": overlay_figure(with_steps, cfg.smooth, cfg.band)},
                   overlay_dir) if with_steps else []
    if overlay:
        print(f"overlay of {len(with_steps)} runs: {overlay[0]}")
    if trained:
        overlay += save({"overlay_training": training_curves_figure(trained)}, overlay_dir)
        print(f"learning curves of {len(trained)} training runs: {overlay[-1]}")
    # the figure's data, per epoch, for later tables (a curve given as one is saved already)
    from_folders = [t for t in trained if t.path.is_dir()]
    curves = [overlay_dir / f"{CURVE_PREFIX}{t.name}.json" for t in from_folders]
    for t, path in zip(from_folders, curves, strict=True):
        write_json(path, t.curve(), indent=1)
    if cfg.logger.wandb.enabled:
        import wandb

        w = cfg.logger.wandb
        with wandb.init(project=w.project, mode=w.mode, dir=str(run_dir), name=run_dir.name,
                        config=OmegaConf.to_container(cfg)) as wandb_run:
            for folder, paths in written.items():
                log_to_wandb(wandb_run, paths, prefix=f"plots/{folder.name}")
            log_to_wandb(wandb_run, overlay)
    return {"runs": {str(k): [str(p) for p in v] for k, v in written.items()},
            "overlay": [str(p) for p in overlay], "curves": [str(p) for p in curves]}
