"""Realistic degradations: an HR image to the LR image a phone or a web page hands over.

Real-ESRGAN's scheme (Wang, Xie, Dong, Shan, "Real-ESRGAN: Training Real-World Blind
Super-Resolution with Pure Synthetic Data"), its ranges in ``data.realistic``: a first
pass of blur, downscaling by the scale, noise and JPEG, and with a probability a second
pass of blur, noise and JPEG at the LR size. Its random intermediate resizes and sinc
filters are left out, so the LR is exactly ``scale`` times smaller and stays aligned.

- blur: isotropic, anisotropic (rotated) and generalised Gaussian kernels on an odd,
  centred grid, point-symmetric, so no stage shifts the image; ``scipy.ndimage.convolve``
  with reflected borders;
- downscaling: Pillow's ``resize`` of each channel as 32-bit float with bicubic, bilinear
  or box (area) filters, antialiased, mapping pixel centres as MATLAB's ``imresize`` (and
  so :func:`nas_sr.data.images.downscale`) does: LR pixel x sits at HR (x + 0.5) s - 0.5;
- noise: numpy's Gaussian (grey or per channel) and Poisson (shot noise of 8-bit counts);
- JPEG: Pillow's encoder and decoder at a drawn quality.

Every draw comes from the one ``numpy.random.Generator`` the caller passes, so a
generator seeded by (seed, image index) makes the same LR every time.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from nas_sr.data.crops import RandomCrops
from nas_sr.data.images import to_tensor
from nas_sr.errors import ConfigError

RESIZE = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR,
          "area": Image.Resampling.BOX}
KERNELS = ("iso", "aniso", "generalized")
POISSON_LEVELS = 255.0  # counts of an 8-bit sample: scale 1 is shot noise at that depth
VALIDATION_SEED = 0  # the hold-out images' degradations: fixed, so every run validates alike

Range = tuple[float, float]


@dataclass(frozen=True)
class Stage:
    """One pass: each step's probability and the ranges its strength is drawn from."""

    blur: float
    kernel_size: Range
    kernels: tuple[str, ...]
    sigma: Range
    beta: Range
    noise: float
    gaussian: Range
    poisson: Range
    poisson_share: float
    gray: float
    jpeg: float
    quality: Range


@dataclass(frozen=True)
class Settings:
    """The whole pipeline: the first pass, the downscaling filters, the second pass."""

    first: Stage
    second: Stage
    resize: tuple[str, ...]
    second_order: float
    clean: float = 0.0  # share of training crops kept as their bicubic pair


