"""The upscale job: super-resolve images of any size (tiled) and videos (frame by frame)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from PIL import Image
from tqdm import tqdm

from nas_sr.checkpoint import atomic_path
from nas_sr.images import IMAGE_EXTENSIONS, ImageError, list_images, load_image
from nas_sr.inference import (
    Predictor,
    Progress,
    load_predictor,
    super_resolve,
    to_tensor,
    to_uint8,
)
from nas_sr.runtime import ConfigError, resolve_device, set_threads
from nas_sr.video import VIDEO_EXTENSIONS, Encoding, VideoError, VideoInfo, rewrite


@dataclass(frozen=True)
class Settings:
    """How a file is upscaled: tiling and ensembling for every pixel, encoding for videos."""

    tile: int | None = 256
    overlap: int = 16
    ensemble: bool = False
    amp: bool = False
    container: str = "mp4"  # extension of video outputs
    encoding: Encoding = field(default_factory=Encoding)
    device: torch.device = torch.device("cpu")

    @classmethod
    def from_cfg(cls, cfg: DictConfig) -> Settings:
        video = cfg.video
        options = {k: str(v) for k, v in OmegaConf.to_container(video.options).items()}
        return cls(cfg.tile, cfg.overlap, cfg.self_ensemble, cfg.amp, video.container.lstrip("."),
                   Encoding(video.codec, video.crf, video.preset, video.pix_fmt, video.batch,
                            options), resolve_device(cfg.device))

    def output_name(self, src: Path) -> str:
        """``photo.jpg`` -> ``photo.png``, ``clip.avi`` -> ``clip.mp4`` (by default)."""
        return src.stem + (f".{self.container}" if is_video(src) else ".png")


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTENSIONS


def upscale_image(predictor: Predictor, src: Path, dest: Path, settings: Settings,
                  progress: Progress | None = None) -> None:
    """``src`` x scale as a PNG at ``dest``, written whole or not at all.

    ``progress(tiles_done, tiles_total)``.
    """
    lr = to_tensor(load_image(src), settings.device)  # a bad file raises here, named
    sr = super_resolve(predictor, lr, tile=settings.tile, overlap=settings.overlap,
                       amp=settings.amp, ensemble=settings.ensemble, progress=progress)
    with atomic_path(dest) as tmp:
        Image.fromarray(to_uint8(sr)).save(tmp, format="PNG")


def upscale_video(predictor: Predictor, src: Path, dest: Path, settings: Settings,
                  progress: Progress | None = None) -> VideoInfo:
    """Every frame of ``src`` super-resolved into ``dest``, in batches; the source's info.

    ``progress(frames_done, frames_total)``.
    """

    def frames_sr(frames: np.ndarray) -> np.ndarray:
        lr = torch.from_numpy(frames).permute(0, 3, 1, 2).to(settings.device) / 255.0
        sr = super_resolve(predictor, lr, tile=settings.tile, overlap=settings.overlap,
                           amp=settings.amp, ensemble=settings.ensemble)
        return np.stack([to_uint8(sr[i:i + 1]) for i in range(len(sr))])

    return rewrite(src, dest, frames_sr, predictor.scale, settings.encoding, progress)


def upscale_file(predictor: Predictor, src: Path, dest: Path, settings: Settings,
                 show_progress: bool = False) -> None:
    """An image or a video of the upscale job; a video shows a bar of its frames."""
    if not is_video(src):
        upscale_image(predictor, src, dest, settings)
        return
    with tqdm(desc=src.name, unit="frame", disable=not show_progress) as bar:
        def frames(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)
        upscale_video(predictor, src, dest, settings, frames)


def input_files(path: Path) -> tuple[Path, list[Path]]:
    """(root the output names are relative to, inputs): one file, or a folder's media."""
    if path.is_file():
        return path.parent, [path]
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder; input= takes an image, "
                                "a video or a folder of them")
    return path, list_images(path, IMAGE_EXTENSIONS + VIDEO_EXTENSIONS)


def output_paths(root: Path, files: list[Path], out_dir: Path, settings: Settings
                 ) -> list[Path]:
    """One output per input under ``out_dir``; checked before any work, so no input is lost."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"output={out_dir} is a file; output= takes a folder (made if "
                          "missing) for the upscaled files")
    dests = [out_dir / f.relative_to(root).with_name(settings.output_name(f)) for f in files]
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
    if not cfg.model or not cfg.input:
        raise FileNotFoundError("model= and input= are required: model= a retrain checkpoint, "
                                "an exported model.pt2 or bicubic (with scale=); input= an "
                                "image, a video or a folder of them")
    settings = Settings.from_cfg(cfg)
    root, files = input_files(Path(cfg.input).expanduser())
    out_dir = Path(cfg.output).expanduser() if cfg.output else run_dir / "images"
    dests = output_paths(root, files, out_dir, settings)
    predictor = load_predictor(str(cfg.model), cfg.scale, settings.device, cfg.channels_last,
                               cfg.runtime)
    written, failed = [], []
    for path, dest in tqdm(list(zip(files, dests, strict=True)),
                           desc=f"upscaling x{predictor.scale}", unit="file",
                           disable=not cfg.logger.progress or len(files) == 1):
        try:
            upscale_file(predictor, path, dest, settings, cfg.logger.progress)
        except (ImageError, VideoError) as e:  # one bad file does not cost the rest
            failed.append(str(e))
            continue
        written.append(str(dest))
    print(f"wrote {len(written)} file(s) x{predictor.scale} to {out_dir}")
    if failed:
        raise ImageError(f"{len(failed)} of {len(files)} file(s) failed (the others are "
                         f"written):\n  " + "\n  ".join(failed))
    return {"outputs": written, "scale": predictor.scale}
