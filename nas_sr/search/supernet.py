"""A search's shared weights: the supernet, its controller, the fixed crops cells are scored
on, and a search run rebuilt from its folder.

The search job trains them; rank and report read a finished (or paused) run back to score
more cells on its final weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

from controllers import Controller, build_controller
from nas_sr import checkpoint
from nas_sr.archs.build import check_scale
from nas_sr.data.cache import cache_path, open_store
from nas_sr.data.crops import fixed_crops, min_image_size
from nas_sr.data.pairs import rescale_factors
from nas_sr.data.sources import resolve_sources
from nas_sr.device import memory_format, resolve_device, set_threads
from nas_sr.errors import ConfigError
from nas_sr.metrics import Pairs, crop_psnrs
from search_spaces.genotypes import Genotype, Macro
from search_spaces.network import CellSRNet
from search_spaces.operations import OP_NAMES

CHECKPOINT = "checkpoint.pt"  # a search run's whole state, written after every epoch
# controller.* keys the search reads itself; the rest configure the controller
SEARCH_KEYS = ("name", "steps_per_epoch", "samples_per_update", "rebase")
SCORE_BATCH = 64  # crops per forward pass when a cell is scored


def space_ops(cfg: DictConfig) -> tuple[str, ...]:
    """The ops of the search's space (``space=``); a run saved before spaces were a choice
    searched the default one."""
    space = cfg.get("space")
    return tuple(space.ops) if space is not None else OP_NAMES


def space_macros(cfg: DictConfig) -> tuple[Macro, ...]:
    """The space's (channels, cells) choices; () where the network's size is fixed."""
    space = cfg.get("space")
    return tuple(tuple(int(x) for x in m) for m in (space.get("macro") or ())
                 ) if space is not None else ()


def build_supernet(cfg: DictConfig) -> CellSRNet:
    """The weight-shared supernet over the space's ops, sized by ``archs.cell``."""
    check_scale(cfg.scale)
    a = cfg.archs.cell
    sup = cfg.search.get("supernet") or {}  # a run from before the options: as it ran
    return CellSRNet(cfg.scale, a.channels, a.cells, a.nodes, ops=space_ops(cfg),
                     share=sup.get("share", "slot"), norm=sup.get("norm", False))


def build_search_controller(cfg: DictConfig) -> Controller:
    """The controller ``cfg.controller`` names, with its own settings."""
    ctrl = OmegaConf.to_container(cfg.controller)
    kwargs = {k: v for k, v in ctrl.items() if k not in SEARCH_KEYS}
    macros = space_macros(cfg)  # only the trial strategies take them (nas_sr.options)
    return build_controller(ctrl["name"], cfg.archs.cell.nodes, ops=space_ops(cfg),
                            **kwargs, **({"macros": macros} if macros else {}))


def train_store(cfg: DictConfig) -> Any:
    """A search's training images (the supernet's crops, and a proxy's)."""
    d = cfg.data
    return open_store(resolve_sources(d, cfg.scale).train, cfg.scale,
                      min_image_size(d, d.patch_size, cfg.scale), cache_path(d, cfg.scale, "train"),
                      "training images", cfg.logger.progress, rescale_factors(d))


def reward_crops(cfg: DictConfig, device: torch.device, fmt: torch.memory_format
                 ) -> tuple[Pairs, Pairs]:
    """The reward crops and the final-selection crops: fixed crops of the reward images."""
    d = cfg.data
    store = open_store(resolve_sources(d, cfg.scale).reward, cfg.scale,
                       min_image_size(d, d.patch_size, cfg.scale), cache_path(d, cfg.scale, "val"),
                       "validation images", cfg.logger.progress)

    def crops(count: int, seed: int) -> Pairs:
        lq, gt = fixed_crops(store, cfg.scale, d.patch_size, count, seed)
        return lq.to(device, memory_format=fmt), gt.to(device, memory_format=fmt)

    s = cfg.search if "val_crops" not in d else {  # a search saved before they moved
        "reward_crops": d.val_crops, "final_crops": d.final_crops}
    return crops(s["reward_crops"], seed=1), crops(s["final_crops"], seed=2)


def score(net: CellSRNet, genotype: Genotype, crops: Pairs, scale: int) -> float:
    """Mean Y-PSNR of ``genotype`` through the shared weights on fixed crops: its reward."""
    return float(crop_psnrs(partial(net, genotype=genotype), crops, scale, SCORE_BATCH).mean())


def run_config(search_dir: Path, overrides: Sequence[str] = ()) -> DictConfig:
    """A search run's saved config over today's defaults (a run from an older release lacks
    the newer keys), then ``overrides`` (e.g. an older release's behaviour)."""
    saved = OmegaConf.load(search_dir / "config.yaml")
    groups = [f"controller={saved.controller.name}", f"data={saved.data.name}"]
    if GlobalHydra.instance().is_initialized():  # inside a nas-sr job
        base = compose("search", overrides=groups)
    else:  # called as a function (report, tests, notebooks)
        with initialize_config_module(config_module="experiments", version_base="1.3"):
            base = compose("search", overrides=groups)
    OmegaConf.set_struct(base, False)
    return OmegaConf.merge(base, saved, OmegaConf.from_dotlist(list(overrides)))


@dataclass
class SearchRun:
    """A search run's final state: its config, shared weights, policy and final crops."""

    cfg: DictConfig
    supernet: CellSRNet
    controller: Controller
    final: Pairs
    fmt: torch.memory_format  # the layout its supernet and crops are kept in

    def score(self, genotype: Genotype) -> float:
        """``genotype``'s PSNR on the final shared weights and final-selection crops."""
        return score(self.supernet, genotype, self.final, self.cfg.scale)


def load_search_run(search_dir: Path, overrides: Sequence[str] = (), threads: int | None = None,
                    progress: bool = False) -> SearchRun:
    """The search run in ``search_dir`` as its last checkpoint left it."""
    if not (search_dir / CHECKPOINT).is_file() or not (search_dir / "config.yaml").is_file():
        raise ConfigError(f"{search_dir}: not a search run folder (no {CHECKPOINT} and "
                          "config.yaml); name the folder of a search that ran an epoch")
    cfg = run_config(search_dir, overrides)
    cfg.threads, cfg.logger.progress = threads, progress
    set_threads(threads)
    state = checkpoint.load(search_dir / CHECKPOINT)
    device, fmt = resolve_device(cfg.device), memory_format(cfg.get("channels_last", True))
    supernet = build_supernet(cfg).to(device, memory_format=fmt)
    supernet.load_state_dict(state["supernet"])
    controller = build_search_controller(cfg)
    controller.load_checkpoint_state(state["controller"])
    _, final = reward_crops(cfg, device, fmt)
    return SearchRun(cfg, supernet.eval(), controller, final, fmt)