def _probability(block: Mapping[str, Any], key: str, where: str) -> float:
    value = block[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ConfigError(f"{where}.{key}={value}: a probability in [0, 1]")
    return float(value)


def _range(block: Mapping[str, Any], key: str, where: str, low: float, high: float) -> Range:
    value = block[key]
    usage = f"{where}.{key}={value}: give [low, high] with {low} <= low <= high <= {high}"
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(usage) from None
    if not low <= lo <= hi <= high:
        raise ConfigError(usage)
    return lo, hi


def _stage(block: Mapping[str, Any], where: str) -> Stage:
    kernels = tuple(block["kernels"])
    if not kernels or set(kernels) - set(KERNELS):
        raise ConfigError(f"{where}.kernels={list(kernels)}: some of {', '.join(KERNELS)}")
    sizes = _range(block, "kernel_size", where, 1, 63)
    if not any(int(k) % 2 for k in range(int(sizes[0]), int(sizes[1]) + 1)):
        raise ConfigError(f"{where}.kernel_size={list(sizes)}: holds no odd size (a kernel "
                          "is odd-sized so that it is centred)")
    p = {key: _probability(block, key, where)
         for key in ("blur", "noise", "poisson_share", "gray", "jpeg")}
    return Stage(kernel_size=sizes, kernels=kernels,
                 sigma=_range(block, "sigma", where, 0.01, 20),
                 beta=_range(block, "beta", where, 0.1, 10),
                 gaussian=_range(block, "gaussian", where, 0, 255),
                 poisson=_range(block, "poisson", where, 0, 100),
                 quality=_range(block, "quality", where, 1, 100), **p)


def settings(block: Mapping[str, Any], where: str = "data.realistic") -> Settings:
    """``block`` (``data.realistic``, or the degrade job's ``degradation``), checked; a
    ConfigError names ``where``'s bad key."""
    try:
        resize = tuple(block["resize"])
        first, second = _stage(block["first"], f"{where}.first"), \
            _stage(block["second"], f"{where}.second")
    except (KeyError, TypeError) as e:
        raise ConfigError(f"{where}: missing or malformed {e}; see "
                          "experiments/data/realistic/default.yaml") from None
    if not resize or set(resize) - set(RESIZE):
        raise ConfigError(f"{where}.resize={list(resize)}: some of {', '.join(RESIZE)}")
    return Settings(first, second, resize, _probability(block, "second_order", where),
                    _probability(block, "clean", where) if "clean" in block else 0.0)


def training_settings(data: Any) -> Settings | None:
    """``data.degradation``'s settings: None for bicubic (a run saved before the option
    existed trained on bicubic pairs, and resumes so)."""
    kind = data.get("degradation", "bicubic")
    if kind == "bicubic":
        return None
    if kind != "realistic":
        raise ConfigError(f"data.degradation={kind!r}: use bicubic or realistic")
    return settings(data.realistic)


# --- the stages ---------------------------------------------------------------------------
def _uniform(rng: np.random.Generator, bounds: Range) -> float:
    return float(rng.uniform(*bounds))


def blur_kernel(size: int, sigma: Range, angle: float = 0.0, beta: float = 1.0
                ) -> np.ndarray:
    """A normalised (size, size) kernel exp(-(d' S^-1 d / 2) ** beta), S the covariance of
    axis stds ``sigma`` turned by ``angle``; odd ``size``, centred, point-symmetric."""
    if size % 2 == 0:
        raise ValueError(f"kernel size {size}: must be odd, to be centred")
    turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    inverse = np.linalg.inv(turn @ np.diag(np.square(sigma)) @ turn.T)
    ax = np.arange(size) - size // 2
    d = np.stack(np.meshgrid(ax, ax, indexing="xy"), -1).astype(np.float64)  # (x, y)
    form = np.einsum("...i,ij,...j->...", d, inverse, d)
    kernel = np.exp(-0.5 * form ** beta)
    return kernel / kernel.sum()


def random_kernel(stage: Stage, rng: np.random.Generator) -> np.ndarray:
    """A kernel of a kind, size, stds, angle and shape drawn from ``stage``'s ranges."""
    kind = stage.kernels[int(rng.integers(len(stage.kernels)))]
    odd = [k for k in range(int(stage.kernel_size[0]), int(stage.kernel_size[1]) + 1) if k % 2]
    size = odd[int(rng.integers(len(odd)))]
    sx = _uniform(rng, stage.sigma)
    if kind == "iso":
        return blur_kernel(size, (sx, sx))
    sy, angle = _uniform(rng, stage.sigma), float(rng.uniform(-np.pi, np.pi))
    beta = _uniform(rng, stage.beta) if kind == "generalized" else 1.0
    return blur_kernel(size, (sx, sy), angle, beta)


def blur(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """(H, W, 3) float convolved per channel with ``kernel``, borders reflected."""
    from scipy import ndimage  # noqa: PLC0415  (0.2 s a command that never blurs)

    return ndimage.convolve(img, kernel[..., None].astype(img.dtype), mode="reflect")


def downscale_with(img: np.ndarray, scale: int, method: str) -> np.ndarray:
    """(H, W, 3) float to (H/s, W/s, 3) with Pillow's ``method`` filter, channel by channel
    in 32-bit float (no rounding); the sides must divide by ``scale``."""
    h, w = img.shape[:2]
    if h % scale or w % scale:
        raise ValueError(f"{w}x{h} does not divide by scale {scale}: mod-crop it first")
    size = (w // scale, h // scale)
    return np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(img[..., c]))
                                .resize(size, RESIZE[method]))
                     for c in range(img.shape[2])], -1)


def gaussian_noise(img: np.ndarray, std: float, gray: bool, rng: np.random.Generator
                   ) -> np.ndarray:
    """``img`` (8-bit levels) plus zero-mean noise of ``std`` levels, the same in every
    channel when ``gray``; clipped to 0..255."""
    shape = (*img.shape[:2], 1 if gray else img.shape[2])
    return np.clip(img + rng.normal(0.0, std, shape).astype(img.dtype), 0, 255)


def poisson_noise(img: np.ndarray, scale: float, gray: bool, rng: np.random.Generator
                  ) -> np.ndarray:
    """``img`` plus ``scale`` times the shot noise of 8-bit photon counts (on the luma when
    ``gray``); clipped to 0..255."""
    base = img @ np.array([0.299, 0.587, 0.114], img.dtype) if gray else img
    base = np.clip(base, 0, 255) * (POISSON_LEVELS / 255)
    noise = (rng.poisson(base) - base) * (255 / POISSON_LEVELS)
    noise = noise[..., None] if gray else noise
    return np.clip(img + scale * noise.astype(img.dtype), 0, 255)


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """``img`` rounded to 8 bits, through Pillow's JPEG encoder at ``quality`` and back."""
    buf = io.BytesIO()
    Image.fromarray(to_uint8(img)).save(buf, format="JPEG", quality=int(quality))
    with Image.open(buf) as decoded:
        return np.asarray(decoded.convert("RGB"), dtype=np.float32)


