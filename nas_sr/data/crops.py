"""Random aligned training crops (with the 8 flips and turns) and fixed validation crops."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from nas_sr.data.images import (
    ImageError,
    to_tensor,
)

log = logging.getLogger(__name__)


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

    def rng(self, index: int) -> np.random.Generator:
        """The generator of crop ``index`` of this epoch."""
        return np.random.default_rng((self.seed, self.epoch, index))

    def draw(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """An aligned (GT, LQ) crop, flipped and turned, drawn from ``rng``."""
        i = self.images[int(rng.integers(len(self.images)))]
        h, w = self.store.lq_shape(i)
        y, x = int(rng.integers(h - self.size + 1)), int(rng.integers(w - self.size + 1))
        gt, lq = self.store.crop(i, y, x, self.size, self.scale)
        if self.augment:
            k = int(rng.integers(8))
            gt, lq = _augment(gt, k), _augment(lq, k)
        return gt, lq

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        gt, lq = self.draw(self.rng(index))
        return to_tensor(lq), to_tensor(gt)


def fixed_crops(store: Any, scale: int, patch_size: int, count: int, seed: int
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """A deterministic batch of ``count`` crops (no augmentation), drawn once with ``seed``."""
    crops = RandomCrops(store, scale, patch_size, count, seed, augment=False)
    lq, gt = zip(*(crops[i] for i in range(count)), strict=True)
    return torch.stack(lq), torch.stack(gt)
