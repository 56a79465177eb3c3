"""HR/LR image pairs: one image's pair, made once per whole HR image, and the stores of them.

LR images are made once per whole HR image (MATLAB bicubic, or read from a
DIV2K ``*_LR_bicubic/X{s}`` folder) and crops are cut aligned from both, as in
the DIV2K protocol, so training sees the same degradation as the benchmarks."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from nas_sr.data.images import (
    PIL_FORMATS,
    ImageError,
    downscale,
    load_image,
    mod_crop,
    resize,
)
from nas_sr.device import release_freed_memory
from nas_sr.errors import ConfigError
from nas_sr.progress import progress_bar


@dataclass(frozen=True)
class ImageSource:
    """One HR image (the ground truth) and, optionally, its given LR image."""

    gt: Path
    lq: Path | None = None


class PairStore:
    """HR/LR uint8 image pairs in memory, with each pair's ``factors`` (1: an original image,
    below 1: a downscaled copy); the HDF5 cache offers the same interface."""

    def __init__(self, pairs: Sequence[tuple[np.ndarray, np.ndarray]],
                 factors: Sequence[float] | None = None):
        self.pairs = list(pairs)
        self.factors = list(factors) if factors is not None else [1.0] * len(self.pairs)

    def __len__(self) -> int:
        return len(self.pairs)

    def lq_shape(self, i: int) -> tuple[int, int]:
        return self.pairs[i][1].shape[:2]

    def pair(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        return self.pairs[i]

    def crop(self, i: int, y: int, x: int, size: int, scale: int) -> tuple[np.ndarray, np.ndarray]:
        (gt, lq), (gt_window, lq_window) = self.pairs[i], crop_windows(y, x, size, scale)
        return gt[gt_window], lq[lq_window]


Window = tuple[slice, slice]


def crop_windows(y: int, x: int, size: int, scale: int) -> tuple[Window, Window]:
    """The GT and LQ index windows of an aligned crop of ``size`` LQ pixels at (y, x)."""
    return (np.s_[y * scale:(y + size) * scale, x * scale:(x + size) * scale],
            np.s_[y:y + size, x:x + size])


# bicubic_pytorch cannot shrink a side to one pixel (an IndexError): the least LR side made
MIN_LQ_SIDE = 2


def load_pair(source: ImageSource, scale: int, min_lq_size: int = 1
              ) -> tuple[np.ndarray, np.ndarray]:
    """The HR image mod-cropped to ``scale`` and its LR; refused, before any resize, when its
    LR side would be under ``min_lq_size`` (one crop) or too small to downscale."""
    img = load_image(source.gt)
    gt = mod_crop(img, scale)
    # a given LR image needs no downscaling
    need = max(min_lq_size, 1 if source.lq else MIN_LQ_SIDE)
    lq_side = min(gt.shape[:2]) // scale
    if lq_side < need:
        size = f"{img.shape[1]}x{img.shape[0]} pixels"
        if gt.shape != img.shape:
            size += f" ({gt.shape[1]}x{gt.shape[0]} after cropping to a multiple of the scale)"
        side = need * scale
        if min_lq_size >= MIN_LQ_SIDE:
            raise ImageError(f"{source.gt}: {size} is smaller than one {side}x{side} crop; "
                             "remove it or use smaller crops (data.patch_size, or "
                             "train.patch_size in retrain)")
        raise ImageError(f"{source.gt}: {size} is smaller than {side}x{side}, the least "
                         f"that downscales x{scale}; remove it")
    if source.lq is None:
        return gt, downscale(gt, scale)
    lq = load_image(source.lq)
    if lq.shape[0] * scale != gt.shape[0] or lq.shape[1] * scale != gt.shape[1]:
        raise ImageError(
            f"{source.lq}: LR size {lq.shape[1]}x{lq.shape[0]} is not the HR size "
            f"{gt.shape[1]}x{gt.shape[0]} divided by scale {scale}; check scale="
        )
    return gt, lq


def downscalable(source: ImageSource, scale: int) -> bool:
    """Whether ``source`` has or is large enough to make an LR image, read from its header
    (a file Pillow cannot read counts as large enough: loading it names the problem)."""
    if source.lq:
        return True
    try:
        with Image.open(source.gt, formats=PIL_FORMATS) as img:
            return min(img.size) // scale >= MIN_LQ_SIDE
    except (OSError, SyntaxError, ValueError):
        return True


def rescale_factors(data: Any) -> tuple[float, ...]:
    """``data.rescale``, checked: the factors of the extra downscaled training copies."""
    # a run saved before the option existed resumes as it ran: no copies
    given = data.get("rescale", None) or []
    usage = (f"data.rescale={given}: a list of factors, each in (0, 1) and given once (the "
             "original image is always kept), e.g. data.rescale=[0.9,0.8,0.7,0.6]")
    try:
        factors = tuple(float(f) for f in given)
    except (TypeError, ValueError):
        raise ConfigError(usage) from None
    if any(not 0 < f < 1 for f in factors) or len(set(factors)) < len(factors):
        raise ConfigError(usage)
    return factors


def load_pairs(
    sources: Sequence[ImageSource], scale: int, min_lq_size: int, desc: str = "images",
    progress: bool = True,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Decode every image and make its LR; refuse images too small for one crop."""
    pairs = []
    for source in progress_bar(sources, desc=f"loading {desc}", leave=False, unit="img",
                               disable=not progress):
        gt, lq = load_pair(source, scale, min_lq_size)
        pairs.append((gt, lq))
    release_freed_memory()
    return pairs


def with_rescaled_copies(
    pairs: list[tuple[np.ndarray, np.ndarray]], scale: int, rescale: Sequence[float],
    progress: bool = True,
) -> tuple[list[tuple[np.ndarray, np.ndarray]], list[float]]:
    """Each pair followed by its copies shrunk by each ``rescale`` factor (VDSR's and
    DRRN's augmentation of the 291 training images), each with its own bicubic LR, and
    each pair's factor (1: the original). A copy smaller than a crop is kept and left
    out of the crops (``RandomCrops``), so a store holds the same pairs at any crop size.
    """
    out, factors = [], []
    for gt, lq in progress_bar(pairs, desc="downscaled copies", leave=False, unit="img",
                               disable=not (progress and rescale)):
        out.append((gt, lq))
        factors.append(1.0)
        for f in rescale:
            # MATLAB's output side is ceil(side * f); a copy too small to downscale is dropped
            if min(math.ceil(n * f) for n in gt.shape[:2]) // scale < MIN_LQ_SIDE:
                continue
            small = mod_crop(resize(gt, f), scale)
            out.append((small, downscale(small, scale)))
            factors.append(f)
    return out, factors