def to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


# --- the pipeline -------------------------------------------------------------------------
def _noise(img: np.ndarray, stage: Stage, rng: np.random.Generator) -> np.ndarray:
    poisson, gray = rng.random() < stage.poisson_share, rng.random() < stage.gray
    if poisson:
        return poisson_noise(img, _uniform(rng, stage.poisson), gray, rng)
    return gaussian_noise(img, _uniform(rng, stage.gaussian), gray, rng)


def _pass(img: np.ndarray, stage: Stage, rng: np.random.Generator,
          resize: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """One pass: blur, ``resize`` (the first pass's downscaling), noise, JPEG, each step
    taken with its probability."""
    takes = {step: rng.random() < getattr(stage, step) for step in ("blur", "noise", "jpeg")}
    if takes["blur"]:
        img = blur(img, random_kernel(stage, rng))
    if resize is not None:
        img = resize(img)
    if takes["noise"]:
        img = _noise(img, stage, rng)
    if takes["jpeg"]:
        low, high = stage.quality
        img = jpeg(img, int(rng.integers(round(low), round(high) + 1)))
    return img


def degrade(hr: np.ndarray, scale: int, config: Settings, rng: np.random.Generator
            ) -> np.ndarray:
    """(H, W, 3) uint8 HR image (sides divisible by ``scale``) to its (H/s, W/s, 3) uint8
    LR image, every choice drawn from ``rng``."""
    method = config.resize[int(rng.integers(len(config.resize)))]
    second = rng.random() < config.second_order
    img = _pass(hr.astype(np.float32), config.first, rng,
                lambda x: downscale_with(x, scale, method))
    if second:
        img = _pass(img, config.second, rng)
    return to_uint8(img)


def image_rng(seed: int, *keys: int) -> np.random.Generator:
    """The generator of one image's degradation: ``(seed, *keys)``, e.g. (seed, index)."""
    return np.random.default_rng((seed, *keys))


# --- training and validation --------------------------------------------------------------
class DegradedCrops(RandomCrops):
    """:class:`RandomCrops` whose LR is the HR crop degraded afresh for every sample, its
    crop and degradation both drawn from the RNG of ``(seed, epoch, index)``: a resumed
    run sees the very pairs an uninterrupted one would. A ``clean`` share of the samples
    keeps the store's bicubic LR instead."""

    def __init__(self, store: Any, scale: int, patch_size: int, length: int, seed: int,
                 config: Settings):
        super().__init__(store, scale, patch_size, length, seed)
        self.config = config

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = self.rng(index)
        gt, bicubic = self.draw(rng)
        # (no draw without a clean share: a run keeps the pairs it had before the option)
        if self.config.clean and rng.random() < self.config.clean:
            return to_tensor(bicubic), to_tensor(gt)
        lq = degrade(np.ascontiguousarray(gt), self.scale, self.config, rng)
        return to_tensor(lq), to_tensor(gt)


def training_crops(store: Any, data: Any, scale: int, patch_size: int, length: int,
                   seed: int) -> RandomCrops:
    """The training crops ``data.degradation`` asks for: bicubic pairs from the store, or
    HR crops degraded on the fly."""
    config = training_settings(data)
    if config is None:
        return RandomCrops(store, scale, patch_size, length, seed)
    return DegradedCrops(store, scale, patch_size, length, seed, config)


def validation_pairs(pairs: Sequence[tuple[np.ndarray, np.ndarray]], data: Any, scale: int,
                     indices: Sequence[int] | None = None
                     ) -> list[tuple[np.ndarray, np.ndarray]]:
    """The hold-out pairs for ``data.degradation``: as given for bicubic, else each HR image
    degraded with the fixed validation seed and its index in the hold-out list
    (``indices``: each pair's, when ``pairs`` is one process's share)."""
    config = training_settings(data)
    if config is None:
        return list(pairs)
    indices = range(len(pairs)) if indices is None else indices
    return [(gt, degrade(gt, scale, config, image_rng(VALIDATION_SEED, i)))
            for (gt, _), i in zip(pairs, indices, strict=True)]
