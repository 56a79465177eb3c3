"""Training data: HR/LR image pairs, random aligned crops, and fixed validation crops.

LR images are made once per whole HR image (MATLAB bicubic, or read from a
DIV2K ``*_LR_bicubic/X{s}`` folder) and crops are cut aligned from both, as in
the DIV2K protocol, so training sees the same degradation as the benchmarks.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from nas_sr.images import (
    PIL_FORMATS,
    ImageError,
    downscale,
    list_images,
    load_image,
    mod_crop,
    resize,
    to_tensor,
)
from nas_sr.progress import progress_bar
from nas_sr.runtime import ConfigError, release_freed_memory

log = logging.getLogger(__name__)


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


def lq_patch_size(patch_size: int, scale: int) -> int:
    """LR crop side for an HR crop of about ``patch_size`` (63 HR pixels at x3)."""
    return patch_size // scale


def min_image_size(data: Any, patch_size: int, scale: int) -> int:
    """The smallest LR side an image must have to be loaded at all.

    ``data.small_images=error`` (the default) refuses an image smaller than one crop;
    ``skip`` loads it and leaves it out of the crops (``RandomCrops``), so crops larger
    than a data set's smallest images need no copy of the set without them.
    """
    # a run saved before the option existed resumes as it ran: error
    skip = data.get("small_images", "error") == "skip"
    return 1 if skip else lq_patch_size(patch_size, scale)


def _augment(img: np.ndarray, k: int) -> np.ndarray:
    """One of the 8 flips/90-degree rotations (k in 0..7), same for HR and LR."""
    if k & 1:
        img = img[:, ::-1]
    if k & 2:
        img = img[::-1]
    if k & 4:
        img = img.transpose(1, 0, 2)
    return img


class RandomCrops(torch.utils.data.Dataset):
    """``length`` random aligned crops per epoch, with random flips and rotations.

    Crop ``i`` of epoch ``e`` is drawn from an RNG seeded by ``(seed, e, i)``:
    the data order is fixed by the seed alone, independent of workers, and a
    resumed run sees exactly the crops an uninterrupted one would.
    """

    def __init__(self, store: Any, scale: int, patch_size: int, length: int, seed: int,
                 augment: bool = True):
        self.store, self.scale, self.length, self.seed = store, scale, length, seed
        self.size = lq_patch_size(patch_size, scale)
        self.augment = augment
        self.epoch = 0
        # images smaller than a crop reach here only under data.small_images=skip
        self.images = [i for i in range(len(store)) if min(store.lq_shape(i)) >= self.size]
        if not self.images:
            raise ImageError(f"none of the {len(store)} images has an LR side of "
                             f"{self.size} px, one {patch_size}px crop at x{scale}; "
                             "use smaller crops")
        if len(self.images) < len(store):
            log.warning("%d of %d images are smaller than one %dpx crop and are left out",
                        len(store) - len(self.images), len(store), patch_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng((self.seed, self.epoch, index))
        i = self.images[int(rng.integers(len(self.images)))]
        h, w = self.store.lq_shape(i)
        y, x = int(rng.integers(h - self.size + 1)), int(rng.integers(w - self.size + 1))
        gt, lq = self.store.crop(i, y, x, self.size, self.scale)
        if self.augment:
            k = int(rng.integers(8))
            gt, lq = _augment(gt, k), _augment(lq, k)
        return to_tensor(lq), to_tensor(gt)


def fixed_crops(store: Any, scale: int, patch_size: int, count: int, seed: int
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """A deterministic batch of ``count`` crops (no augmentation), drawn once with ``seed``."""
    crops = RandomCrops(store, scale, patch_size, count, seed, augment=False)
    lq, gt = zip(*(crops[i] for i in range(count)), strict=True)
    return torch.stack(lq), torch.stack(gt)


# --- where the images come from -------------------------------------------------------


def builtin_dir() -> Path:
    import skimage.data

    return Path(skimage.data.__file__).parent


def _split(files: list[Path], val_fraction: float) -> tuple[list[Path], list[Path]]:
    """A fixed split (independent of the run seed, so every run validates alike)."""
    if len(files) < 3:
        raise ImageError(
            f"need at least 3 images to carve validation images for the search and for "
            f"retraining, found {len(files)}; add images or set data.val_dir"
        )
    order = np.random.default_rng(0).permutation(len(files))
    n_val = min(len(files) - 1, max(2, round(val_fraction * len(files))))
    val = sorted(files[i] for i in order[:n_val])
    train = sorted(files[i] for i in order[n_val:])
    return train, val


def _halves(val: list[ImageSource], where: str) -> tuple[list[ImageSource], list[ImageSource]]:
    """Alternate validation images into the search's reward set and retraining's hold-out."""
    if len(val) < 2:
        raise ImageError(f"{where}: need at least 2 validation images (one for the search's "
                         f"reward, one for retraining's validation), found {len(val)}")
    return val[0::2], val[1::2]


def _div2k_lq(root: Path, split: str, gt: Path, scale: int) -> Path | None:
    lq = root / f"DIV2K_{split}_LR_bicubic" / f"X{scale}" / f"{gt.stem}x{scale}.png"
    return lq if lq.is_file() else None


@dataclass(frozen=True)
class Sources:
    """Where each job's images come from. ``reward`` steers the search (its reward and
    final-selection crops); ``holdout`` validates retraining and never steers a search, so a
    retrained cell is never scored on images that chose it."""

    train: list[ImageSource]
    reward: list[ImageSource]
    holdout: list[ImageSource]


def resolve_sources(data: Any, scale: int) -> Sources:
    """Train, reward and hold-out sources for ``data.name`` in builtin/folder/div2k."""
    if data.name == "builtin":
        root = builtin_dir()
        return Sources(*([ImageSource(root / n) for n in names] for names in
                         (data.train_names, data.val_names, data.holdout_names)))
    if data.name == "folder":
        if not data.train_dir:
            raise ImageError("data=folder needs data.train_dir=DIR (a folder of HR images)")
        files = list_images(Path(data.train_dir).expanduser())
        if data.val_dir:
            where, val_files = data.val_dir, list_images(Path(data.val_dir).expanduser())
        else:
            where, (files, val_files) = data.train_dir, _split(files, data.val_fraction)
        train, val = [ImageSource(f) for f in files], [ImageSource(f) for f in val_files]
    elif data.name == "div2k":
        if not data.root:
            raise ImageError("data=div2k needs data.root=DIR (the folder holding DIV2K_*_HR)")
        root = Path(data.root).expanduser()
        where = root / "DIV2K_valid_HR"
        train, val = (
            [ImageSource(f, _div2k_lq(root, split, f, scale))
             for f in list_images(root / f"DIV2K_{split}_HR")]
            for split in ("train", "valid")
        )
    else:
        raise ConfigError(f"unknown data source {data.name!r}; use builtin, folder or div2k")
    return _without_tiny(data, Sources(train, *_halves(val, str(where))), scale)


def _without_tiny(data: Any, src: Sources, scale: int) -> Sources:
    """Under ``data.small_images=skip``, the sources less the images too small to make an
    LR image of at all (those smaller than one crop are loaded and left out of the crops).
    Dropped after the split, so the other images keep their places."""
    if data.get("small_images", "error") != "skip":
        return src
    groups = (src.train, src.reward, src.holdout)
    kept = [[s for s in group if downscalable(s, scale)] for group in groups]
    dropped = [s.gt for group, k in zip(groups, kept, strict=True) for s in group if s not in k]
    side = MIN_LQ_SIDE * scale
    if any(group and not k for group, k in zip(groups, kept, strict=True)):
        raise ImageError(f"every image of a split (train, search reward or hold-out) is under "
                         f"{side}x{side} pixels, too small to downscale x{scale} (e.g. "
                         f"{dropped[0]}); add larger images")
    if dropped:
        log.warning("%d image(s) under %dx%d pixels, too small to downscale x%d, are left "
                    "out (data.small_images=skip), e.g. %s", len(dropped), side, side, scale,
                    dropped[0])
    return Sources(*kept)
