"""HDF5 cache of decoded HR/LR pairs: decode and downscale once, read crops lazily.

The file holds one uint8 dataset per image under ``hr/`` (the GT) and ``lr/`` (the LQ
image; the file's names predate the code's, and caches already built stay valid), chunked
in 64x64 tiles so a crop reads only the tiles it touches. Its ``attrs`` carry a
fingerprint of the source files (resolved path, size, mtime) and the settings, and its
name carries the fingerprint too, so two data folders (of one name or not) never share a
file. A mismatch means stale, and the cache is rebuilt (written aside, then renamed); a
reader that finds another fingerprint in the file it reopens refuses to read on.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from nas_sr.checkpoint import atomic_path
from nas_sr.data.images import ImageError
from nas_sr.data.pairs import (
    ImageSource,
    PairStore,
    Window,
    crop_windows,
    load_pairs,
    with_rescaled_copies,
)
from nas_sr.progress import progress_bar

CACHE_VERSION = 2  # 2: downscaled copies (data.rescale) and each pair's factor


def fingerprint(sources: Sequence[ImageSource], scale: int, rescale: Sequence[float] = ()
                ) -> str:
    def stat(p: Path | None) -> list | None:
        if p is None:
            return None
        st = p.stat()
        return [str(p.resolve()), st.st_size, st.st_mtime_ns]

    key = [CACHE_VERSION, scale, list(rescale), [[stat(s.gt), stat(s.lq)] for s in sources]]
    return hashlib.sha1(json.dumps(key).encode()).hexdigest()


class H5Store:
    """Same interface as ``PairStore``; the file opens lazily, once per process, and must
    hold the fingerprint it held when the store was made (``key``, if given)."""

    def __init__(self, path: Path, key: str | None = None):
        self.path = path
        self._file: h5py.File | None = None
        with h5py.File(path, "r") as f:
            self.key = f.attrs.get("fingerprint")
            if key is not None and self.key != key:
                raise self._replaced()
            self.shapes = [tuple(s) for s in f["lr_shapes"][()]]
            self.factors = f["factors"][()].tolist()

    def _replaced(self) -> ImageError:
        """Another run rebuilt the file for other images since this store was made."""
        return ImageError(f"{self.path}: the HDF5 cache was replaced by one of other images "
                          "while this run used it; run again (it is rebuilt for this run's "
                          "images)")

    def __getstate__(self) -> dict:  # DataLoader workers each open their own handle
        return {**self.__dict__, "_file": None}

    def _open(self) -> h5py.File:
        if self._file is None:
            f = h5py.File(self.path, "r")
            if f.attrs.get("fingerprint") != self.key:  # never mix two sets of images
                f.close()
                raise self._replaced()
            self._file = f
        return self._file

    def __len__(self) -> int:
        return len(self.shapes)

    def lq_shape(self, i: int) -> tuple[int, int]:
        return self.shapes[i]

    def pair(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        return self.read(i, "hr", np.s_[:, :]), self.read(i, "lr", np.s_[:, :])

    def crop(self, i: int, y: int, x: int, size: int, scale: int) -> tuple[np.ndarray, np.ndarray]:
        gt_window, lq_window = crop_windows(y, x, size, scale)
        return self.read(i, "hr", gt_window), self.read(i, "lr", lq_window)

    def read(self, i: int, kind: str, part: Window) -> np.ndarray:
        """``part`` of image ``i``'s GT (``kind="hr"``) or LQ (``"lr"``) array."""
        try:
            return self._open()[f"{kind}/{i}"][part]
        except (OSError, KeyError) as e:  # damaged after it was checked (is_fresh)
            raise ImageError(f"{self.path}: the HDF5 cache is damaged ({e}); delete it and "
                             "run again (it is rebuilt)") from None


