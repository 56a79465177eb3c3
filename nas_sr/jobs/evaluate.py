"""The evaluate job: PSNR/SSIM on Y of benchmark sets, beside params and Mult-Adds.

A benchmark root holds ``SET/X{s}/HR/*`` and ``SET/X{s}/LR/*`` with matching file
names (the layout of ``../shared/datasets/benchmark``). The model super-resolves the
**given** LR images; outputs are rounded to 8 bits and ``scale`` pixels are shaved
from every border before PSNR and SSIM are measured on Y (BT.601), as the field does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from nas_sr.checkpoint import write_json
from nas_sr.complexity import HR_SIZE, complexity, human
from nas_sr.data import ImageSource, load_pair
from nas_sr.images import ImageError, list_images, to_tensor
from nas_sr.inference import Predictor, amp_and_runtime, load_predictor, super_resolve
from nas_sr.metrics import check_ssim_size, mean, psnr_y, quantize, ssim_y
from nas_sr.progress import progress_bar
from nas_sr.runtime import ConfigError, resolve_device, set_threads


def benchmark_sources(root: Path, name: str, scale: int) -> list[ImageSource]:
    """HR/LR pairs of ``root/name/X{scale}``, paired by file name; layout errors name the path."""
    set_dir = root / name
    if root.exists() and not root.is_dir():
        raise FileNotFoundError(f"benchmark_root={root} is a file; it takes the folder that "
                                "holds the sets (SET/X{scale}/HR and LR)")
    if not root.exists():  # the default is relative: outside the repository it is not there
        where = "" if root.is_absolute() else f" (relative to {Path.cwd()})"
        raise FileNotFoundError(f"benchmark_root={root} does not exist{where}; pass "
                                f"benchmark_root=DIR, the folder that holds the sets "
                                f"(SET/X{scale}/HR and LR)")
    if not set_dir.is_dir():
        found = sorted(p.name for p in root.iterdir() if p.is_dir())
        where = f"{root} holds: {', '.join(found)}" if found else f"{root} has no sets"
        raise FileNotFoundError(f"{set_dir}: no such benchmark set ({where}); "
                                "check sets= and benchmark_root=")
    scale_dir = set_dir / f"X{scale}"
    if not scale_dir.is_dir():
        have = sorted(p.name for p in set_dir.iterdir() if p.is_dir() and p.name[:1] == "X")
        raise FileNotFoundError(f"{scale_dir}: missing, so {name} has no x{scale} images "
                                f"(it has: {', '.join(have) or 'none'}); pick another scale=")
    files = {}
    for kind in ("HR", "LR"):
        folder = scale_dir / kind
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: missing; a set is laid out SET/X{scale}/HR "
                                    f"and SET/X{scale}/LR with the same file names")
        files[kind] = {}
        for p in list_images(folder):
            key = p.relative_to(folder).with_suffix("")
            if key in files[kind]:  # a.png and a.jpg: which one pairs with LR's a?
                raise ImageError(f"{folder}: {files[kind][key].name} and {p.name} share a "
                                 f"name; keep one image per name")
            files[kind][key] = p
    gt, lq = files["HR"], files["LR"]
    if gt.keys() != lq.keys():
        only = [f"only in {kind}: {', '.join(str(k) for k in sorted(a.keys() - b.keys()))}"
                for kind, a, b in (("HR", gt, lq), ("LR", lq, gt)) if a.keys() - b.keys()]
        raise ImageError(f"{scale_dir}: HR and LR images do not pair up ({len(gt)} HR, "
                         f"{len(lq)} LR; {'; '.join(only)})")
    return [ImageSource(gt[k], lq[k]) for k in sorted(gt)]


def restore(predictor: Predictor, source: ImageSource, device: torch.device | str = "cpu",
            **options: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """An image's 8-bit SR output and its HR image, (3, H, W) on 0..255 on the CPU, as every
    score takes them; ``options`` go to :func:`super_resolve` (tile, ensemble, amp)."""
    gt, lq = load_pair(source, predictor.scale)  # names the LR file if the sizes disagree
    sr = super_resolve(predictor, to_tensor(lq, device)[None], **options)
    return quantize(sr[0]).cpu(), torch.from_numpy(gt).permute(2, 0, 1)


def evaluate_image(predictor: Predictor, source: ImageSource, cfg: DictConfig,
                   device: torch.device, amp: bool = False) -> dict[str, Any]:
    sr, gt_t = restore(predictor, source, device, tile=cfg.tile, overlap=cfg.overlap,
                       ensemble=cfg.self_ensemble, amp=amp)
    shave = predictor.scale
    return {"image": source.gt.stem, "psnr": float(psnr_y(sr, gt_t, shave)),
            "ssim": ssim_y(sr, gt_t, shave)}


def check_images(sources: list[ImageSource], scale: int, progress: bool = True) -> None:
    """Read every pair once before any is scored: a damaged, mismatched or too-small image
    in the last set fails the job in seconds, not after the first sets' inference."""
    for source in progress_bar(sources, desc="checking images", unit="img", leave=False,
                               disable=not progress):
        gt, _ = load_pair(source, scale)
        try:
            check_ssim_size(*gt.shape[:2], shave=scale)
        except ValueError as e:
            raise ImageError(f"{source.gt}: {e}") from None


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
