"""Where images come from: the bundled photographs, a folder, DIV2K, and the benchmark sets,
split into training and hold-out images."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nas_sr.data.images import (
    ImageError,
    list_images,
)
from nas_sr.data.pairs import MIN_LQ_SIDE, ImageSource, downscalable
from nas_sr.errors import ConfigError

log = logging.getLogger(__name__)


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


def benchmark_sources(root: Path, name: str, scale: int) -> list[ImageSource]:
    """HR/LR pairs of ``root/name/X{scale}``, paired by file name; layout errors name the path."""
    set_dir = root / name
    if root.exists() and not root.is_dir():
        raise FileNotFoundError(f"benchmark_root={root} is a file; it takes the folder that "
                                "holds the sets (SET/X{scale}/HR and LR)")
    if not root.exists():  # the default is relative: outside the repository it is not there
        where = "" if root.is_absolute() else f" (relative to {Path.cwd()})"
        raise FileNotFoundError(f"benchmark_root={root} does not exist{where}; pass "
                                f"benchmark_root=DIR, the folder that holds the sets "
                                f"(SET/X{scale}/HR and LR)")
    if not set_dir.is_dir():
        found = sorted(p.name for p in root.iterdir() if p.is_dir())
        where = f"{root} holds: {', '.join(found)}" if found else f"{root} has no sets"
        raise FileNotFoundError(f"{set_dir}: no such benchmark set ({where}); "
                                "check sets= and benchmark_root=")
    scale_dir = set_dir / f"X{scale}"
    if not scale_dir.is_dir():
        have = sorted(p.name for p in set_dir.iterdir() if p.is_dir() and p.name[:1] == "X")
        raise FileNotFoundError(f"{scale_dir}: missing, so {name} has no x{scale} images "
                                f"(it has: {', '.join(have) or 'none'}); pick another scale=")
    files = {}
    for kind in ("HR", "LR"):
        folder = scale_dir / kind
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: missing; a set is laid out SET/X{scale}/HR "
                                    f"and SET/X{scale}/LR with the same file names")
        files[kind] = {}
        for p in list_images(folder):
            key = p.relative_to(folder).with_suffix("")
            if key in files[kind]:  # a.png and a.jpg: which one pairs with LR's a?
                raise ImageError(f"{folder}: {files[kind][key].name} and {p.name} share a "
                                 f"name; keep one image per name")
            files[kind][key] = p
    gt, lq = files["HR"], files["LR"]
    if gt.keys() != lq.keys():
        only = [f"only in {kind}: {', '.join(str(k) for k in sorted(a.keys() - b.keys()))}"
                for kind, a, b in (("HR", gt, lq), ("LR", lq, gt)) if a.keys() - b.keys()]
        raise ImageError(f"{scale_dir}: HR and LR images do not pair up ({len(gt)} HR, "
                         f"{len(lq)} LR; {'; '.join(only)})")
    return [ImageSource(gt[k], lq[k]) for k in sorted(gt)]
