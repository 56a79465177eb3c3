"""The evaluate job: PSNR/SSIM on Y of benchmark sets, beside params and Mult-Adds.

A benchmark root holds ``SET/X{s}/HR/*`` and ``SET/X{s}/LR/*`` with matching file
names (the layout of ``../shared/datasets/benchmark``). The model super-resolves the
**given** LR images; outputs are rounded to 8 bits and ``scale`` pixels are shaved
from every border before PSNR and SSIM are measured on Y (BT.601), as the field does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from nas_sr.archs.complexity import HR_SIZE, complexity, human
from nas_sr.checkpoint import write_json
from nas_sr.data.sources import benchmark_sources
from nas_sr.deploy.predictor import amp_and_runtime, load_predictor
from nas_sr.deploy.scoring import check_images, evaluate_image
from nas_sr.device import resolve_device, set_threads
from nas_sr.errors import ConfigError
from nas_sr.metrics import mean
from nas_sr.progress import progress_bar


def markdown_table(results: dict[str, Any]) -> str:
    rows = [f"| {name} | x{results['scale']} | {s['psnr']:.2f} | {s['ssim']:.4f} | "
            f"{human(results['params'])} | {human(results['mult_adds'])} |"
            for name, s in results["sets"].items()]
    return "\n".join([
        f"model: {results['model']} (runtime: {results['runtime']})"
        + (" (x8 self-ensemble)" if results["self_ensemble"] else ""),
        "",
        f"| set | scale | PSNR (dB) | SSIM | params | Mult-Adds ({HR_SIZE[1]}x{HR_SIZE[0]}) |",
        "| --- | --- | --- | --- | --- | --- |",
        *rows,
    ])


def run(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    set_threads(cfg.threads)
    device = resolve_device(cfg.device)
    amp, runtime = amp_and_runtime(cfg.amp, cfg.runtime, device)
    # scale=null: the model's own; bicubic has none, and x2 is the benchmarks' first column
    asked = 2 if cfg.scale is None and cfg.model == "bicubic" else cfg.scale
    predictor = load_predictor(str(cfg.model), asked, device, cfg.channels_last, runtime)
    scale = predictor.scale
    root = Path(cfg.benchmark_root).expanduser()
    # `sets=Set5` (no brackets) is one name, not the letters S, e, t, 5
    names = [cfg.sets] if isinstance(cfg.sets, str) else list(cfg.sets)
    if not names:
        raise ConfigError("sets=[] names no benchmark set; e.g. sets=[Set5,Set14]")
    # check every set's layout and images before spending time on any of them
    sources = {name: benchmark_sources(root, name, scale) for name in names}
    check_images([s for set_sources in sources.values() for s in set_sources], scale,
                 cfg.logger.progress)
    sizes = complexity(predictor.model, scale) if predictor.arch else {}
    results: dict[str, Any] = {
        "model": str(cfg.model), "arch": predictor.arch, "scale": scale,
        "self_ensemble": bool(cfg.self_ensemble), "tile": cfg.tile,
        "runtime": predictor.runtime, "amp": amp,
        "params": sizes.get("params"), "nonzero_params": sizes.get("nonzero_params"),
        "mult_adds": sizes.get("mult_adds"), "sets": {},
    }
    for name, set_sources in sources.items():
        images = [evaluate_image(predictor, src, cfg, device, amp)
                  for src in progress_bar(set_sources, desc=f"{name} x{scale}", unit="img",
                                          leave=False, disable=not cfg.logger.progress)]
        results["sets"][name] = {"psnr": mean([i["psnr"] for i in images]),
                                 "ssim": mean([i["ssim"] for i in images]), "images": images}
    table = markdown_table(results)
    print(table)
    (run_dir / "results.md").write_text(table + "\n")
    write_json(run_dir / "results.json", results)
    return results
