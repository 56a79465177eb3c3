"""Upscaling one file, an image (tiled) or a video (frame by frame), with its settings.

The upscale job and the web page of ``nas-sr serve`` both upscale through these.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from PIL import Image

from nas_sr.checkpoint import atomic_path
from nas_sr.data.images import load_image, reductions, to_tensor, to_uint8
from nas_sr.data.video import VIDEO_EXTENSIONS, Encoding, VideoInfo, rewrite
from nas_sr.deploy.predictor import Predictor, Progress, amp_and_runtime, super_resolve
from nas_sr.device import resolve_device
from nas_sr.metrics import quantize


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
                            options, overlap=video.get("overlap", True),
                            workers=video.get("workers")), device)

    def output_name(self, src: Path) -> str:
        """``photo.jpg`` -> ``photo.png``, ``clip.avi`` -> ``clip.mp4`` (by default)."""
        return src.stem + (f".{self.container}" if is_video(src) else ".png")


# model calls at once by default: each holds a frame's (or tile's) activations
MAX_WORKERS = 4


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
    encoding = settings.encoding
    threads = torch.get_num_threads()
    if encoding.workers is None:  # a call per thread where ONNX Runtime (CPU only) runs it
        parallel = predictor.session is not None
        encoding = replace(encoding, workers=min(threads, MAX_WORKERS) if parallel else 1)
    split = encoding.overlap and encoding.workers > 1
    per_thread = threading.local()

    def model() -> Predictor:
        """The predictor this model thread calls: with several at once, each on a session of
        its own with its share of the threads (eager torch shares the process's)."""
        if not split:
            return predictor
        if not hasattr(per_thread, "predictor"):
            per_thread.predictor = predictor.with_threads(max(1, threads // encoding.workers))
        return per_thread.predictor

    def sr(lq: torch.Tensor) -> torch.Tensor:
        return super_resolve(model(), lq, tile=settings.tile, overlap=settings.overlap,
                             amp=settings.amp, ensemble=settings.ensemble)

    def frames_sr(frames: np.ndarray) -> np.ndarray:
        return to_uint8(sr(to_tensor(frames, settings.device)))

    def planes_sr(frames: np.ndarray) -> np.ndarray:
        """yuv420p frames: the model on the Y plane, bicubic on U and V (half size)."""
        n, rows, w = frames.shape
        h, s = rows * 2 // 3, predictor.scale
        planes = torch.from_numpy(frames).to(settings.device)
        y = quantize(sr(planes[:, None, :h].float() / 255))
        uv = planes[:, h:].reshape(n, 2, h // 2, w // 2).float()
        uv = F.interpolate(uv, scale_factor=s, mode="bicubic", align_corners=False)
        out = torch.cat([y.reshape(n, h * s, w * s),
                         uv.clamp_(0, 255).round_().reshape(n, h * s // 2, w * s)], 1)
        return out.byte().cpu().numpy()

    return rewrite(src, dest, frames_sr, predictor.scale, encoding, progress,
                   planes=planes_sr if predictor.luma else None)
