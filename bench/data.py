"""2. Data: patches per second the loader delivers (from PNG decode, from memory, from
the HDF5 cache) vs patches per second a supernet training step consumes."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from bench.supernet import train_step
from bench.timing import Row, median_time
from controllers import build_controller
from nas_sr.data.cache import H5Store, open_store
from nas_sr.data.crops import RandomCrops
from nas_sr.data.images import list_images
from nas_sr.data.pairs import ImageSource, PairStore, load_pairs
from search_spaces.network import CellSRNet

SHARED_TRAIN = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "train"


def images(count: int) -> tuple[list[ImageSource], str]:
    if SHARED_TRAIN.is_dir():
        files, where = list_images(SHARED_TRAIN), "../shared/datasets/train"
    else:
        from nas_sr.data.sources import builtin_dir

        files, where = sorted(builtin_dir().glob("*.png")), "scikit-image photos"
    return [ImageSource(f) for f in files[:count]], where


def loader_rate(store: PairStore | H5Store, patches: int, batch: int = 16) -> float:
    crops = RandomCrops(store, 2, 64, patches, seed=0)
    t0 = time.perf_counter()
    for _ in DataLoader(crops, batch_size=batch, num_workers=0):
        pass
    return patches / (time.perf_counter() - t0)


def run(quick: bool) -> list[Row]:
    sources, where = images(10 if quick else 40)
    patches = 800 if quick else 3200
    t0 = time.perf_counter()
    pairs = load_pairs(sources, 2, 32, progress=False)
    decode = len(pairs) / (time.perf_counter() - t0)  # one decode + downscale per image
    memory = loader_rate(open_store(sources, 2, 32, None, progress=False), patches)
    with tempfile.TemporaryDirectory() as tmp:
        h5 = loader_rate(open_store(sources, 2, 32, Path(tmp) / "c.h5", progress=False), patches)

    genotype = build_controller("random", 5).sample(torch.Generator().manual_seed(0)).genotype
    last = torch.channels_last  # the search's default layout
    net = CellSRNet(2, 32, 4).to(memory_format=last)
    opt = torch.optim.Adam(net.parameters(), 1e-4)
    lq = torch.rand(16, 3, 32, 32).contiguous(memory_format=last)
    gt = torch.rand(16, 3, 64, 64)
    consume = 16 / median_time(lambda: train_step(net, opt, lq, gt, genotype), 5 if quick else 10)
    note = f"{len(sources)} images of {where}, 64px HR crops"
    return [
        Row("data", "PNG decode + bicubic LR (a patch per decode)", decode, "patches/s", note),
        Row("data", "crops from memory (PairStore)", memory, "patches/s", note),
        Row("data", "crops from the HDF5 cache", h5, "patches/s", note),
        Row("data", "consumed by a supernet train step", consume, "patches/s", "C=32 N=4"),
        Row("data", "HDF5 cache / consumption", h5 / consume, "x", "goal >= 5"),
    ]
