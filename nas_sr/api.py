"""The toolkit from Python: any job run as the command line runs it, its results returned.

    import nas_sr
    found = nas_sr.run("search", "preset=smoke", seed=1)
    trained = nas_sr.run("retrain", "preset=smoke", genotype=found.run_dir / "genotype.json")
    sr = nas_sr.upscale_image("searched_x2", photo)     # an (H, W, 3) uint8 array

``run`` composes the job's config from ``experiments/`` with the overrides (``"key=value"``
strings, or keyword arguments for top-level keys; dotted keys go in ``options``), checks it
as the CLI does, owns a run folder (``run_dir``, else ``runs/JOB/DATE_TIME``) and returns
the job's summary. New ops register in ``search_spaces.operations.register``; new
strategies in ``controllers.KINDS``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra import compose, initialize_config_module
from omegaconf import DictConfig

from nas_sr.cli import JOBS, run_job
from nas_sr.data.images import to_tensor, to_uint8
from nas_sr.deploy.predictor import load_predictor, super_resolve
from nas_sr.errors import ConfigError


@dataclass(frozen=True)
class Result:
    """What a job returned (its ``summary.json`` figures, for most jobs) and where it ran."""

    job: str
    run_dir: Path
    summary: Any
    config: DictConfig


def _override(key: str, value: Any) -> str:
    if isinstance(value, bool):
        value = str(value).lower()
    elif value is None:
        value = "null"
    elif isinstance(value, (list, tuple)):
        value = "[" + ",".join(str(v) for v in value) + "]"
    return f"{key}={value}"


def config(job: str, *overrides: str, options: dict[str, Any] | None = None,
           **top: Any) -> DictConfig:
    """The composed config of ``job``, as ``nas-sr JOB --cfg job`` prints it."""
    if job not in JOBS:
        raise ConfigError(f"unknown job {job!r}; jobs: {', '.join(JOBS)}")
    items = [*overrides, *(_override(k, v) for k, v in {**(options or {}), **top}.items())]
    with initialize_config_module(config_module="experiments", version_base="1.3"):
        return compose(job, overrides=items)


def run(job: str, *overrides: str, run_dir: str | Path | None = None,
        options: dict[str, Any] | None = None, **top: Any) -> Result:
    """Run ``job`` with these overrides in ``run_dir``; see the module docstring."""
    cfg = config(job, *overrides, options=options, **top)
    folder = Path(run_dir) if run_dir else Path("runs") / job / time.strftime("%Y-%m-%d_%H-%M-%S")
    summary = run_job(job, cfg, folder)
    return Result(job, folder, summary, cfg)


def upscale_image(model: str | Path, image: np.ndarray, device: str = "cpu",
                  **options: Any) -> np.ndarray:
    """``image`` (H, W, 3) uint8 RGB super-resolved by ``model`` (a file, a shipped model's
    name or bicubic with ``scale=``); ``options`` go to the predictor (``tile``,
    ``ensemble``, ``amp``), as upscale's do."""
    scale = options.pop("scale", None)
    predictor = load_predictor(str(model), scale, device, runtime="auto")
    with torch.inference_mode():
        lq = to_tensor(np.array(image, dtype=np.uint8), device)[None]  # a copy torch may own
        sr = super_resolve(predictor, lq, **options)
    return to_uint8(sr[0].cpu())
