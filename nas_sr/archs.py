"""Every SR model the toolkit trains, built from a plain ``arch`` spec.

An ``arch`` spec is a JSON-able dict (``{"name": "cell", "scale": 2, ...}``)
stored in every checkpoint beside the weights, so a checkpoint alone rebuilds
its model. Hand-designed baselines (seeds 001 and 004) take LR input like the
cell network; SRCNN and VDSR upsample it with bicubic first, as they were built to.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nas_sr import checkpoint
from nas_sr.lighten import LIGHTENINGS, SeparableConv2d, apply_spec
from nas_sr.runtime import ConfigError
from search_spaces.genotypes import Genotype
from search_spaces.network import CellSRNet, rgb_mean


class _Interpolated(nn.Module):
    """Base of pre-upsampling models: bicubic to HR size, then refine."""

    def __init__(self, scale: int):
        super().__init__()
        self.scale = scale

    def upsample(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False)


class SRCNN(_Interpolated):
    """Dong et al. 2014, 9-5-5 with 64/32 filters ('same' padding keeps the size)."""

    def __init__(self, scale: int, channels: tuple[int, int] = (64, 32)):
        super().__init__(scale)
        c1, c2 = channels
        self.body = nn.Sequential(
            nn.Conv2d(3, c1, 9, padding=4), nn.ReLU(inplace=True),
            nn.Conv2d(c1, c2, 5, padding=2), nn.ReLU(inplace=True),
            nn.Conv2d(c2, 3, 5, padding=2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.upsample(x))


class VDSR(_Interpolated):
    """Kim et al. 2016: 20 3x3 conv layers, 64 channels, learns the residual."""

    def __init__(self, scale: int, depth: int = 20, channels: int = 64):
        super().__init__(scale)
        layers: list[nn.Module] = [nn.Conv2d(3, channels, 3, padding=1), nn.ReLU(inplace=True)]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True)]
        layers.append(nn.Conv2d(channels, 3, 3, padding=1))
        self.body = nn.Sequential(*layers)
        for m in self.body:
            if isinstance(m, nn.Conv2d):  # He init, as the paper
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up = self.upsample(x)
        return up + self.body(up)


class FSRCNN(nn.Module):
    """Dong et al. 2016, FSRCNN(d, s, m): on the LR image, a 5x5 feature conv (d), a 1x1
    shrink (s), m 3x3 maps, a 1x1 expand (d), each with PReLU, then a 9x9 deconvolution
    of stride ``scale``. RGB in and out here (the paper: Y only), mean-centred like EDSR."""

    def __init__(self, scale: int, d: int = 56, s: int = 12, m: int = 4, colors: int = 3):
        super().__init__()
        self.register_buffer("mean", rgb_mean(colors), persistent=False)
        layers: list[nn.Module] = [nn.Conv2d(colors, d, 5, padding=2), nn.PReLU(d),
                                   nn.Conv2d(d, s, 1), nn.PReLU(s)]
        for _ in range(m):
            layers += [nn.Conv2d(s, s, 3, padding=1), nn.PReLU(s)]
        layers += [nn.Conv2d(s, d, 1), nn.PReLU(d)]
        self.body = nn.Sequential(*layers)
        # output side (H-1)*scale - 2*4 + 9 + (scale-1) = H*scale
        self.deconv = nn.ConvTranspose2d(d, colors, 9, stride=scale, padding=4,
                                         output_padding=scale - 1)
        for module in self.body:
            if isinstance(module, nn.Conv2d):  # He init for PReLU (a=0.25), as the paper
                nn.init.kaiming_normal_(module.weight, a=0.25, nonlinearity="leaky_relu")
                nn.init.zeros_(module.bias)
        nn.init.normal_(self.deconv.weight, std=1e-3)  # the paper's deconvolution init
        nn.init.zeros_(self.deconv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.deconv(self.body(x - self.mean)) + self.mean


class ResBlock(nn.Module):
    """EDSR's block: conv-ReLU-conv, no batch norm, residual scaled by ``res_scale``."""

    def __init__(self, channels: int, res_scale: float):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1),
        )
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x) * self.res_scale