def is_fresh(path: Path, key: str) -> bool:
    """The cache at ``path`` was built from these sources and its structure is intact."""
    if not path.is_file():
        return False
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("fingerprint") != key:
                return False
            scale = int(f.attrs["scale"])
            if len(f["factors"]) != len(f["lr_shapes"]):
                return False
            for i, (h, w) in enumerate(f["lr_shapes"][()]):
                if f[f"lr/{i}"].shape != (h, w, 3) or f[f"hr/{i}"].shape != (h * scale,
                                                                               w * scale, 3):
                    return False
            return True
    except (OSError, KeyError, ValueError, TypeError):  # truncated, damaged or foreign: stale
        return False


def cache_path(data: Any, scale: int, split: str) -> Path | None:
    """Where ``data.cache=h5`` keeps a split's pairs, less the fingerprint that
    :func:`open_store` adds to the name; None when caching is off."""
    if data.cache != "h5":
        return None
    return Path(data.cache_dir).expanduser() / f"{data.name}_x{scale}_{split}.h5"


def write_pairs(path: Path, pairs: Iterable[tuple[np.ndarray, np.ndarray]], scale: int,
                key: str, sources: Sequence[ImageSource], factors: Sequence[float],
                progress: bool = True, desc: str = "writing cache") -> None:
    """Write GT/LQ ``pairs`` (consumed as they come: they may be computed on the fly) to
    ``path`` atomically, with the ``fingerprint`` ``key`` that ``is_fresh`` checks."""
    shapes = []
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        for i, (gt, lq) in enumerate(progress_bar(pairs, desc=desc, total=len(factors),
                                                   leave=False, disable=not progress)):
            for name, img in (("hr", gt), ("lr", lq)):
                f.create_dataset(f"{name}/{i}", data=img,
                                 chunks=(min(64, img.shape[0]), min(64, img.shape[1]), 3))
            shapes.append(lq.shape[:2])
        f["lr_shapes"] = np.array(shapes, dtype=np.int64)
        f["factors"] = np.array(factors, dtype=np.float64)
        f["sources"] = np.array([str(s.gt) for s in sources], dtype=h5py.string_dtype())
        f.attrs.update(fingerprint=key, scale=scale, version=CACHE_VERSION)


def build_cache(path: Path, sources: Sequence[ImageSource], scale: int, min_lq_size: int,
                key: str, progress: bool = True, rescale: Sequence[float] = ()) -> None:
    pairs, factors = with_rescaled_copies(
        load_pairs(sources, scale, min_lq_size, desc=f"images for {path.name}",
                   progress=progress), scale, rescale, progress)
    write_pairs(path, pairs, scale, key, sources, factors, progress)


def open_store(sources: Sequence[ImageSource], scale: int, min_lq_size: int,
               path: Path | None, desc: str = "images", progress: bool = True,
               rescale: Sequence[float] = ()) -> PairStore | H5Store:
    """Pairs in memory (``path=None``) or through a fresh HDF5 cache at ``path``; with
    ``rescale``, each image is followed by its downscaled copies (``with_rescaled_copies``)."""
    if path is None:
        pairs = load_pairs(sources, scale, min_lq_size, desc=desc, progress=progress)
        return PairStore(*with_rescaled_copies(pairs, scale, rescale, progress))
    key = fingerprint(sources, scale, rescale)
    path = path.with_name(f"{path.stem}_{key[:16]}{path.suffix}")  # one file per data
    if not is_fresh(path, key):
        build_cache(path, sources, scale, min_lq_size, key, progress, rescale)
    store = H5Store(path, key)
    # the fingerprint covers the files, not the crop size: check it on every open (a
    # downscaled copy smaller than a crop is no error: RandomCrops leaves it out)
    originals = [s for s, f in zip(store.shapes, store.factors, strict=True) if f == 1]
    small = [k for k, s in enumerate(originals) if min(s) < min_lq_size]
    if small:
        load_pairs([sources[small[0]]], scale, min_lq_size)  # raises the named error
    return store
