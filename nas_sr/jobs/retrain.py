"""The retrain job: a found cell (``genotype=PATH|NAME``) or a baseline, trained standalone.

The model comes from the config (``model=``, ``archs.*``, ``genotype=``); the training
itself, its checkpoints and its resume are ``nas_sr.train.trainer``'s.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from nas_sr.archs.lighten import LIGHTENINGS
from nas_sr.deploy.pt2 import read_model_file
from nas_sr.errors import ConfigError
from nas_sr.train import trainer
from search_spaces.genotypes import GenotypeError, find_genotype

log = logging.getLogger(__name__)


def model_spec(cfg: DictConfig) -> dict[str, Any]:
    """The arch spec of ``cfg.model``: ``archs.<model>``; for the cell, ``train.cell`` on top.

    ``train.cell`` exists because ``archs.cell`` also sizes the search's supernet, while
    a retrained cell network is usually wider or deeper than the one searched. A lightened
    model given as ``init_from`` (``nas-sr compress``) is trained as it is, masks included.
    """
    if cfg.init_from and (arch := lightened_arch(cfg.init_from)):
        if int(arch["scale"]) != int(cfg.scale):
            raise ConfigError(f"init_from={cfg.init_from} is a x{arch['scale']} model; "
                              f"pass scale={arch['scale']}")
        return arch
    name = cfg.model
    if name not in cfg.archs:
        raise ConfigError(f"model={name!r} is unknown; choose one of {', '.join(cfg.archs)}")
    own = OmegaConf.to_container(cfg.archs[name])
    spec = {"name": name, "scale": int(cfg.scale), **{k: v for k, v in own.items()
                                                      if v is not None}}
    if name == "cell":
        spec.update({k: v for k, v in cfg.train.cell.items() if v is not None})
        if not cfg.genotype:  # nas_sr.options names the choices; this is the init_from= case
            why = f" (init_from={cfg.init_from} brings no arch: only nas-sr compress writes " \
                "one)" if cfg.init_from else ""
            raise GenotypeError(f"model=cell needs genotype=PATH|NAME{why}")
        genotype = find_genotype(cfg.genotype)
        spec.update(nodes=genotype.num_nodes, genotype=genotype.to_dict())  # it decides
        if genotype.macro:  # a searched size is part of the architecture
            macro = dict(zip(("channels", "cells"), genotype.macro, strict=True))
            asked = {k: cfg.train.cell[k] for k in macro if cfg.train.cell[k] is not None}
            if any(v != macro[k] for k, v in asked.items()):
                log.warning("train.cell %s is not used: the genotype's macro, %s channels x "
                            "%s cells, is searched", asked, *genotype.macro)
            spec.update(channels=genotype.macro[0], cells=genotype.macro[1])
    return spec


def lightened_arch(path: str | Path) -> dict[str, Any] | None:
    """The arch spec of checkpoint or ``model.pt2`` ``path`` if ``nas-sr compress`` made
    it, else None."""
    state = read_model_file(path)
    arch = state.get("arch") if isinstance(state, dict) else None
    return arch if isinstance(arch, dict) and any(k in arch for k in LIGHTENINGS) else None


def run(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Train (or resume) in ``run_dir``; every process returns the summary rank 0 writes."""
    return trainer.train(cfg, run_dir, lambda: model_spec(cfg))