class EDSR(nn.Module):
    """Lim et al. 2017; the baseline is 16 blocks of 64 channels."""

    def __init__(self, scale: int, blocks: int = 16, channels: int = 64, res_scale: float = 1.0):
        super().__init__()
        self.register_buffer("mean", rgb_mean(), persistent=False)
        self.head = nn.Conv2d(3, channels, 3, padding=1)
        self.body = nn.Sequential(*(ResBlock(channels, res_scale) for _ in range(blocks)),
                                  nn.Conv2d(channels, channels, 3, padding=1))
        self.tail = nn.Sequential(*subpixel(channels, scale),
                                  nn.Conv2d(channels, 3, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.head(x - self.mean)
        return self.tail(self.body(feat) + feat) + self.mean


def subpixel(channels: int, scale: int) -> list[nn.Module]:
    """EDSR's upsampler: conv to ``channels * s^2`` and PixelShuffle(s); x4 as two x2 stages."""
    up: list[nn.Module] = []
    for s in [2, 2] if scale == 4 else [scale]:
        up += [nn.Conv2d(channels, channels * s * s, 3, padding=1), nn.PixelShuffle(s)]
    return up


def _conv(cin: int, cout: int, k: int, separable: bool) -> nn.Module:
    """A 'same' k x k conv, or seed 002's separable one (with SMSRN's depthwise bias)."""
    if separable:
        return SeparableConv2d(cin, cout, k, padding=k // 2, depthwise_bias=True)
    return nn.Conv2d(cin, cout, k, padding=k // 2)


class MSRB(nn.Module):
    """Li et al. 2018's multi-scale residual block: 3x3 and 5x5 branches that exchange
    features, twice, then a 1x1 fusion of both and a local residual."""

    def __init__(self, channels: int, separable: bool = False):
        super().__init__()
        c = channels
        self.conv_3_1, self.conv_5_1 = _conv(c, c, 3, separable), _conv(c, c, 5, separable)
        self.conv_3_2 = _conv(2 * c, 2 * c, 3, separable)
        self.conv_5_2 = _conv(2 * c, 2 * c, 5, separable)
        self.confusion = nn.Conv2d(4 * c, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mid = torch.cat([F.relu(self.conv_3_1(x)), F.relu(self.conv_5_1(x))], 1)
        out = torch.cat([F.relu(self.conv_3_2(mid)), F.relu(self.conv_5_2(mid))], 1)
        return x + self.confusion(out)


class MSRN(nn.Module):
    """Li et al. 2018 (8 blocks, 64 channels: 6,078,019 params at x4, RGB).

    Hierarchical feature fusion: the head's features and every block's output are
    concatenated and fused by a 1x1 conv before the tail. ``separable=True`` is seed 002's
    SMSRN: the head's and the blocks' convs depthwise-separable, the tail dense (its
    published 888,929 params at x4 come out exactly so).
    """

    def __init__(self, scale: int, blocks: int = 8, channels: int = 64,
                 separable: bool = False):
        super().__init__()
        self.register_buffer("mean", rgb_mean(), persistent=False)
        self.head = _conv(3, channels, 3, separable)
        self.body = nn.ModuleList(MSRB(channels, separable) for _ in range(blocks))
        self.tail = nn.Sequential(nn.Conv2d(channels * (blocks + 1), channels, 1),
                                  nn.Conv2d(channels, channels, 3, padding=1),
                                  *subpixel(channels, scale),
                                  nn.Conv2d(channels, 3, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [self.head(x - self.mean)]
        for block in self.body:
            feats.append(block(feats[-1]))
        return self.tail(torch.cat(feats[1:] + feats[:1], 1)) + self.mean


def smsrn(scale: int, blocks: int = 8, channels: int = 64) -> MSRN:
    """Seed 002's SMSRN: MSRN with depthwise-separable convs in its head and blocks."""
    return MSRN(scale, blocks, channels, separable=True)


# the hand-designed models by name (``model=``); the cell network is built from a genotype
BASELINES: dict[str, Callable[..., nn.Module]] = {
    "srcnn": SRCNN, "fsrcnn": FSRCNN, "vdsr": VDSR, "edsr_baseline": EDSR, "msrn": MSRN,
    "smsrn": smsrn}


def check_scale(scale: int) -> None:
    """Every model here upsamples x2, x3 or x4 (sub-pixel or bicubic); say so up front."""
    if scale not in (2, 3, 4):
        raise ConfigError(f"scale must be 2, 3 or 4, got {scale}")


# bounds on an arch spec read from a file, so a tiny crafted checkpoint cannot make us
# allocate gigabytes: sizes are checked first, then parameters are counted on the meta device
MAX_SIZE = 1024  # channels, cells, nodes, blocks, depth
MAX_PARAMS = 100_000_000  # EDSR (the big one, 43M) fits twice
MAX_RECURSIONS = 16  # passes of each cell: they cost time, not weights, so bounded apart
SIZE_BOUNDS = {**dict.fromkeys(("channels", "cells", "nodes", "blocks", "depth", "d", "s", "m",
                                "colors"), MAX_SIZE), "recursions": MAX_RECURSIONS}


def check_arch(arch: Any) -> None:
    """Refuse an arch spec that is malformed or builds an unreasonably large network."""
    if not isinstance(arch, dict) or not isinstance(arch.get("name"), str):
        raise ConfigError(f"an arch spec is a dict with a name, got {type(arch).__name__}")
    for key, most in SIZE_BOUNDS.items():
        value = arch.get(key, 1)
        for v in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= most:
                raise ConfigError(f"arch {key}={value!r}: must be whole numbers in 1..{most}")
    try:
        with torch.device("meta"):  # no memory: only the shapes
            params = sum(p.numel() for p in build_model(arch, checked=True).parameters())
    except (KeyError, TypeError) as e:
        raise ConfigError(f"arch spec {arch['name']!r} is malformed ({type(e).__name__}: {e})"
                          ) from None
    if params > MAX_PARAMS:
        raise ConfigError(f"arch {arch['name']!r} would have {params:,} parameters "
                          f"(at most {MAX_PARAMS:,} are accepted)")


def build_model(arch: dict[str, Any], checked: bool = False) -> nn.Module:
    """Model from an arch spec; unknown keys are an error, not silently dropped.

    ``checked=False`` bounds the spec first (:func:`check_arch`): specs come from files.
    """
    if not checked:
        check_arch(arch)
    spec = dict(arch)
    name, scale = spec.pop("name"), int(spec.pop("scale"))
    lightened = {k: spec.pop(k) for k in LIGHTENINGS if k in spec}
    check_scale(scale)
    if name == "cell":
        genotype = Genotype.from_dict(spec.pop("genotype"))
        model: nn.Module = CellSRNet(scale, genotype=genotype, channels=spec.pop("channels"),
                                     num_cells=spec.pop("cells"), num_nodes=genotype.num_nodes,
                                     recursions=spec.pop("recursions", 1),
                                     **_no_more(spec, name))
    else:
        if name not in BASELINES:
            raise ConfigError(f"unknown model {name!r}; known: cell, {', '.join(BASELINES)}")
        model = BASELINES[name](scale, **spec)
    return apply_spec(model, lightened)


# sizes that shape a model's tensors (a cell's nodes follow its genotype; recursions reuse
# the cell's weights)
SHAPE_KEYS = ("channels", "cells", "blocks", "depth", "d", "s", "m", "colors")


def shape_mismatch(source: dict[str, Any], target: dict[str, Any]) -> str:
    """Where arch spec ``source`` (an ``init_from=`` file's) differs in kind or size from
    ``target`` (the model being built), with the overrides that would build it alike;
    '' where neither differs."""
    name = source.get("name")
    if name != target.get("name"):
        return f"it is a {name} model, this one a {target.get('name')}: pass model={name}"
    keys = [k for k in SHAPE_KEYS if k in source and source[k] != target.get(k)]
    if not keys:
        return ""
    section = "train.cell" if name == "cell" else f"archs.{name}"
    return (", ".join(f"{k} {source[k]} vs {target.get(k)}" for k in keys) + ": pass "
            + " ".join(f"{section}.{k}={source[k]}" for k in keys))


def _no_more(spec: dict[str, Any], name: str) -> dict[str, Any]:
    spec.pop("nodes", None)  # implied by the genotype
    if spec:
        raise ConfigError(f"unexpected options for {name}: {sorted(spec)}")
    return {}


def load_model(path: str | Path, map_location: str | torch.device = "cpu"
               ) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a model from a checkpoint written by retrain (``weights_only`` load)."""
    state = checkpoint.load(path, map_location)
    if not isinstance(state, dict) or "arch" not in state or "model" not in state:
        raise ConfigError(f"{path}: not a nas-sr model checkpoint (no 'arch' and 'model')")
    model = build_model(state["arch"])
    model.load_state_dict(state["model"])
    return model.eval(), state
