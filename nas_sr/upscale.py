"""The upscale job: super-resolve an image or a folder of images of any size, tiled."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig
from PIL import Image
from tqdm import tqdm

from nas_sr.images import ImageError, list_images, load_image
from nas_sr.inference import load_predictor, super_resolve, to_tensor, to_uint8
from nas_sr.runtime import ConfigError, resolve_device, set_threads


def input_files(path: Path) -> tuple[Path, list[Path]]:
    """(root the output names are relative to, images): one file, or a folder's images."""
    if path.is_file():
        return path.parent, [path]
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder; input= takes an image "
                                "or a folder of images")
    return path, list_images(path)


def output_paths(root: Path, files: list[Path], out_dir: Path) -> list[Path]:
    """One PNG per input under ``out_dir``; checked before any work, so no input is lost."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"output={out_dir} is a file; output= takes a folder (made if "
                          "missing) for the upscaled PNGs")
    dests = [out_dir / f.relative_to(root).with_suffix(".png") for f in files]
    inputs = {f.resolve() for f in files}
    seen: dict[Path, Path] = {}
    for src, dest in zip(files, dests, strict=True):
        if dest.resolve() in inputs:
            raise ConfigError(f"output={out_dir} would overwrite the input {dest}; "
                              f"pick another output folder")
        if dest in seen:
            raise ConfigError(f"{seen[dest]} and {src} would both be written to {dest}; "
                              f"rename one or upscale them separately")
        seen[dest] = src
    return dests


def run(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    set_threads(cfg.threads)
    device = resolve_device(cfg.device)
    if not cfg.model or not cfg.input:
        raise FileNotFoundError("model= and input= are required: model= a retrain checkpoint, "
                                "an exported model.pt2 or bicubic (with scale=); input= an "
                                "image or a folder of images")
    root, files = input_files(Path(cfg.input).expanduser())
    out_dir = Path(cfg.output).expanduser() if cfg.output else run_dir / "images"
    dests = output_paths(root, files, out_dir)
    predictor = load_predictor(str(cfg.model), cfg.scale, device, cfg.channels_last)
    written, failed = [], []
    for path, dest in tqdm(list(zip(files, dests, strict=True)),
                           desc=f"upscaling x{predictor.scale}", unit="img",
                           disable=not cfg.logger.progress):
        try:
            lr = to_tensor(load_image(path), device)
        except ImageError as e:  # one bad file does not cost the rest of the batch
            failed.append(str(e))
            continue
        sr = super_resolve(predictor, lr, tile=cfg.tile, overlap=cfg.overlap, amp=cfg.amp,
                           ensemble=cfg.self_ensemble)
        dest.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(to_uint8(sr)).save(dest)
        written.append(str(dest))
    print(f"wrote {len(written)} image(s) x{predictor.scale} to {out_dir}")
    if failed:
        raise ImageError(f"{len(failed)} of {len(files)} image(s) failed (the others are "
                         f"written):\n  " + "\n  ".join(failed))
    return {"outputs": written, "scale": predictor.scale}
