"""The degrade job: a degraded copy of benchmark sets, to measure models on realistic inputs.

Each set's HR images are copied as they are to ``OUT/SET/X{s}/HR`` and each one's LR image,
made from the HR image mod-cropped to the scale by ``nas_sr.data.degradations`` (the ranges
in ``degradation``), written as PNG to ``OUT/SET/X{s}/LR`` under the same name, so
``nas-sr evaluate benchmark_root=OUT`` scores models on it as on the clean sets. Image i of
a set draws from the RNG of (seed, the set name's CRC-32, i): the same seed makes the same
set, and two sets never share a degradation sequence.
"""

from __future__ import annotations

import shutil
import zlib
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from PIL import Image

from nas_sr.archs.build import check_scale
from nas_sr.checkpoint import atomic_path, check_writable, write_json
from nas_sr.data.degradations import degrade, image_rng, settings
from nas_sr.data.images import load_image, mod_crop
from nas_sr.data.pairs import ImageSource
from nas_sr.data.sources import benchmark_sources
from nas_sr.errors import ConfigError
from nas_sr.progress import progress_bar


def check(cfg: DictConfig) -> tuple[Path, Path, list[str]]:
    """The source root, the output root and the set names, checked before any image is
    read (with the degradation settings)."""
    settings(cfg.degradation, "degradation")
    check_scale(cfg.scale)
    if not cfg.output:
        raise ConfigError("output= is required: the folder of the degraded sets, e.g. "
                          "nas-sr degrade output=../shared/datasets/benchmark_real")
    root, out = Path(cfg.benchmark_root).expanduser(), Path(cfg.output).expanduser()
    if out.resolve() == root.resolve():
        raise ConfigError(f"output={out} is benchmark_root itself; pick a new folder (the "
                          "clean LR images stay where they are)")
    names = [cfg.sets] if isinstance(cfg.sets, str) else list(cfg.sets)
    if not names:
        raise ConfigError("sets=[] names no benchmark set; e.g. sets=[Set5,Set14]")
    if not cfg.overwrite and (there := [n for n in names
                                        if (out / n / f"X{cfg.scale}").exists()]):
        raise ConfigError(f"{out / there[0] / f'X{cfg.scale}'} exists; pass overwrite=true "
                          "to replace it, or pick another output=")
    check_writable(out)
    return root, out, names


def write_set(sources: list[ImageSource], folder: Path, scale: int, cfg: DictConfig,
              key: int) -> None:
    """``folder``/HR (copies) and ``folder``/LR (degraded), replacing what was there."""
    config = settings(cfg.degradation, "degradation")
    shutil.rmtree(folder, ignore_errors=True)  # overwrite=true: no stale image left over
    (folder / "HR").mkdir(parents=True)
    (folder / "LR").mkdir()
    for i, source in enumerate(progress_bar(sources, desc=folder.parent.name, unit="img",
                                            leave=False, disable=not cfg.logger.progress)):
        gt = mod_crop(load_image(source.gt), scale)  # evaluate crops the HR image alike
        lq = degrade(gt, scale, config, image_rng(cfg.seed, key, i))
        shutil.copy2(source.gt, folder / "HR" / source.gt.name)
        with atomic_path(folder / "LR" / f"{source.gt.stem}.png") as tmp:
            Image.fromarray(lq).save(tmp, format="PNG")


def run(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    root, out, names = check(cfg)
    scale = int(cfg.scale)
    # every set's layout first: a typo in the last set fails before any image is written
    sources = {name: benchmark_sources(root, name, scale) for name in names}
    for name, set_sources in sources.items():
        write_set(set_sources, out / name / f"X{scale}", scale, cfg,
                  zlib.crc32(name.encode()))
    summary = {"benchmark_root": str(root), "output": str(out), "scale": scale,
               "seed": int(cfg.seed), "sets": {n: len(s) for n, s in sources.items()},
               "degradation": OmegaConf.to_container(cfg.degradation, resolve=True)}
    write_json(out / "degradation.json", summary)
    write_json(run_dir / "summary.json", summary)
    print(f"degraded {sum(summary['sets'].values())} images of {', '.join(names)} x{scale} "
          f"into {out}; score them with nas-sr evaluate benchmark_root={out}")
    return summary
