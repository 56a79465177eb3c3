"""The hand-designed SR baselines: SRCNN, FSRCNN, VDSR, EDSR-baseline and MSRN.

They take LR input like the cell network; SRCNN and VDSR upsample it with bicubic first,
as they were built to."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nas_sr.archs.lighten import SeparableConv2d
from search_spaces.network import rgb_mean


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


class ESPCN(nn.Module):
    """Shi et al. 2016, ESPCN: on the LR image, a 5x5 conv (f1) and a 3x3 conv (f2), each
    with tanh, then a 3x3 conv to ``colors * scale**2`` channels rearranged by a pixel
    shuffle: every layer at LR size, the real-time anchor of the field. RGB in and out here
    (the paper: Y only), mean-centred like EDSR."""

    def __init__(self, scale: int, f1: int = 64, f2: int = 32, colors: int = 3):
        super().__init__()
        self.register_buffer("mean", rgb_mean(colors), persistent=False)
        self.body = nn.Sequential(nn.Conv2d(colors, f1, 5, padding=2), nn.Tanh(),
                                  nn.Conv2d(f1, f2, 3, padding=1), nn.Tanh(),
                                  nn.Conv2d(f2, colors * scale**2, 3, padding=1),
                                  nn.PixelShuffle(scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x - self.mean) + self.mean


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
    """A 'same' k x k conv, or Kim, Kang and Lee's separable one (with SMSRN's depthwise bias)."""
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
    concatenated and fused by a 1x1 conv before the tail. ``separable=True`` is Kim, Kang and Lee's
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
    """Kim, Kang and Lee's SMSRN: MSRN with depthwise-separable convs in its head and blocks."""
    return MSRN(scale, blocks, channels, separable=True)
