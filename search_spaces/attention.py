"""The attention ops of lightweight SR networks, as cell ops (C channels in and out).

Each rescales its input by a gate computed from it, so none is linear: the fused cell
runs them as they are (``Terms.opaque``). Their cost is closed-form for an ``h x w`` input,
counted as ``nas_sr.archs.complexity`` traces it: convs only, gates and pools free.

- ``ChannelAttention``: RCAN's (Zhang et al., "Image Super-Resolution Using Very Deep
  Residual Channel Attention Networks"): global average pool, a 1x1 squeeze and excite,
  a sigmoid gate per channel.
- ``PixelAttention``: PAN's (Zhao et al., "Efficient Image Super-Resolution Using Pixel
  Attention"): a 1x1 conv and a sigmoid gate per pixel and channel.
- ``ESA``: RFDN's enhanced spatial attention (Liu et al., "Residual Feature Distillation
  Network for Lightweight Image Super-Resolution"): a gate from a strided, max-pooled
  branch at a quarter of the channels, upsampled back. Padded here so it runs on inputs
  of any size (RFDN's unpadded pool needs 15 px or more).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

REDUCTION = 4  # squeeze ratio of channel attention (RCAN: 16 at C = 64; C here is 16-64)
ESA_SHARE = 4  # ESA's branch runs at C / 4 channels, as RFDN's


def _squeezed(c: int, by: int) -> int:
    return max(1, c // by)


class ChannelAttention(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        mid = _squeezed(channels, REDUCTION)
        self.squeeze = nn.Conv2d(channels, mid, 1)
        self.excite = nn.Conv2d(mid, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.excite(F.relu(self.squeeze(F.adaptive_avg_pool2d(x, 1))))
        return x * torch.sigmoid(gate)


def channel_attention_cost(c: int, h: int, w: int) -> tuple[int, int]:
    mid = _squeezed(c, REDUCTION)
    return 2 * c * mid + mid + c, 2 * c * mid  # the 1x1 convs see one pooled pixel


class PixelAttention(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.conv(x))


def pixel_attention_cost(c: int, h: int, w: int) -> tuple[int, int]:
    return c * c + c, c * c * h * w


class ESA(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        f = _squeezed(channels, ESA_SHARE)
        self.reduce = nn.Conv2d(channels, f, 1)
        self.skip = nn.Conv2d(f, f, 1)
        self.down = nn.Conv2d(f, f, 3, stride=2, padding=1)
        self.body = nn.Sequential(nn.Conv2d(f, f, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(f, f, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(f, f, 3, padding=1))
        self.expand = nn.Conv2d(f, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        reduced = self.reduce(x)
        pooled = F.max_pool2d(self.down(reduced), 7, stride=3, padding=3)
        up = F.interpolate(self.body(pooled), size=x.shape[-2:], mode="bilinear",
                           align_corners=False)
        return x * torch.sigmoid(self.expand(up + self.skip(reduced)))


def esa_cost(c: int, h: int, w: int) -> tuple[int, int]:
    f = _squeezed(c, ESA_SHARE)
    h2, w2 = (h + 1) // 2, (w + 1) // 2  # the stride-2 conv, padded
    h3, w3 = (h2 + 2) // 3, (w2 + 2) // 3  # the 7x7 max pool, stride 3, padded
    params = (c * f + f) + (f * f + f) + 4 * (9 * f * f + f) + (f * c + c)
    macs = (2 * c * f + f * f) * h * w + 9 * f * f * h2 * w2 + 3 * 9 * f * f * h3 * w3
    return params, macs
