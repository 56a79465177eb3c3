"""Where training images come from, how their crops and LR inputs are made, and the
ranges of the realistic degradation (``data.degradation=realistic``, ``nas-sr degrade``)."""

from __future__ import annotations

from dataclasses import dataclass

from nas_sr.schema.fields import opt, section

RANGE = "[low, high], drawn uniformly"


@dataclass
class Pass:
    """One degradation pass (Real-ESRGAN's scheme, milder): each step with its probability."""

    blur: float = opt(1.0, "probability of a blur", low=0, high=1)
    kernel_size: list[int] = opt([7, 15], "odd kernel sides, one drawn among those in range")
    kernels: list[str] = opt(["iso", "aniso", "generalized"], "Gaussian kinds, one drawn "
                             "uniformly")
    sigma: list[float] = opt([0.2, 2.0], f"std of the kernel along each axis (HR pixels), "
                             f"{RANGE}")
    beta: list[float] = opt([0.5, 4.0], "shape of the generalised Gaussian (1: Gaussian; <1 "
                            "peaky, >1 flat)")
    noise: float = opt(1.0, "probability of noise", low=0, high=1)
    gaussian: list[float] = opt([1, 15], "Gaussian noise std, 8-bit levels")
    poisson: list[float] = opt([0.05, 2.0], "Poisson noise scale (1: shot noise of 8-bit "
                               "counts)")
    poisson_share: float = opt(0.4, "share of noise drawn as Poisson (the rest Gaussian)",
                               low=0, high=1)
    gray: float = opt(0.4, "probability the noise is grey (the same in R, G and B)", low=0,
                      high=1)
    jpeg: float = opt(1.0, "probability of JPEG compression", low=0, high=1)
    quality: list[int] = opt([50, 95], "JPEG quality (Pillow's encoder)")


def _second() -> Pass:
    return Pass(blur=0.8, kernel_size=[7, 11], sigma=[0.2, 1.0], gaussian=[1, 10],
                poisson=[0.05, 1.5])


@dataclass
class Realistic:
    """Real-ESRGAN's two passes (Wang, Xie, Dong and Shan 2021), milder: sigma to 2, noise
    std to 15, Poisson to 2, JPEG from 50, a second pass half the time, no random resizes
    in between (the LR stays aligned)."""

    resize: list[str] = opt(["bicubic", "bilinear", "area"], "the first pass's "
                            "downscaling, one drawn per image")
    second_order: float = opt(0.5, "probability of the second pass (at the LR size)", low=0,
                              high=1)
    clean: float = opt(0.0, "share of training crops left as their bicubic pair, so the "
                       "model keeps its quality on clean inputs", low=0, high=1)
    first: Pass = section(Pass, "the first pass (at the HR size, then downscaled)")
    second: Pass = section(_second, "the second pass")


@dataclass
class Data:
    name: str = opt("builtin", "the source: builtin (scikit-image's photographs) | folder | "
                    "div2k")
    degradation: str = opt("bicubic", "how a training crop's LR is made: bicubic (MATLAB's, "
                           "as the benchmarks) | realistic (blur, noise, JPEG per crop from "
                           "data.realistic)")
    patch_size: int = opt(64, "HR crop side (LR side = patch_size // scale)", whole=True)
    small_images: str = opt("error", "an image smaller than one crop: error, or skip (crops "
                            "leave it out)", choices=("error", "skip"))
    rescale: list[float] = opt([], "extra training copies of each image shrunk by these "
                               "factors, e.g. [0.9,0.8,0.7,0.6] (VDSR's augmentation)")
    val_fraction: float = opt(0.1, "share of train images held out when no val_dir is "
                              "given; halved into the search's reward images and "
                              "retraining's hold-out", low=0, high=1)
    num_workers: int = opt(0, "DataLoader workers; 0 is fastest for in-memory crops on a "
                           "small CPU", low=0, whole=True)
    cache: str = opt("none", "none | h5: decode + downscale once into HDF5 under cache_dir",
                     choices=("none", "h5"))
    cache_dir: str = opt("runs/cache", "where cache=h5 keeps its files")
    train_names: list[str] = opt([], "builtin: the training photographs")
    val_names: list[str] = opt([], "builtin: the search's reward and final-selection "
                               "photographs")
    holdout_names: list[str] = opt([], "builtin: retraining's validation photographs (never "
                                   "steer a search)")
    train_dir: str | None = opt(None, "folder: a folder of HR images (searched recursively)")
    val_dir: str | None = opt(None, "folder: validation images; null: hold out val_fraction "
                              "of train_dir (a fixed split)")
    root: str | None = opt(None, "div2k: ROOT/DIV2K_{train,valid}_HR/ (and the LR folders "
                           "if present)")
    realistic: Realistic = section(Realistic, "the ranges of degradation=realistic")
