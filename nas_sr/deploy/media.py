"""Upscaling one file, an image (tiled) or a video (frame by frame), with its settings.

The upscale job and the web page of ``nas-sr serve`` both upscale through these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from PIL import Image

from nas_sr.checkpoint import atomic_path
from nas_sr.data.images import load_image, reductions, to_tensor, to_uint8
from nas_sr.data.video import VIDEO_EXTENSIONS, Encoding, VideoInfo, rewrite
from nas_sr.deploy.predictor import Predictor, Progress, amp_and_runtime, super_resolve
from nas_sr.device import resolve_device


@dataclass(frozen=True)
class Settings:
    """How a file is upscaled: tiling and ensembling for every pixel, encoding for videos."""

    tile: int | None = 256
    overlap: int = 16
    ensemble: bool = False
    amp: bool = False  # resolved: bf16 autocast on or off
    runtime: str = "auto"  # what load_predictor runs the model on (amp on: torch)
    container: str = "mp4"  # extension of video outputs
    encoding: Encoding = field(default_factory=Encoding)
    device: torch.device = torch.device("cpu")

    @classmethod
    def from_cfg(cls, cfg: DictConfig) -> Settings:
        video = cfg.video
        options = {k: str(v) for k, v in OmegaConf.to_container(video.options).items()}
        device = resolve_device(cfg.device)
        amp, runtime = amp_and_runtime(cfg.amp, cfg.runtime, device)
        return cls(cfg.tile, cfg.overlap, cfg.self_ensemble, amp, runtime,
                   video.container.lstrip("."),
                   Encoding(video.codec, video.crf, video.preset, video.pix_fmt, video.batch,
                            options, overlap=video.get("overlap", True)), device)

    def output_name(self, src: Path) -> str:
        """``photo.jpg`` -> ``photo.png``, ``clip.avi`` -> ``clip.mp4`` (by default)."""
        return src.stem + (f".{self.container}" if is_video(src) else ".png")


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTENSIONS


def upscale_image(predictor: Predictor, src: Path, dest: Path, settings: Settings,
                  progress: Progress | None = None) -> list[str]:
    """``src`` x scale as a PNG at ``dest``, written whole or not at all; what the
    conversion to 8-bit RGB left out of ``src`` (:func:`~nas_sr.data.images.reductions`).

    ``progress(tiles_done, tiles_total)``.
    """
    lq = to_tensor(load_image(src), settings.device)[None]  # a bad file raises here, named
    notes = reductions(src)
    sr = super_resolve(predictor, lq, tile=settings.tile, overlap=settings.overlap,
                       amp=settings.amp, ensemble=settings.ensemble, progress=progress)
    with atomic_path(dest) as tmp:
        Image.fromarray(to_uint8(sr[0])).save(tmp, format="PNG")
    return notes


def upscale_video(predictor: Predictor, src: Path, dest: Path, settings: Settings,
                  progress: Progress | None = None) -> VideoInfo:
    """Every frame of ``src`` super-resolved into ``dest``, in batches; the source's info.

    ``progress(frames_done, frames_total)``.
    """

    def frames_sr(frames: np.ndarray) -> np.ndarray:
        lq = to_tensor(frames, settings.device)
        return to_uint8(super_resolve(predictor, lq, tile=settings.tile, overlap=settings.overlap,
                                      amp=settings.amp, ensemble=settings.ensemble))

    return rewrite(src, dest, frames_sr, predictor.scale, settings.encoding, progress)
