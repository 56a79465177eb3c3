"""Distillation targets (``train.teacher``): a teacher model's x8 self-ensemble output on
every training image, blended into the ground truth the loss is taken against.

A model at its capacity trails its own x8 self-ensemble (the same weights, 8 passes) by about
0.2 dB. Trained towards that ensemble's output on the training images (distillation, with the
ensemble as teacher) it is asked for a function within its reach, with less of the ground
truth's unpredictable detail. The teacher runs once per image set: its outputs are kept in an
HDF5 file named for the teacher's weights and the images, so a resumed or repeated run reads
them back.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from nas_sr.data.cache import H5Store, fingerprint, is_fresh, write_pairs
from nas_sr.data.images import to_tensor, to_uint8
from nas_sr.data.pairs import ImageSource, PairStore, crop_windows
from nas_sr.deploy.predictor import Predictor, load_predictor, model_file, super_resolve

Store = PairStore | H5Store


class BlendedTargets:
    """``store`` with each GT crop replaced by ``(1 - weight) * GT + weight * teacher``,
    float32 on the 0..255 scale (a blend is no 8-bit image; ``to_tensor`` scales it alike)."""

    def __init__(self, store: Store, teacher: H5Store, weight: float):
        if len(store) != len(teacher):
            raise ValueError(f"{len(teacher)} teacher outputs for {len(store)} training images")
        self.store, self.teacher, self.weight = store, teacher, weight
        self.factors = store.factors

    def __len__(self) -> int:
        return len(self.store)

    def lq_shape(self, i: int) -> tuple[int, int]:
        return self.store.lq_shape(i)

    def crop(self, i: int, y: int, x: int, size: int, scale: int) -> tuple[np.ndarray, np.ndarray]:
        gt, lq = self.store.crop(i, y, x, size, scale)
        # the teacher's GT alone: its LQ copy is the store's, read once above
        taught = self.teacher.read(i, "hr", crop_windows(y, x, size, scale)[0])
        w = self.weight
        return (1 - w) * gt.astype(np.float32) + w * taught.astype(np.float32), lq


def _outputs(store: Store, predictor: Predictor, device: torch.device
             ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    for i in range(len(store)):
        lq = store.pair(i)[1]
        sr = super_resolve(predictor, to_tensor(lq, device)[None], ensemble=True)
        yield to_uint8(sr[0]), lq


def teacher_store(store: Store, sources: Sequence[ImageSource], rescale: Sequence[float],
                  model: str | Path, scale: int, cache_dir: str | Path,
                  device: torch.device | str = "cpu", progress: bool = True) -> H5Store:
    """The x8 self-ensemble output of ``model`` on each LR image of ``store`` (made from
    ``sources`` and their ``rescale`` copies), computed once and cached in ``cache_dir``: a
    store whose GT images are the teacher's outputs."""
    path = model_file(str(model), "train.teacher")  # bicubic too: a teacher is trained
    weights = hashlib.sha1(path.read_bytes()).hexdigest()
    key = hashlib.sha1(json.dumps(
        [weights, fingerprint(sources, scale, rescale)]).encode()).hexdigest()
    out = Path(cache_dir).expanduser() / f"teacher_x{scale}_{key[:12]}.h5"
    if not is_fresh(out, key):  # loaded only to run: a fresh file's key names its teacher
        predictor = load_predictor(str(path), scale, device, runtime="auto")  # checks scale
        write_pairs(out, _outputs(store, predictor, torch.device(device)), scale, key,
                    sources, store.factors, progress, desc=f"teacher x8 outputs of {path.name}")
    return H5Store(out)
